import NIOCore
import RateLimiting
import Testing
import WireProtocol

func parse(_ line: String) -> Result<Request?, ProtocolError> {
    Array(line.utf8).withUnsafeBytes { bytes in
        Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(bytes) }
    }
}

func parse(bytes: [UInt8]) -> Result<Request?, ProtocolError> {
    bytes.withUnsafeBytes { bytes in
        Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(bytes) }
    }
}

/// A parsed request with its key as text, so tests can compare it with what they wrote.
enum Parsed: Equatable {
    case check(String, cost: Int64, limit: Limit?)
    case reset(String)
    case other(Request)
}

func parsed(_ line: String) throws -> Parsed? {
    let bytes = Array(line.utf8)
    let request = try bytes.withUnsafeBytes { raw in try RequestParser.parse(raw) }
    func text(_ span: Range<Int>) -> String { String(decoding: bytes[span], as: UTF8.self) }
    switch request {
    case nil: return nil
    case .check(let span, let cost, let limit)?: return .check(text(span), cost: cost, limit: limit)
    case .reset(let span)?: return .reset(text(span))
    case let other?: return .other(other)
    }
}

func code(_ result: Result<Request?, ProtocolError>) -> ErrorCode? {
    if case .failure(let error) = result { return error.code }
    return nil
}

@Suite("line protocol parser")
struct RequestParserTests {
    @Test func parsesEveryRequestForm() throws {
        #expect(try parsed("CHECK user:1") == .check("user:1", cost: 1, limit: nil))
        #expect(try parsed("CHECK user:1 5") == .check("user:1", cost: 5, limit: nil))
        #expect(try parsed("check user:1 0") == .check("user:1", cost: 0, limit: nil))
        let limit = try Limit(algorithm: .tokenBucket, limit: 100, windowNanos: 60_000_000_000)
        #expect(try parsed("CHECK k 2 100/1m") == .check("k", cost: 2, limit: limit))
        let window = try Limit(algorithm: .slidingWindowLog, limit: 5, windowNanos: 900_000_000_000)
        #expect(try parsed("CHECK k 1 5/15m sliding_window_log") == .check("k", cost: 1, limit: window))
        let fast = try Limit(algorithm: .fixedWindow, limit: 1000, windowNanos: 250_000_000)
        #expect(try parsed("Check   k  1   1000/250ms   fixed_window  ") == .check("k", cost: 1, limit: fast))
        #expect(try parsed("PING") == .other(.ping(message: nil)))
        #expect(try parsed("pInG") == .other(.ping(message: nil)))
        #expect(try parsed("RESET user:1") == .reset("user:1"))
        #expect(try parsed("QUIT") == .other(.quit))
        #expect(try parsed("") == nil)
        #expect(try parsed("    ") == nil)
    }

    @Test func keysAreCaseSensitive() throws {
        #expect(try parsed("CHECK User:1") == .check("User:1", cost: 1, limit: nil))
    }

    @Test(arguments: [
        ("FOO", ErrorCode.unknownCommand), ("CHECKX k", .unknownCommand), ("\u{1}\u{2}", .unknownCommand),
        ("CHECK", .wrongArguments), ("CHECK a 1 1/1s token_bucket extra", .wrongArguments),
        ("RESET", .wrongArguments), ("RESET a b", .wrongArguments),
        ("QUIT now", .wrongArguments),
        ("CHECK k -1", .badCost), ("CHECK k abc", .badCost), ("CHECK k 1000000001", .badCost),
        ("CHECK k 99999999999999999999999", .badCost), ("CHECK k +1", .badCost), ("CHECK k 1.5", .badCost),
        ("CHECK k 1 100", .badLimit), ("CHECK k 1 100/", .badLimit), ("CHECK k 1 /1m", .badLimit),
        ("CHECK k 1 0/1m", .badLimit), ("CHECK k 1 100/1x", .badLimit), ("CHECK k 1 100/0s", .badLimit),
        ("CHECK k 1 1000000001/1s", .badLimit), ("CHECK k 1 100/400d", .badLimit),
        ("CHECK k 1 20000/1s sliding_window_log", .badLimit),
        ("CHECK k 1 100/1m lottery", .badAlgorithm), ("CHECK k 1 100/1m TOKEN_BUCKET", .badAlgorithm),
        ("CHECK k\u{7f} 1", .badKey), ("CHECK k\tx 1", .badKey), ("RESET k\u{0}", .badKey),
        ("CHECK \(String(repeating: "k", count: 257)) 1", .badKey),
    ])
    func refusesBadInput(line: String, expected: ErrorCode) {
        #expect(code(parse(line)) == expected)
    }

