import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing

/// Shared mode against real `redis-server` processes: daemons on one Redis enforce one limit together,
/// replies stay in order, and a Redis that goes away, freezes or forgets its scripts never stalls a client
/// past the timeout nor gets an error to it.
@Suite("Redis shared mode", .serialized, .timeLimit(.minutes(3)), .enabled(if: ExternalTool.required || RedisServerProcess.isAvailable))
struct SharedModeTests {
    /// A daemon in shared mode. Its timeout is generous (the tests run in parallel on a busy machine, and
    /// only some are about the timeout); those that are give their own, which wins, coming last.
    func daemon(_ redis: RedisServerProcess, _ extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(arguments: ["--redis", redis.url, "--redis-mode", "shared", "--redis-timeout", "2s"] + extra)
    }


    /// Each algorithm, and what it admits of 240 requests at once under 50 an hour: 50, but the leaky bucket
    /// (a burst of 1) admits 1.
    @Test(arguments: [
        ("token_bucket", 50), ("leaky_bucket", 1), ("fixed_window", 50), ("sliding_window_log", 50),
        ("sliding_window_counter", 50),
    ])
    func threeDaemonsOnOneRedisAdmitExactlyTheLimit(_ algorithm: String, _ admitted: Int) throws {
        let redis = try RedisServerProcess()
        let daemons = try (0..<3).map { _ in try daemon(redis) }
        // Two clients per daemon, each pipelining 40 CHECKs of one key limited to 50 an hour, all at once.
        let allowed = Atomic<Int>(0)
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 6) { index in
            do {
                let client = try LineClient(port: daemons[index % 3].port)
                try client.send(String(repeating: "CHECK shared:key 1 50/1h \(algorithm)\n", count: 40))
                for reply in try client.readLines(40) {
                    if reply.hasPrefix("ALLOW") {
                        allowed.add(1, ordering: .relaxed)
                    } else if !reply.hasPrefix("DENY") {
                        failures.withLock { $0.append(reply) }
                    }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        #expect(allowed.load(ordering: .relaxed) == admitted)
        // The state is in Redis, under the prefix, the key its own hash tag.
        #expect(try redis.integer("EXISTS ratelimitd:{shared:key}") == 1)
        for daemon in daemons { #expect(!daemon.log.contains("unavailable"), "\(daemon.log)") }
    }

    @Test func twoThousandPipelinedRequestsComeBackInOrderMixedWithLocalCommands() throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis)
        let client = try LineClient(port: daemon.port)
        // Each key's limit is its number plus one, so each reply names the request it answers.
        var request = ""
        for index in 0..<2_000 {
            request += "CHECK order:\(index) 1 \(index + 1)/1h\n"
            if index % 250 == 0 { request += "PING\n" }
        }
        try client.send(request)
        var expected: [String] = []
        for index in 0..<2_000 {
            expected.append("ALLOW \(index) ")
            if index % 250 == 0 { expected.append("PONG") }
        }
        let replies = try client.readLines(expected.count)
        for (reply, prefix) in zip(replies, expected) where !reply.hasPrefix(prefix) {
            Issue.record("\(reply) where \(prefix) was due")
            break
        }
        #expect(try redis.integer("DBSIZE") == 2_000)
        // One source of counts for STATS and /metrics.
        let stats = try client.statistics()
        #expect(stats["shared_decided"] == 2_000 && stats["shared_fallbacks"] == 0 && stats["shared_redis_down"] == 0, "\(stats)")
        #expect(stats["allowed"] == 2_000 && stats["denied"] == 0, "every decision counts alike: \(stats)")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_shared_decided_total 2000"), "\(metrics)")
        #expect(metrics.contains("ratelimitd_shared_redis_down 0"), "\(metrics)")
    }

    @Test(arguments: [("local", "ALLOW 2 "), ("allow", "ALLOW 3 0"), ("deny", "DENY 0 100")])
    func redisGoneIsDecidedByOnErrorWithinTheTimeoutAndComesBack(_ onError: String, _ expected: String) throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis, ["--redis-on-error", onError, "--redis-timeout", "100ms"])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK gone 1 3/1h").hasPrefix("ALLOW 2 "))
        redis.stop()
        let started = Date()
        let reply = try client.request("CHECK gone 1 3/1h")
        #expect(Date().timeIntervalSince(started) < 2, "answered in \(Date().timeIntervalSince(started)) s")
        // Local: this daemon's own count, which started afresh (Redis had the first request).
        #expect(reply.hasPrefix(expected), "\(reply)")
        #expect(daemon.waitForLog("Redis unavailable for shared decisions"), "\(daemon.log)")
        #expect(try client.statistics()["shared_fallbacks"] ?? 0 >= 1)
        try redis.start()
        // Back to Redis (after its restart it holds nothing, so the count starts afresh there).
        let deadline = Date().addingTimeInterval(15)
        var answer = ""
        while Date() < deadline {
            answer = try client.request("CHECK back 1 5/1h")
            if daemon.log.contains("Redis answers shared decisions again") { break }
            usleep(50_000)
        }
        #expect(daemon.log.contains("Redis answers shared decisions again"), "\(daemon.log)")
        #expect(try redis.integer("EXISTS ratelimitd:{back}") == 1, "\(answer)")
    }

    @Test func aFrozenRedisNeverHoldsAClientPastTheTimeout() throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis, ["--redis-timeout", "200ms"])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK frozen 1 5/1h").hasPrefix("ALLOW 4 "))
        redis.pause(true)
        defer { redis.pause(false) }
        for _ in 0..<3 {
            let started = Date()
            #expect(try client.request("CHECK frozen 1 5/1h").hasPrefix("ALLOW"))
            #expect(Date().timeIntervalSince(started) < 1.5, "answered in \(Date().timeIntervalSince(started)) s")
        }
    }

    @Test func aDeniedKeyIsDeniedLocallyUntilRedisSaidItWouldBeAllowed() throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis)
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK spent 1 2/1h").hasPrefix("ALLOW 1 "))
        #expect(try client.request("CHECK spent 1 2/1h").hasPrefix("ALLOW 0 "))
        let first = try client.request("CHECK spent 1 2/1h")
        #expect(first.hasPrefix("DENY 0 "), "\(first)")
        let asked = try client.statistics()["shared_decided"] ?? 0
        // A hundred more: denied here, Redis not asked, the reset counting down from Redis's.
        try client.send(String(repeating: "CHECK spent 1 2/1h\n", count: 100))
        let replies = try client.readLines(100)
        let firstReset = Int(first.split(separator: " ")[2]) ?? 0
        #expect(replies.allSatisfy { reply in
            let parts = reply.split(separator: " ")
            return parts.count == 3 && parts[0] == "DENY" && parts[1] == "0" && (Int(parts[2]) ?? .max) <= firstReset
        }, "\(replies.prefix(3))")
        var stats = try client.statistics()
        #expect(stats["shared_decided"] == asked && stats["shared_deny_cache_hits"] == 100 && stats["shared_deny_cache_keys"] == 1, "\(stats)")
        #expect(stats["denied"] == 101, "every denial counts alike: \(stats)")
        // Another cost is Redis's to decide; a RESET here forgets the denial.
        #expect(try client.request("CHECK spent 2 2/1h").hasPrefix("DENY 0 "))
        #expect(try client.request("RESET spent") == "OK")
        #expect(try client.request("CHECK spent 1 2/1h").hasPrefix("ALLOW 1 "))
        stats = try client.statistics()
        #expect(stats["shared_decided"] == asked + 3 && stats["shared_deny_cache_hits"] == 100, "\(stats)")
    }

    @Test func startUpRefusesSharedModeWithoutRedisAndShowsItsSettings() throws {
        let noRedis = try DaemonProcess.runToExit(["--redis-mode", "shared", "--check-config"])
        #expect(noRedis.status == 1)
        #expect(noRedis.output.contains("shared mode needs Redis"), "\(noRedis.output)")
        let checked = try DaemonProcess.runToExit([
            "--redis", "redis://127.0.0.1:1", "--redis-mode", "shared", "--redis-on-error", "deny", "--redis-timeout", "50ms",
            "--check-config",
        ])
        #expect(checked.status == 0)
        #expect(checked.output.contains("mode shared, key_prefix \"ratelimitd:\", timeout 50ms, on_error deny"), "\(checked.output)")
        let badChoice = try DaemonProcess.runToExit(["--redis", "redis://h", "--redis-on-error", "retry", "--check-config"])
        #expect(badChoice.status == 1 && badChoice.output.contains("--redis-on-error"), "\(badChoice.output)")
    }

    @Test func aResetKeepsItsPlaceWhenRedisForgetsTheScript() throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis)
        let client = try LineClient(port: daemon.port)
        for round in 0..<10 {
            _ = try redis.command("SCRIPT FLUSH")
            // Sent together, so that they are usually one pipeline: the CHECKs fail NOSCRIPT around the DEL.
            try client.send("CHECK r\(round) 1 5/1h\nRESET r\(round)\nCHECK r\(round) 1 5/1h\n")
            let replies = try client.readLines(3)
            #expect(replies[0].hasPrefix("ALLOW 4 ") && replies[1] == "OK" && replies[2].hasPrefix("ALLOW 4 "), "\(replies)")
            // Only the CHECK after the RESET is left in Redis.
            #expect(try client.request("CHECK r\(round) 0 5/1h").hasPrefix("ALLOW 4 "))
        }
    }

    @Test func scriptFlushUnderLoadIsUnseen() throws {
        let redis = try RedisServerProcess()
        let daemon = try daemon(redis)
        let client = try LineClient(port: daemon.port)
        var replies: [String] = []
        for round in 0..<10 {
            if round % 3 == 1 { _ = try redis.command("SCRIPT FLUSH") }
            try client.send(String(repeating: "CHECK flushed 1 100/1h\n", count: 10))
            replies += try client.readLines(10)
        }
        // Every request was decided by Redis, in order: 100 admitted, counting down.
        #expect(replies == (0..<100).map { "ALLOW \(99 - $0) " + replies[$0].split(separator: " ")[2] })
        #expect(!daemon.log.contains("unavailable"), "\(daemon.log)")
        #expect(try client.statistics()["shared_fallbacks"] == 0)
    }

    /// Envoy's gRPC service through shared mode: every answer of `rls_checks.py` (all or nothing, shadow,
    /// quota of hits, overrides…) exactly as in local mode, decided in Redis.
    @Test(.enabled(if: ExternalTool.required || ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"] != nil))
    func envoyRequestsAreDecidedInRedisWithEveryAnswerAsInLocalMode() throws {
        let redis = try RedisServerProcess()
        let stats = try EnvoyTests().checksInSharedMode(redisURL: redis.url)
        // 29 requests had a limit to decide (the others had none, an unknown domain, or were refused).
        #expect(stats["shared_decided"] == 29 && stats["shared_fallbacks"] == 0, "\(stats)")
        #expect(stats["envoy_requests"] == 35 && stats["envoy_over_limit"] == 8, "\(stats)")
        #expect(try redis.integer("DBSIZE") > 0)
    }

    /// Envoy's requests while Redis is away are decided by on_error too, within the timeout.
    @Test(
        .enabled(if: ExternalTool.required || ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"] != nil),
        arguments: [("local", "OK 2"), ("allow", "OK 3"), ("deny", "OVER_LIMIT 0")])
    func envoyRequestsWhileRedisIsGoneAreDecidedByOnError(_ onError: String, _ expected: String) throws {
        let redis = try RedisServerProcess()
        let envoy = EnvoyTests()
        let directory = try envoy.rulesDirectory(["shop.yaml": EnvoyTests.shopRules])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (daemon, port) = try envoy.startDaemon(
            rules: directory, ["--redis", redis.url, "--redis-mode", "shared", "--redis-on-error", onError])
        #expect(try envoy.runChecks(port: port, phase: "probe").output == "OK 2\n")
        redis.stop()
        let started = Date()
        let probe = try envoy.runChecks(port: port, phase: "probe")
        // Local: this daemon's own count, which starts afresh (Redis had the first request).
        #expect(probe.output == expected + "\n", "\(probe.output) \(daemon.log)")
        #expect(Date().timeIntervalSince(started) < 5, "python, grpcio and the call took \(Date().timeIntervalSince(started)) s")
        #expect(try LineClient(port: daemon.port).statistics()["shared_fallbacks"] == 1)
    }
}
