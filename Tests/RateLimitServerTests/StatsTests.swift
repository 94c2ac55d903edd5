import RateLimitServer
import RateLimiting
import TestSupport
import Testing

@Suite("STATS", .timeLimit(.minutes(1)))
struct StatsTests {
    @Test func countsKeysDecisionsAndConnections() async throws {
        let rules = try RuleSet([rule("all", "*", .fixedWindow, 2, "1h")])
        try await withServer(shards: 4, rules: rules) { port, _ in
            let first = try LineClient(port: port)
            let second = try LineClient(port: port)
            #expect(try second.request("PING") == "PONG")
            for key in ["a", "b", "c"] { _ = try first.request("CHECK \(key) 1") }
            _ = try first.request("CHECK a 5")  // denied
            _ = try first.request("CHECK d 0")  // a peek creates no key
            let stats = try first.statistics()
            #expect(stats["keys"] == 3)
            #expect(stats["allowed"] == 4)
            #expect(stats["denied"] == 1)
            #expect(stats["connections"] == 2)
            #expect(stats["total_connections"] == 2)
            #expect(stats["shards"] == 4)
            #expect(stats["snapshot_age_ms"] == -1)
            #expect((stats["uptime_ms"] ?? -1) >= 0)
            _ = try first.request("RESET a")
            #expect(try first.statistics()["keys"] == 2)
        }
    }

    @Test func overRESPItIsOneBulkString() async throws {
        try await withServer { port, _ in
            let client = try LineClient(port: port)
            try client.send(respRequest("STATS"))
            let header = try #require(try client.readLine())
            #expect(header.hasPrefix("$"))
            var body = ""
            let length = Int(header.dropFirst().dropLast())!
            while body.utf8.count < length {
                body += (try client.readLine() ?? "") + "\n"
            }
            #expect(body.contains("STAT keys 0\r\n"))
            #expect(body.hasSuffix("END\r\n"))
        }
    }
}
