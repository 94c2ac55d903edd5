import HTTPCheck
import NIOCore
import WireProtocol

extension FuzzEntries {
    /// `GET /check`'s query string (and, after a newline, an `X-Forwarded-For` value for `prefix=`): parsed
    /// or refused. What parses is a key the line protocol would take, a cost and a status in range, and
    /// written back canonically parses to itself; what is refused is answered with one printable line.
    public static func httpCheck(_ data: [UInt8]) {
        let parts = data.split(separator: 0x0A, maxSplits: 1, omittingEmptySubsequences: false)
        let query = String(decoding: parts[0], as: UTF8.self)
        let forwarded = parts.count > 1 ? String(decoding: parts[1], as: UTF8.self) : nil
        let client = { ClientAddress.resolve(forwardedFor: forwarded, realIP: nil, peer: "192.0.2.1") }
        let parsed: CheckQuery
        do {
            parsed = try CheckQuery.parse(query[...], client: client)
        } catch {
            var out = ByteBuffer()
            out.writeLineReply(.error(error))
            precondition(
                out.readableBytesView.dropLast().allSatisfy { $0 >= 0x20 && $0 < 0x7F } && out.readableBytesView.last == 0x0A,
                "an error that is not one printable line")
            return
        }
        precondition((1...256).contains(parsed.key.count) && parsed.key.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "a bad key passed")
        precondition((0...RequestParser.maxCost).contains(parsed.cost), "a bad cost passed")
        precondition(parsed.denyStatus.map { CheckQuery.denyStatuses.contains($0) } ?? true, "a bad status passed")
        guard parsed.limit == nil else { return }
        var canonical = "key=" + parsed.key.map { byte in
            byte == UInt8(ascii: "%") || byte == UInt8(ascii: "&") ? "%" + String(byte, radix: 16, uppercase: true) : String(UnicodeScalar(byte))
        }.joined() + "&cost=\(parsed.cost)"
        if let status = parsed.denyStatus { canonical += "&deny_status=\(status)" }
        precondition((try? CheckQuery.parse(canonical[...]) { nil }) == parsed, "a query does not round-trip")
    }
}
