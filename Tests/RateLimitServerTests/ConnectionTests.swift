import Foundation
import RateLimitServer
import RateLimiting
import ShardStore
import TestSupport
import Testing

@Suite("connection handling", .timeLimit(.minutes(2)))
struct ConnectionTests {
    @Test func answersTheBasicCommands() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            #expect(try client.request("PING") == "PONG")
            #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
            #expect(try client.request("CHECK user:1 0") == "ALLOW 99 600")
            #expect(try client.request("CHECK user:1 99") == "ALLOW 0 60000")
            #expect(try client.request("CHECK user:1 1") == "DENY 0 600")
            #expect(try client.request("CHECK user:1 101") == "DENY 0 -1")
            #expect(try client.request("RESET user:1") == "OK")
            #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
            #expect(try client.request("RESET never-seen") == "OK")
        }
    }

    @Test func errorsLeaveTheConnectionUsable() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send("FOO\nCHECK\nCHECK k -1\nCHECK k 1 1/0s\nCHECK k 1 1/1s lottery\nCHECK k\u{1}\n\n\r\nPING\n")
            let replies = try client.readLines(6)
            #expect(replies.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == [
                "ERR unknown_command", "ERR wrong_arguments", "ERR bad_cost", "ERR bad_limit", "ERR bad_algorithm",
                "ERR bad_key",
            ])
            #expect(try client.readLine() == "PONG")
        }
    }

    @Test func binaryJunkGetsErrorsAndNothingElse() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            var junk: [UInt8] = []
            var state: UInt64 = 0x5EED
            for _ in 0..<2_000 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                junk.append(UInt8(truncatingIfNeeded: state >> 56))
            }
            // Keep every junk line short so none trips the line limit, and none starting with `*`, which
            // would make it a (malformed) RESP frame that closes the connection, as the RESP tests check.
            for index in stride(from: 100, to: junk.count, by: 100) { junk[index] = UInt8(ascii: "\n") }
            for index in junk.indices where junk[index] == UInt8(ascii: "*") { junk[index] = UInt8(ascii: "?") }
            try client.send(bytes: junk + Array("\nPING\n".utf8))
            var replies: [String] = []
            while let line = try client.readLine() {
                replies.append(line)
                if line == "PONG" { break }
            }
            #expect(replies.last == "PONG")
            #expect(replies.dropLast().allSatisfy { $0.hasPrefix("ERR ") || $0 == "PONG" })
        }
    }

    @Test func anOverlongLineIsAnsweredThenClosedWithoutHurtingOthers() async throws {
        try await withServer { port, _ in
            let bystander = try LineClient(port: port)
            #expect(try bystander.request("PING") == "PONG")
            let client = try LineClient(port: port)
            try client.send("CHECK a 1\nPING\n" + String(repeating: "x", count: 5_000))
            let replies = try client.readUntilClosed()
            #expect(replies.count == 3)
            #expect(replies.first?.hasPrefix("ALLOW") == true)
            #expect(replies.dropFirst().first == "PONG")
            #expect(replies.last?.hasPrefix("ERR line_too_long") == true)
            #expect(try bystander.request("PING") == "PONG")
        }
    }

    @Test func aCompleteOverlongLineIsRefusedToo() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send("CHECK " + String(repeating: "k", count: 4_200) + " 1\nPING\n")
            let replies = try client.readUntilClosed()
            #expect(replies.count == 1)
            #expect(replies.first?.hasPrefix("ERR line_too_long") == true)
        }
    }

    @Test func quitAnswersWhatCameBeforeThenCloses() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send("CHECK a 1\nCHECK b 1\nCHECK c 1\nQUIT\nPING\n")
            let replies = try client.readUntilClosed()
            #expect(replies.count == 4)
            #expect(replies.last == "BYE")
        }
    }

    @Test func halfClosedClientsGetEveryReply() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            let requests = (0..<500).map { "CHECK half:\($0) 1\n" }.joined()
            try client.send(requests + "PING")  // the trailing partial line is not a request
            client.shutdownWrite()
            let replies = try client.readUntilClosed()
            #expect(replies.count == 500)
            #expect(replies.allSatisfy { $0 == "ALLOW 99 600" })
        }
    }

    @Test func aHalfClosedClientThatReadsSlowlyStillGetsEveryReply() async throws {
        // Megabytes of requests, then the client closes its side, then reads: replies must not be cut off
        // by the close, however far the server had to fall behind.
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            let count = 200_000
            let sender = Thread {
                try? client.send(String(repeating: "CHECK slow 0\n", count: count))
                client.shutdownWrite()
            }
            sender.start()
            usleep(200_000)
            var replies = 0
            while let line = try client.readLine() {
                #expect(line == "ALLOW 100 0")
                replies += 1
            }
            #expect(replies == count)
        }
    }

    @Test func clientsThatVanishMidPipelineHurtNobody() async throws {
        try await withServer { port, server in
            for round in 0..<20 {
                let client = try LineClient(port: port)
                try client.send((0..<2_000).map { "CHECK gone:\(round):\($0) 1\n" }.joined())
            }  // each client is closed without reading as it goes out of scope
            let survivor = try LineClient(port: port)
            #expect(try survivor.request("PING") == "PONG")
            #expect(try survivor.request("CHECK alive 1") == "ALLOW 99 600")
        }
    }

    @Test func aClientThatDoesNotReadIsPausedNotBuffered() async throws {
        // A megabyte of PINGs sent before reading a reply fills the socket buffers both ways: the server
        // must stop reading and resume, and every reply still arrives in order.
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            let count = 200_000
            let sender = Thread {
                try? client.send(String(repeating: "PING\n", count: count))
            }
            sender.start()
            var pongs = 0
            while pongs < count, let line = try client.readLine() {
                #expect(line == "PONG")
                pongs += 1
            }
            #expect(pongs == count)
        }
    }

    @Test func rulesDecideWhichLimitApplies() async throws {
        let rules = try RuleSet([
            rule("login", "login:*", .fixedWindow, 2, "1h"),
            rule("vip", "login:vip", .fixedWindow, 5, "1h"),
        ])
        try await withServer(rules: rules) { port, _ in
            let client = try LineClient(port: port)
            #expect(try client.request("CHECK login:alice 1").hasPrefix("ALLOW 1 "))
            #expect(try client.request("CHECK login:vip 1").hasPrefix("ALLOW 4 "))
            #expect(try client.request("CHECK other 1") == "ERR no_rule no rule matches key 'other'")
            #expect(try client.request("CHECK other 1 3/1s").hasPrefix("ALLOW 2 "))
        }
    }
}
