import RateLimitServer
import RateLimiting
import ShardStore
import TestSupport
import Testing

@Suite("sharding, ordering and atomicity", .timeLimit(.minutes(2)))
struct ShardingTests {
    @Test func pipelinedRepliesKeepRequestOrderAcrossShards() async throws {
        try await withServer(shards: 4) { port, server in
            let client = try LineClient(port: port)
            let count = 10_000
            var requests = ""
            var expected: [String] = []
            for index in 0..<count {
                if index % 97 == 0 {
                    requests += "PING\n"
                    expected.append("PONG")
                } else if index % 89 == 0 {
                    requests += "CHECK k:\(index) 1 0/1s\n"
                    expected.append("ERR bad_limit")
                } else {
                    // A distinct key per request, each with a distinct cost: every reply is different.
                    let cost = index % 1_000
                    requests += "CHECK order:\(index) \(cost) 1000/1h fixed_window\n"
                    expected.append("ALLOW \(1_000 - cost)")
                }
            }
            try client.send(requests)
            let replies = try client.readLines(count)
            for (index, reply) in replies.enumerated() {
                let matches = reply == expected[index] || reply.hasPrefix(expected[index] + " ")
                #expect(matches, "reply \(index): \(reply), expected \(expected[index])")
            }
            let counts = server.keyCounts()
            #expect(counts.count == 4 && counts.allSatisfy { $0 > 1_000 })
        }
    }

    @Test func exactlyTheLimitIsAllowedUnderConcurrentPipelines() async throws {
        try await withServer(shards: 4) { port, _ in
            let clients = try (0..<8).map { _ in try LineClient(port: port) }
            let perClient = 2_000
            let chunk = String(repeating: "CHECK hot 1 1000/1h sliding_window_log\n", count: 100)
            for _ in 0..<(perClient / 100) {
                for client in clients { try client.send(chunk) }
            }
            var allowed = 0
            var denied = 0
            for client in clients {
                for reply in try client.readLines(perClient) {
                    if reply.hasPrefix("ALLOW ") { allowed += 1 } else if reply.hasPrefix("DENY ") { denied += 1 }
                }
            }
            #expect(allowed == 1_000)
            #expect(denied == 8 * perClient - 1_000)
        }
    }

    @Test func routingIsStableAndSpreadsKeys() {
        let router = ShardRouter(shardCount: 4)
        var counts = [0, 0, 0, 0]
        for index in 0..<10_000 {
            let shard = router.shard(for: "user:\(index)")
            #expect(shard == router.shard(for: "user:\(index)"))
            counts[shard] += 1
        }
        #expect(counts.allSatisfy { $0 > 2_000 && $0 < 3_000 })
        #expect(ShardRouter(shardCount: 1).shard(for: "anything") == 0)
    }
}
