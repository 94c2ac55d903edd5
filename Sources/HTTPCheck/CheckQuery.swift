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
    private static let parameterBytes = parameters.map { Array($0.utf8) }
    /// What `deny_status` may be: a client error, so that forward-auth gateways pass it on as a refusal.
    public static let denyStatuses = 400...499

    /// Parses `query` (what follows `?`, percent-encoded). `client` is the address a `prefix=` key ends
    /// with; it is read only when the query has one.
    public static func parse(_ query: Substring, client: () -> String?) throws(ProtocolError) -> CheckQuery {
        // Bytes, not String: a check is on every request a gateway serves, and String's indexing and a
        // dictionary of names cost more than the decision itself.
        let bytes = Array(query.utf8)
        var values = [[UInt8]?](repeating: nil, count: parameters.count)
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
            defer { start = end + 1 }
            guard end > start else { continue }
            let equals = bytes[start..<end].firstIndex(of: UInt8(ascii: "=")) ?? end
            let name = bytes[start..<equals]
            guard let index = parameterBytes.firstIndex(where: { $0.elementsEqual(name) }) else {
                throw ProtocolError(
                    .wrongArguments,
                    "unknown parameter \(Printable.quote(Array(name))); /check takes \(parameters.joined(separator: ", "))")
            }
            guard values[index] == nil else { throw ProtocolError(.wrongArguments, "\(parameters[index]) is given twice") }
            guard let value = percentDecoded(bytes[min(equals + 1, end)..<end]) else {
                throw ProtocolError(.wrongArguments, "\(parameters[index]) has a malformed percent-escape")
            }
            values[index] = value
        }
        func value(_ name: String) -> [UInt8]? { values[parameters.firstIndex(of: name)!] }

        var key: [UInt8]
        switch (value("key"), value("prefix")) {
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
        if let cost = value("cost") {
            query.cost = try words(cost) { word throws(ProtocolError) in try RequestParser.cost(word) }
        }
        let algorithm = try value("algorithm").map { name throws(ProtocolError) in
            try words(name) { word throws(ProtocolError) in try RequestParser.algorithm(word) }
        }
        if let limit = value("limit") {
            query.limit = try words(limit) { word throws(ProtocolError) in
                try RequestParser.limit(word, algorithm: algorithm ?? .tokenBucket)
            }
        } else if algorithm != nil {
            throw ProtocolError(.wrongArguments, "algorithm= goes with limit=; a rule's algorithm is its own")
        }
        if let status = value("deny_status") {
            let code = status.count == 3 && status.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
                ? status.reduce(0) { $0 * 10 + Int($1 - 0x30) } : 0
            guard denyStatuses.contains(code) else {
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
    static func percentDecoded(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
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
