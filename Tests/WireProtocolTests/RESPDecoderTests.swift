import NIOCore
import Testing
import WireProtocol

/// Decodes every frame in `bytes`, as they would arrive all at once.
func decodeAll(_ bytes: [UInt8], decoder: inout RESPDecoder) -> [String] {
    var buffer = ByteBuffer(bytes: bytes)
    var out: [String] = []
    loop: while buffer.readableBytes > 0 {
        switch decoder.next(in: &buffer) {
        case .request(let frame):
            out.append(arguments(frame, decoder.argumentRanges).joined(separator: "|"))
        case .empty: out.append("<empty>")
        case .needMoreData: out.append("<more>"); break loop
        case .malformed(let message): out.append("<malformed: \(message)>"); break loop
        }
    }
    return out
}

func arguments(_ frame: ByteBuffer, _ ranges: [Range<Int>]) -> [String] {
    frame.withUnsafeReadableBytes { bytes in ranges.map { String(decoding: bytes[$0], as: UTF8.self) } }
}

func resp(_ words: String...) -> [UInt8] {
    var text = "*\(words.count)\r\n"
    for word in words { text += "$\(word.utf8.count)\r\n\(word)\r\n" }
    return Array(text.utf8)
}

@Suite("RESP request decoder")
struct RESPDecoderTests {
    @Test func decodesArraysOfBulkStrings() {
        var decoder = RESPDecoder()
        #expect(decodeAll(resp("CHECK", "user:1", "1"), decoder: &decoder) == ["CHECK|user:1|1"])
        #expect(decodeAll(resp("PING") + resp("ECHO", "") + Array("*0\r\n".utf8), decoder: &decoder)
            == ["PING", "ECHO|", "<empty>"])
        // Bulk strings are binary-safe: CRLF and NUL inside are data.
        #expect(decodeAll(resp("ECHO", "a\r\nb\u{0}c"), decoder: &decoder) == ["ECHO|a\r\nb\u{0}c"])
    }

    @Test func waitsForPartialFramesAtEveryByteOffset() {
        let stream = resp("CHECK", "k", "1", "10/1s", "fixed_window") + resp("PING", "hello")
        for split in 0...stream.count {
            var decoder = RESPDecoder()
            var buffer = ByteBuffer(bytes: stream[..<split])
            var frames: [String] = []
            func drain() {
                while buffer.readableBytes > 0, case .request(let frame) = decoder.next(in: &buffer) {
                    frames.append(arguments(frame, decoder.argumentRanges).joined(separator: "|"))
                }
            }
            drain()
            buffer.writeBytes(stream[split...])
            drain()
            #expect(frames == ["CHECK|k|1|10/1s|fixed_window", "PING|hello"], "split at \(split)")
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test(arguments: [
        ("*-1\r\n", "negative array length"),
        ("*17\r\n", "too many arguments"),
        ("*99999999999999999999\r\n", "too many arguments"),
        ("*1\r\n$-1\r\n", "invalid bulk length"),
        ("*1\r\n$5000\r\n", "invalid bulk length"),
        ("*1\r\n$999999999\r\n", "invalid bulk length"),
        ("*1\r\n$3\r\nabcXY", "not terminated by CRLF"),
        ("*1\r\n:1\r\n", "expected '$'"),
        ("*1\r\n+OK\r\n", "expected '$'"),
        ("*1\r\n*1\r\n$1\r\na\r\n", "expected '$'"),
        ("*x\r\n", "invalid length character"),
        ("*1\n$1\r\na\r\n", "invalid length character"),
        ("*1\rX", "not terminated by CRLF"),
        ("*\r\n", "missing length"),
        ("*1\r\n$\r\n", "missing length"),
        ("*000000000000000000000001\r\n", "length line too long"),
    ])
    func refusesMalformedFrames(text: String, reason: String) {
        var decoder = RESPDecoder()
        let result = decodeAll(Array(text.utf8), decoder: &decoder)
        #expect(result.count == 1 && result[0].hasPrefix("<malformed: ") && result[0].contains(reason), "\(result)")
    }

    @Test func announcedLengthsAreRefusedBeforeTheirBytesArrive() {
        // Nothing but the headers has arrived; the verdict must not wait for 16 × 4 KiB.
        var decoder = RESPDecoder()
        #expect(decodeAll(Array("*1\r\n$4096\r\n".utf8), decoder: &decoder) == ["<more>"])
        var strict = RESPDecoder(maxArguments: 2, maxBulkLength: 8)
        #expect(decodeAll(Array("*3\r\n".utf8), decoder: &strict).first?.hasPrefix("<malformed") == true)
        var short = RESPDecoder(maxArguments: 2, maxBulkLength: 8)
        #expect(decodeAll(Array("*1\r\n$9\r\n".utf8), decoder: &short).first?.hasPrefix("<malformed") == true)
    }
}

@Suite("RESP commands and replies")
struct RESPCommandTests {
    func parseRESP(_ words: String...) -> Result<Request?, ProtocolError> {
        var buffer = ByteBuffer()
        var ranges: [Range<Int>] = []
        for word in words {
            let start = buffer.writerIndex
            buffer.writeString(word)
            ranges.append(start..<buffer.writerIndex)
        }
        return buffer.withUnsafeReadableBytes { bytes in
            var words = RangeWords(bytes, ranges: ranges)
            return Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(&words, dialect: .resp) }
        }
    }

    @Test func parsesTheRedisCompatibilityCommands() throws {
        #expect(try parseRESP("HELLO").get() == .hello(version: nil, credentials: nil))
        #expect(try parseRESP("hello", "3").get() == .hello(version: 3, credentials: nil))
        // Words laid end to end: "HELLO" 0..<5, "2" 5..<6, "AUTH" 6..<10, "default" 10..<17, "pw" 17..<19.
        #expect(try parseRESP("HELLO", "2", "AUTH", "default", "pw", "SETNAME", "app").get()
            == .hello(version: 2, credentials: Credentials(user: 10..<17, token: 17..<19)))
        #expect(try parseRESP("AUTH", "pw").get() == .auth(Credentials(user: nil, token: 4..<6)))
        #expect(try parseRESP("auth", "default", "pw").get() == .auth(Credentials(user: 4..<11, token: 11..<13)))
        #expect(throws: ProtocolError.self) { try parseRESP("AUTH").get() }
        #expect(throws: ProtocolError.self) { try parseRESP("AUTH", "a", "b", "c").get() }
        #expect(try parseRESP("CLIENT", "SETNAME", "app").get() == .clientAcknowledged)
        #expect(try parseRESP("client", "setinfo", "LIB-NAME", "redis-py").get() == .clientAcknowledged)
        #expect(try parseRESP("SELECT", "0").get() == .select)
        #expect(try parseRESP("COMMAND").get() == .emptyListing)
        #expect(try parseRESP("COMMAND", "DOCS").get() == .emptyListing)
        #expect(try parseRESP("CONFIG", "GET", "save", "SAVE", "appendonly", "maxmemory").get()
            == .configGet([.save, .appendonly]))
        #expect(try parseRESP("ECHO", "hi there").get() == .echo(Array("hi there".utf8)))
        #expect(try parseRESP("PING", "hi there").get() == .ping(message: Array("hi there".utf8)))
        // The key is the second argument: bytes 5..<6 of "CHECK" + "k" + "2" laid end to end.
        #expect(try parseRESP("CHECK", "k", "2").get() == .check(key: 5..<6, cost: 2, limit: nil))
    }

    @Test func refusesWhatItCannotDo() {
        #expect(code(parseRESP("HELLO", "4")) == .noproto)
        #expect(code(parseRESP("HELLO", "3", "AUTH", "only-user")) == .wrongArguments)
        #expect(code(parseRESP("CLIENT", "KILL", "x")) == .unknownCommand)
        #expect(code(parseRESP("SELECT", "1")) == .wrongArguments)
        #expect(code(parseRESP("CONFIG", "SET", "a", "b")) == .unknownCommand)
        #expect(code(parseRESP("CHECK", "has space", "1")) == .badKey)
        #expect(code(parseRESP("CHECK", "", "1")) == .badKey)
        #expect(code(parse("HELLO 3")) == .unknownCommand)
        #expect(code(parse("ECHO hi")) == .unknownCommand)
    }

    @Test(arguments: [
        (Reply.decision(.init(allowed: true, remaining: 99, resetMillis: 600)), "*3\r\n+ALLOW\r\n:99\r\n:600\r\n"),
        (.decision(.init(allowed: false, remaining: 0, resetMillis: -1)), "*3\r\n+DENY\r\n:0\r\n:-1\r\n"),
        (.pong, "+PONG\r\n"), (.ok, "+OK\r\n"), (.bye, "+OK\r\n"),
        (.error(ProtocolError(.badCost, "no")), "-ERR bad_cost no\r\n"),
        (.error(ProtocolError(.noproto, "use 2 or 3")), "-NOPROTO use 2 or 3\r\n"),
        (.message(Array("a b".utf8)), "$3\r\na b\r\n"),
        (.emptyArray, "*0\r\n"),
        (.configValues([.save, .appendonly], version: 2), "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
        (.configValues([.appendonly], version: 3), "%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"),
    ])
    func encodesReplies(reply: Reply, text: String) {
        var buffer = ByteBuffer()
        buffer.writeRESPReply(reply)
        #expect(String(buffer: buffer) == text)
    }

    @Test func helloIsAMapInRESP3AndAFlatArrayInRESP2() {
        var three = ByteBuffer()
        three.writeRESPReply(.hello(HelloReply(connectionID: 7, version: 3)))
        let text3 = String(buffer: three)
        #expect(text3.hasPrefix("%7\r\n$6\r\nserver\r\n$10\r\nratelimitd\r\n"))
        #expect(text3.contains("$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:7\r\n"))
        #expect(text3.hasSuffix("$7\r\nmodules\r\n*0\r\n"))
        var two = ByteBuffer()
        two.writeRESPReply(.hello(HelloReply(connectionID: 7, version: 2)))
        #expect(String(buffer: two).hasPrefix("*14\r\n"))
        #expect(String(buffer: two).contains("$5\r\nproto\r\n:2\r\n"))
    }
}
