import RateLimitServer
import TestSupport
import Testing

func respRequest(_ words: String...) -> String {
    "*\(words.count)\r\n" + words.map { "$\($0.utf8.count)\r\n\($0)\r\n" }.joined()
}

@Suite("RESP on the same port", .timeLimit(.minutes(2)))
struct RESPConnectionTests {
    @Test func mixedPipelinesGetEachReplyInItsOwnForm() async throws {
        try await withServer(shards: 4) { port, _ in
            let client = try LineClient(port: port)
            var stream = ""
            var expected: [String] = []
            for index in 0..<400 {
                let cost = index % 50
                if index % 2 == 0 {
                    stream += "CHECK mixed:\(index) \(cost) 50/1h fixed_window\n"
                    expected.append("ALLOW \(50 - cost) ")
                } else {
                    stream += respRequest("CHECK", "mixed:\(index)", "\(cost)", "50/1h", "fixed_window")
                    expected += ["*3", "+ALLOW", ":\(50 - cost)", ":"]
                }
            }
            stream += "PING\r\n" + respRequest("PING") + respRequest("PING", "hi") + "CHECK\n" + respRequest("CHECK")
            expected += ["PONG", "+PONG", "$2", "hi", "ERR wrong_arguments", "-ERR wrong_arguments"]
            try client.send(stream)
            let lines = try client.readLines(expected.count)
            for (index, line) in lines.enumerated() {
                let trimmed = line.hasSuffix("\r") ? String(line.dropLast()) : line
                #expect(trimmed.hasPrefix(expected[index]), "line \(index): \(trimmed), expected \(expected[index])")
            }
        }
    }

    @Test func helloSwitchesToRESP3AndReportsTheConnection() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send(respRequest("HELLO", "3") + respRequest("CHECK", "user:1", "1"))
            let lines = try client.readLines(30)
            #expect(lines[0] == "%7\r")
            #expect(lines[1...4] == ["$6\r", "server\r", "$10\r", "ratelimitd\r"])
            #expect(lines[26...29] == ["*3\r", "+ALLOW\r", ":99\r", ":600\r"])
            try client.send(respRequest("HELLO", "4"))
            #expect(try client.readLine() == "-NOPROTO unsupported protocol version '4'; use 2 or 3\r")
        }
    }

    @Test func aMalformedFrameIsAnsweredThenClosed() async throws {
        try await withServer { port, _ in
            let bystander = try LineClient(port: port)
            let client = try LineClient(port: port)
            try client.send(respRequest("PING") + "*1\r\n$99999\r\n" + respRequest("PING"))
            let lines = try client.readUntilClosed()
            #expect(lines == ["+PONG\r", "-ERR protocol_error invalid bulk length 99999 (0 to 4096)\r"])
            #expect(try bystander.request("PING") == "PONG")
        }
    }

    @Test func aFrameArrivingByteByByteIsDecodedOnce() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            let frame = Array(respRequest("CHECK", "slow:" + String(repeating: "s", count: 200), "1").utf8)
            for byte in frame { try client.send(bytes: [byte]) }
            #expect(try client.readLines(4) == ["*3\r", "+ALLOW\r", ":99\r", ":600\r"])
        }
    }

    @Test func quitOverRESPAnswersOK() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send(respRequest("QUIT") + respRequest("PING"))
            #expect(try client.readUntilClosed() == ["+OK\r"])
        }
    }
}
