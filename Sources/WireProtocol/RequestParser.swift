import RateLimiting

/// Parses the words of one request into a `Request`: command lookup and arity from the command table first,
/// then the command's own arguments.
public enum RequestParser {
    public static let maxCost: Int64 = 1_000_000_000

    /// One line of the line protocol (without its `\n` or `\r\n`); nil for an empty or all-space line, which
    /// gets no reply.
    public static func parse(_ line: UnsafeRawBufferPointer) throws(ProtocolError) -> Request? {
        var words = TokenCursor(line)
        return try parse(&words, dialect: .line)
    }

    public static func parse<W: Words>(_ words: inout W, dialect: WireDialect) throws(ProtocolError) -> Request? {
        guard let word = words.next() else { return nil }
        guard let command = Command.lookup(word), dialect == .resp || command.inLineProtocol else {
            let known = Command.lookup(word) != nil
            throw ProtocolError(
                .unknownCommand, "unknown command \(Printable.quote(word))" + (known ? " (available over RESP only)" : ""))
        }
        let count = words.remainingCount()
        guard command.arguments.contains(count) else {
            throw ProtocolError(.wrongArguments, "wrong number of arguments; usage: \(command.usage)")
        }
        switch command {
        case .check: return try check(&words)
        case .reset: return .reset(key: try key(words.next()!))
        case .ping: return .ping(message: words.next().map { Array($0) })
        case .quit: return .quit
        case .stats: return .stats
        case .echo: return .echo(Array(words.next()!))
        case .auth:
            let first = words.next()!
            guard let second = words.next() else { return .auth(Credentials(user: nil, token: first.indices)) }
            return .auth(Credentials(user: first.indices, token: second.indices))
        default: return try RedisCompatibility.parse(command, &words)
        }
    }

    private static func check<W: Words>(_ words: inout W) throws(ProtocolError) -> Request {
        let key = try key(words.next()!)
        var units: Int64 = 1
        if let word = words.next() { units = try cost(word) }
        guard let spec = words.next() else {
            return .check(key: key, cost: units, limit: nil)
        }
        var chosen = Algorithm.tokenBucket
        if let word = words.next() { chosen = try algorithm(word) }
        return .check(key: key, cost: units, limit: try limit(spec, algorithm: chosen))
    }

    /// Validates a key and returns where it is in the parsed bytes.
    public static func key(_ word: UnsafeRawBufferPointer.SubSequence) throws(ProtocolError) -> Range<Int> {
        guard !word.isEmpty, word.count <= KeyRules.maxKeyLength else {
            throw ProtocolError(.badKey, "key is \(word.count) bytes; keys are 1 to \(KeyRules.maxKeyLength) bytes")
        }
        guard word.allSatisfy(KeyRules.isKeyByte) else {
            throw ProtocolError(.badKey, "keys are printable ASCII without spaces or control bytes")
        }
        return word.startIndex..<word.endIndex
    }

    public static func cost(_ word: UnsafeRawBufferPointer.SubSequence) throws(ProtocolError) -> Int64 {
        guard let value = decimal(word, max: maxCost) else {
            throw ProtocolError(.badCost, "cost must be an integer from 0 to \(maxCost), got \(Printable.quote(word))")
        }
        return value
    }

    public static func algorithm(_ word: UnsafeRawBufferPointer.SubSequence) throws(ProtocolError) -> Algorithm {
        guard let algorithm = Algorithm.allCases.first(where: { $0.rawValue.utf8.elementsEqual(word) }) else {
            throw ProtocolError(
                .badAlgorithm, "unknown algorithm \(Printable.quote(word)); expected one of \(Algorithm.namesList)")
        }
        return algorithm
    }

    /// `<limit>/<window>`, e.g. `100/1m`, `1000/250ms`.
    public static func limit(_ word: UnsafeRawBufferPointer.SubSequence, algorithm: Algorithm) throws(ProtocolError) -> Limit {
        guard let slash = word.firstIndex(of: UInt8(ascii: "/")),
            let count = decimal(word[word.startIndex..<slash], max: Limit.maxLimit),
            let window = WindowDuration.parseNanos(UnsafeRawBufferPointer(rebasing: word[(slash + 1)...]))
        else {
            throw ProtocolError(
                .badLimit, "limit must be <limit>/<window> such as 100/1m (units ms, s, m, h, d), got \(Printable.quote(word))")
        }
        do {
            return try Limit(algorithm: algorithm, limit: count, windowNanos: window)
        } catch {
            throw ProtocolError(.badLimit, "\(error.field.rawValue): \(error.message)")
        }
    }

    /// A plain non-negative decimal no larger than `max`: no sign, no spaces, no overflow (the check comes
    /// before each step, so no digit string, however long, can overflow).
    static func decimal(_ word: UnsafeRawBufferPointer.SubSequence, max: Int64) -> Int64? {
        guard !word.isEmpty else { return nil }
        var value: Int64 = 0
        for byte in word {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let digit = Int64(byte - 0x30)
            guard value <= (max - digit) / 10 else { return nil }
            value = value * 10 + digit
        }
        return value
    }
}