    @Test func keysOfExactlyTheMaximumLengthAreFine() throws {
        let key = String(repeating: "k", count: 256)
        #expect(try parsed("CHECK \(key)") == .check(key, cost: 1, limit: nil))
    }

    @Test func nonASCIIKeysAreRefused() {
        #expect(code(parse("CHECK clé 1")) == .badKey)
        #expect(code(parse(bytes: Array("CHECK k".utf8) + [0xFF, 0xFE])) == .badKey)
    }

    @Test func binaryJunkIsEchoedSafely() throws {
        var junk: [UInt8] = [0x00, 0x1B, 0x0D, 0xC3, 0x28]
        junk += Array(repeating: 0x41, count: 200)
        guard case .failure(let error) = parse(bytes: junk) else {
            Issue.record("junk parsed")
            return
        }
        #expect(error.code == .unknownCommand)
        #expect(error.message.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F })
        #expect(error.message.utf8.count < 300)
    }
}

@Suite("line framing and reply encoding")
struct FramingTests {
    @Test func cutsLinesAndAcceptsCRLF() {
        var buffer = ByteBuffer(string: "PING\r\nCHECK a 1\n\npartial")
        let framer = LineFramer()
        var lines: [String] = []
        while case .line(let line) = framer.next(in: &buffer) {
            lines.append(String(buffer: line))
        }
        #expect(lines == ["PING", "CHECK a 1", ""])
        #expect(String(buffer: buffer) == "partial")
    }

    @Test func refusesOverlongLinesBeforeTheirEndArrives() {
        let framer = LineFramer(maxLineLength: 10)
        var exact = ByteBuffer(string: String(repeating: "x", count: 10) + "\r\n")
        guard case .line = framer.next(in: &exact) else { Issue.record("10 bytes refused"); return }
        var partial = ByteBuffer(string: String(repeating: "x", count: 12))
        guard case .tooLong = framer.next(in: &partial) else { Issue.record("partial overlong accepted"); return }
        var complete = ByteBuffer(string: String(repeating: "x", count: 11) + "\n")
        guard case .tooLong = framer.next(in: &complete) else { Issue.record("overlong accepted"); return }
        // Refused at the 11th byte, unless it is the \r of a closing \r\n.
        var eleventh = ByteBuffer(string: String(repeating: "x", count: 11))
        guard case .tooLong = framer.next(in: &eleventh) else { Issue.record("11th byte accepted"); return }
        var waiting = ByteBuffer(string: String(repeating: "x", count: 10) + "\r")
        guard case .needMoreData = framer.next(in: &waiting) else { Issue.record("may still end in \\r\\n"); return }
    }

    @Test(arguments: [
        (Reply.decision(Decision(allowed: true, remaining: 99, resetMillis: 600)), "ALLOW 99 600\n"),
        (.decision(Decision(allowed: false, remaining: 0, resetMillis: -1)), "DENY 0 -1\n"),
        (.decision(Decision(allowed: true, remaining: 1_000_000_000, resetMillis: 31_536_000_000)),
         "ALLOW 1000000000 31536000000\n"),
        (.decision(Decision(allowed: true, remaining: 0, resetMillis: 9_223_372_036_854_775_807)),
         "ALLOW 0 9223372036854775807\n"),
        (.pong, "PONG\n"), (.ok, "OK\n"), (.bye, "BYE\n"),
        (.error(ProtocolError(.badKey, "no")), "ERR bad_key no\n"),
    ])
    func encodesReplies(reply: Reply, text: String) {
        var buffer = ByteBuffer()
        buffer.writeLineReply(reply)
        #expect(String(buffer: buffer) == text)
    }
}
