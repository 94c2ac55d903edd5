import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing

/// Shared mode on a real Redis Cluster of three primaries, started by the test: the url names one node, the
/// daemons find the others, route each key to its slot's primary, and stay exact while slots move.
@Suite("Redis Cluster shared mode", .serialized, .timeLimit(.minutes(4)), .enabled(if: ExternalTool.required || RedisClusterProcess.isAvailable))
struct RedisClusterTests {
    func daemon(_ cluster: RedisClusterProcess, _ extra: [String] = []) throws -> DaemonProcess {
        // A generous timeout: the tests run in parallel on a busy machine, and none is about the timeout.
        let daemon = try DaemonProcess(arguments: ["--redis", cluster.url, "--redis-mode", "shared", "--redis-timeout", "2s"] + extra)
        // Connecting happens at start; the notice says it found the cluster.
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, !daemon.log.contains("Redis Cluster found") { usleep(20_000) }
        #expect(daemon.log.contains("Redis Cluster found"), "\(daemon.log)")
        #expect(daemon.log.contains("primaries=3"), "\(daemon.log)")
        return daemon
    }

    /// Thirty keys, 120 CHECKs of each from six clients on three daemons: each key admits exactly its limit
    /// (50, or the leaky bucket's burst of 1), and the keys' states are spread over all three primaries.
    @Test(arguments: [
        ("token_bucket", 50), ("leaky_bucket", 1), ("fixed_window", 50), ("sliding_window_log", 50),
        ("sliding_window_counter", 50),
    ])
    func threeDaemonsOnAClusterAdmitExactlyTheLimitOfEachKey(_ algorithm: String, _ admitted: Int) throws {
        let cluster = try RedisClusterProcess()
        let daemons = try (0..<3).map { _ in try daemon(cluster) }
        let keys = (0..<30).map { "spread:\($0)" }
        let allowed = Mutex<[String: Int]>([:])
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { index in
            do {
                let client = try LineClient(port: daemons[index % 3].port)
                var request = ""
                var order: [String] = []
                for _ in 0..<20 {
                    for key in keys {
                        request += "CHECK \(key) 1 50/1h \(algorithm)\n"
                        order.append(key)
                    }
                }
                try client.send(request)
                for (key, reply) in zip(order, try client.readLines(order.count)) {
                    if reply.hasPrefix("ALLOW") {
                        allowed.withLock { $0[key, default: 0] += 1 }
                    } else if !reply.hasPrefix("DENY") {
                        failures.withLock { $0.append(reply) }
                    }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0.count } == 0, "\(failures.withLock { Array($0.prefix(5)) })")
        let counts = allowed.withLock { $0 }
        #expect(keys.allSatisfy { counts[$0] == admitted }, "\(counts)")
        let perNode = try cluster.keyCounts()
        #expect(perNode.reduce(0, +) == keys.count && perNode.allSatisfy { $0 > 0 }, "\(perNode)")
        for daemon in daemons {
            let stats = try LineClient(port: daemon.port).statistics()
            #expect(stats["shared_fallbacks"] == 0 && stats["shared_errors"] == 0, "\(stats)")
        }
    }

    /// Two daemons under pipelined load while `redis-cli --cluster reshard` moves 1,000 slots, keys and all,
    /// from one primary to another: no error reply, nothing decided by on_error, and every key's count
    /// exact (its replies' remaining values are limit-1, limit-2, … with none repeated or skipped).
    @Test func reshardingUnderLoadCausesNoErrorAndLosesNoCount() throws {
        let cluster = try RedisClusterProcess()
        let daemons = try (0..<2).map { _ in try daemon(cluster) }
        let limit = 1_000_000
        let keys = (0..<400).map { "moving:\($0)" }
        // A window of about a year whose end (windows are aligned to the epoch) is over an hour away: no
        // window boundary falls inside the test.
        let now = Int(Date().timeIntervalSince1970)
        let days = [365, 364].first { ($0 * 86_400) - now % ($0 * 86_400) > 3_600 }!
        let resharded = Atomic<Bool>(false)
        let rounds = Atomic<Int>(0)
        let remaining = Mutex<[String: [Int]]>([:])
        let failures = Mutex<[String]>([])
        // Every key exists before the slots move, so the keys' counts per node show the move.
        let first = try LineClient(port: daemons[0].port)
        try first.send(keys.map { "CHECK \($0) 1 \(limit)/\(days)d fixed_window\n" }.joined())
        let primed = try first.readLines(keys.count)
        #expect(primed.allSatisfy { $0.hasPrefix("ALLOW \(limit - 1) ") }, "\(primed.prefix(3))")
        remaining.withLock { all in
            for key in keys { all[key] = [limit - 1] }
        }
        let group = DispatchGroup()
        for index in 0..<2 {
            DispatchQueue.global().async(group: group) {
                do {
                    let client = try LineClient(port: daemons[index].port)
                    var random = SplitMix(seed: UInt64(index + 1))
                    // Until the resharding has finished, and at least 20 rounds of 200.
                    var round = 0
                    while round < 20 || !resharded.load(ordering: .acquiring), round < 5_000 {
                        let batch = (0..<200).map { _ in keys[Int(random.next() % UInt64(keys.count))] }
                        try client.send(batch.map { "CHECK \($0) 1 \(limit)/\(days)d fixed_window\n" }.joined())
                        let replies = try client.readLines(batch.count)
                        var seen: [(String, Int)] = []
                        for (key, reply) in zip(batch, replies) {
                            let parts = reply.split(separator: " ")
                            guard parts.count == 3, parts[0] == "ALLOW", let left = Int(parts[1]) else {
                                failures.withLock { $0.append(reply) }
                                continue
                            }
                            seen.append((key, left))
                        }
                        remaining.withLock { all in
                            for (key, left) in seen { all[key, default: []].append(left) }
                        }
                        round += 1
                        rounds.add(1, ordering: .relaxed)
                    }
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        // Start moving slots once both clients are under way.
        let deadline = Date().addingTimeInterval(30)
        while rounds.load(ordering: .relaxed) < 4, Date() < deadline { usleep(5_000) }
        let before = try cluster.keyCounts()
        let reshard = try cluster.reshard(slots: 1_000, from: 0, to: 1)
        resharded.store(true, ordering: .releasing)
        group.wait()
        #expect(reshard.status == 0, "\(reshard.output.suffix(2_000))")
        try cluster.waitUntilSettled()
        let after = try cluster.keyCounts()
        #expect(after[0] < before[0] && after[1] > before[1], "keys moved: \(before) → \(after)")

        #expect(failures.withLock { $0.count } == 0, "\(failures.withLock { Array($0.prefix(5)) })")
        for (key, values) in remaining.withLock({ $0 }) {
            let expected = Array((limit - values.count)..<limit).reversed().map { $0 }
            if values.sorted(by: >) != expected {
                Issue.record("\(key): \(values.count) admitted, remaining values \(values.sorted(by: >).prefix(10))…")
                break
            }
        }
        var redirects: Int64 = 0
        for daemon in daemons {
            let stats = try LineClient(port: daemon.port).statistics()
            #expect(stats["shared_fallbacks"] == 0 && stats["shared_errors"] == 0, "\(stats) \(daemon.log)")
            redirects += stats["shared_cluster_redirects"] ?? 0
        }
        // The load met moving and moved slots, and the daemons read the new slot map.
        #expect(redirects > 0)
        #expect(daemons.contains { $0.log.contains("Redis Cluster slot map read again") }, "\(daemons.map(\.log))")
    }

    /// Envoy's gRPC service on a cluster: every answer of `rls_checks.py` as in local mode. Its requests with
    /// descriptors in different slots are tried together and applied slot by slot.
    @Test(.enabled(if: ExternalTool.required || ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"] != nil))
    func envoyRequestsAreDecidedOnTheClusterWithEveryAnswerAsInLocalMode() throws {
        let cluster = try RedisClusterProcess()
        let stats = try EnvoyTests().checksInSharedMode(redisURL: cluster.url)
        #expect(stats["shared_decided"] == 29 && stats["shared_fallbacks"] == 0 && stats["shared_errors"] == 0, "\(stats)")
        let perNode = try cluster.keyCounts()
        #expect(perNode.filter { $0 > 0 }.count >= 2, "the descriptors' keys are spread over the primaries: \(perNode)")
    }

    /// Replication writes keys of every slot through one connection: pointed at a cluster, it says what to
    /// do instead, and the daemon serves on from its own state.
    @Test func replicateModeOnAClusterSaysToUseSharedModeAndServesOn() throws {
        let cluster = try RedisClusterProcess()
        let daemon = try DaemonProcess(arguments: ["--redis", cluster.url, "--redis-mode", "replicate"])
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, !daemon.log.contains("use mode = \\\"shared\\\" with a cluster") { usleep(20_000) }
        #expect(daemon.log.contains("use mode = \\\"shared\\\" with a cluster"), "\(daemon.log)")
        #expect(try LineClient(port: daemon.port).request("CHECK local 1 5/1h").hasPrefix("ALLOW 4 "))
    }
}
