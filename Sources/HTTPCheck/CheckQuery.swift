import RateLimiting
import WireProtocol

/// What one `GET /check?…` asks, parsed from its query string: the key (given whole, or a prefix and the
/// client's address), the cost, the caller's own limit if it gives one, and the status a denial answers.
/// Every value is checked as the line protocol checks the same word of `CHECK`, and fails with its error.
public struct CheckQuery: Sendable, Hashable {
    public var key: [UInt8]
    public var cost: Int64 = 1
    /// `limit=` (and `algorithm=`): no rule is consulted, as for `CHECK <key> <cost> <limit>/<window>`.
    public var limit: Limit?
    /// `deny_status=`: overrides the listener's `deny_status` for this request.
    public var denyStatus: Int?

    public static let parameters = ["key", "prefix", "cost", "limit", "algorithm", "deny_status"]
    /// What `deny_status` may be: a client error, so that forward-auth gateways pass it on as a refusal.
    public static let denyStatuses = 400...499

    /// Parses `query` (what follows `?`, percent-encoded). `client` is the address a `prefix=` key ends
    /// with; it is read only when the query has one.
    public static func parse(_ query: Substring, client: () -> String?) throws(ProtocolError) -> CheckQuery {
        var values: [String: [UInt8]] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name = String(pair.prefix { $0 != "=" })
            guard parameters.contains(name) else {
                throw ProtocolError(
                    .wrongArguments,
                    "unknown parameter \(Printable.quote(Array(name.utf8))); /check takes \(parameters.joined(separator: ", "))")
            }
            guard values[name] == nil else { throw ProtocolError(.wrongArguments, "\(name) is given twice") }
            guard let value = percentDecoded(pair.dropFirst(name.count + 1).utf8) else {
                throw ProtocolError(.wrongArguments, "\(name) has a malformed percent-escape")
            }
            values[name] = value
        }

        var key: [UInt8]
        switch (values["key"], values["prefix"]) {
        case (let given?, nil):
            key = given
        case (nil, let prefix?):
            guard let address = client() else {
                throw ProtocolError(.badKey, "prefix= needs the client's address, and this connection has none")
            }
            key = prefix + Array(address.utf8)
        case (nil, nil):
            throw ProtocolError(.wrongArguments, "give key=<key>, or prefix=<prefix> to key on the client's address")
        case (.some, .some):
            throw ProtocolError(.wrongArguments, "give key= or prefix=, not both")
        }
        _ = try words(key) { word throws(ProtocolError) in try RequestParser.key(word) }
        var query = CheckQuery(key: key)
        if let cost = values["cost"] {
            query.cost = try words(cost) { word throws(ProtocolError) in try RequestParser.cost(word) }
        }
        let algorithm = try values["algorithm"].map { name throws(ProtocolError) in
            try words(name) { word throws(ProtocolError) in try RequestParser.algorithm(word) }
        }
        if let limit = values["limit"] {
            query.limit = try words(limit) { word throws(ProtocolError) in
                try RequestParser.limit(word, algorithm: algorithm ?? .tokenBucket)
            }
        } else if algorithm != nil {
            throw ProtocolError(.wrongArguments, "algorithm= goes with limit=; a rule's algorithm is its own")
        }
        if let status = values["deny_status"] {
            guard let code = Int(String(decoding: status, as: UTF8.self)), denyStatuses.contains(code),
                status.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
            else {
                throw ProtocolError(
                    .wrongArguments,
                    "deny_status must be from \(denyStatuses.lowerBound) to \(denyStatuses.upperBound), got \(Printable.quote(status))")
            }
            query.denyStatus = code
        }
        return query
    }

    /// `bytes` with every `%XX` decoded; nil when a `%` is not followed by two hex digits. `+` stays a plus
    /// (RFC 3986): a space could never be part of a key anyway.
    static func percentDecoded(_ bytes: Substring.UTF8View) -> [UInt8]? {
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index != bytes.endIndex {
            let byte = bytes[index]
            bytes.formIndex(after: &index)
            guard byte == UInt8(ascii: "%") else {
                decoded.append(byte)
                continue
            }
            guard index != bytes.endIndex, let high = hexValue(bytes[index]) else { return nil }
            bytes.formIndex(after: &index)
            guard index != bytes.endIndex, let low = hexValue(bytes[index]) else { return nil }
            bytes.formIndex(after: &index)
            decoded.append(high << 4 | low)
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Runs one of the line protocol's word parsers on `bytes`.
    private static func words<T>(
        _ bytes: [UInt8], _ parse: (UnsafeRawBufferPointer.SubSequence) throws(ProtocolError) -> T
    ) throws(ProtocolError) -> T {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(ProtocolError) -> T in try parse(raw[...]) } }
        return try result.get()
    }
}

/// Where a forward-auth gateway says the request came from: the first `X-Forwarded-For` hop, else
/// `X-Real-IP`, else the connection's own peer (a client calling `/check` itself).
public enum ClientAddress {
    public static func resolve(forwardedFor: String?, realIP: String?, peer: String?) -> String? {
        if let hop = forwardedFor?.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first,
            case let address = trimmed(hop), !address.isEmpty
        {
            return String(address)
        }
        if let realIP, case let address = trimmed(realIP[...]), !address.isEmpty { return String(address) }
        return peer
    }

    private static func trimmed(_ text: Substring) -> Substring {
        var text = text
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
