import Foundation
import TestSupport
import Testing

/// Replication to a real `redis-server` that each test starts on a free port and stops: changes reach
/// Redis with a TTL, a second daemon carries on after the first is killed, and an outage stops nothing.
@Suite("Redis replication", .serialized, .timeLimit(.minutes(3)), .enabled(if: RedisServerProcess.isAvailable))
struct ReplicationTests {
    /// 10 per hour: nothing visibly refills during a test.
    static let config = slowRuleConfig

    func withConfig(_ body: (String) throws -> Void) throws {
        let path = try temporaryFile(Self.config)
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    func daemon(config: String, redis: RedisServerProcess, _ extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(arguments: ["--config", config, "--redis", redis.url, "--redis-flush-interval", "20ms"] + extra)
    }

    /// Waits until the daemon says Redis holds everything (bounded: 10 s).
    func waitUntilReplicated(_ client: LineClient) throws {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try client.statistics()["replication_pending"] == 0 { return }
            usleep(20_000)
        }
        Issue.record("replication did not catch up within 10 s: \(try client.statistics())")
    }

    @Test func changesReachRedisWithTheTimeUntilFreshAsTTL() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let daemon = try daemon(config: config, redis: redis)
            let client = try LineClient(port: daemon.port)
            for _ in 0..<7 { #expect(try client.request("CHECK user:1 1").hasPrefix("ALLOW")) }
            #expect(try client.request("CHECK login:x 2 5/15m sliding_window_log").hasPrefix("ALLOW 3 "))
            try waitUntilReplicated(client)
            // The two keys and the replication marker (a key named just the prefix).
            #expect(try redis.integer("DBSIZE") == 3)
            #expect(try redis.integer("EXISTS ratelimitd:") == 1)
            // 7 of 10 per hour spent: full again in 42 minutes.
            let bucketTTL = try redis.integer("PTTL ratelimitd:user:1")
            #expect(bucketTTL > 41 * 60_000 && bucketTTL <= 42 * 60_000, "\(bucketTTL)")
            // The log's newest entry leaves in 15 minutes; a shard keeps windows rounded up by under a tenth.
            let logTTL = try redis.integer("PTTL ratelimitd:login:x")
            #expect(logTTL > 14 * 60_000 && logTTL <= 15 * 60_000 * 11 / 10, "\(logTTL)")
            // A reset reaches Redis too.
            #expect(try client.request("RESET login:x") == "OK")
            try waitUntilReplicated(client)
            #expect(try redis.integer("EXISTS ratelimitd:login:x") == 0)
            #expect(try client.statistics()["replication_errors"] == 0)
        }
    }

    @Test func aStandbyCarriesOnWithTheQuotaTheKilledDaemonConsumed() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let first = try daemon(config: config, redis: redis)
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK user:1 7").hasPrefix("ALLOW 3 "))
            #expect(try client.request("CHECK team:9 4 5/1h fixed_window").hasPrefix("ALLOW 1 "))
            try waitUntilReplicated(client)
            #expect(try first.signalAndWait(SIGKILL) == 128 + SIGKILL)

            let standby = try daemon(config: config, redis: redis)
            #expect(standby.log.contains("restored from Redis"))
            #expect(standby.log.contains("keys=2"))
            let again = try LineClient(port: standby.port)
            #expect(try again.request("CHECK user:1 4").hasPrefix("DENY 3 "))
            #expect(try again.request("CHECK user:1 3").hasPrefix("ALLOW 0 "))
            #expect(try again.request("CHECK team:9 2 5/1h fixed_window").hasPrefix("DENY 1 "))
        }
    }

    @Test func theNewerOfSnapshotAndRedisWinsForEachKey() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let snapshot = NSTemporaryDirectory() + "ratelimitd-\(UUID().uuidString).snap"
            defer { try? FileManager.default.removeItem(atPath: snapshot) }

            // Redis learns of 2 spent on "a"; then a daemon without Redis spends 5 on "a" and 1 on "b" and
            // saves a snapshot: the snapshot is newer.
            let first = try daemon(config: config, redis: redis)
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK a 2").hasPrefix("ALLOW 8 "))
            #expect(try client.request("CHECK c 9").hasPrefix("ALLOW 1 "))
            try waitUntilReplicated(client)
            #expect(try first.signalAndWait(SIGKILL) == 128 + SIGKILL)
            let offline = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            let local = try LineClient(port: offline.port)
            #expect(try local.request("CHECK a 5").hasPrefix("ALLOW 5 "))
            #expect(try local.request("CHECK b 1").hasPrefix("ALLOW 9 "))
            #expect(try offline.signalAndWait(SIGTERM) == 0)

            // Then Redis hears of "c" again, later than the snapshot.
            let later = try daemon(config: config, redis: redis)
            #expect(try LineClient(port: later.port).request("CHECK c 1").hasPrefix("ALLOW 0 "))
            try waitUntilReplicated(try LineClient(port: later.port))
            #expect(try later.signalAndWait(SIGKILL) == 128 + SIGKILL)

            // Both: "a" and "b" from the snapshot, "c" from Redis. And Redis gets the snapshot's "a".
            let both = try daemon(config: config, redis: redis, ["--snapshot", snapshot])
            #expect(both.log.contains("older_than_snapshot=1"), "\(both.log)")
            let merged = try LineClient(port: both.port)
            #expect(try merged.request("CHECK a 0").hasPrefix("ALLOW 5 "))
            #expect(try merged.request("CHECK b 0").hasPrefix("ALLOW 9 "))
            #expect(try merged.request("CHECK c 0").hasPrefix("ALLOW 0 "))
            try waitUntilReplicated(merged)
            #expect(try both.signalAndWait(SIGKILL) == 128 + SIGKILL)
            let fromRedis = try daemon(config: config, redis: redis)
            #expect(try LineClient(port: fromRedis.port).request("CHECK a 0").hasPrefix("ALLOW 5 "))
        }
    }

    @Test func decisionsGoOnThroughARedisOutageAndRedisCatchesUpAfter() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let daemon = try daemon(config: config, redis: redis)
            let client = try LineClient(port: daemon.port)
            let keys = 300
            func load(_ rounds: Int) throws {
                for round in 0..<rounds {
                    let batch = (0..<keys).map { "CHECK user:\($0) 1\n" }.joined()
                    try client.send(batch)
                    let replies = try client.readLines(keys)
                    #expect(replies.allSatisfy { $0.hasPrefix("ALLOW") || $0.hasPrefix("DENY") }, "round \(round)")
                }
            }
            try load(1)
            try waitUntilReplicated(client)

            // Frozen: connections open, nothing answers. Decisions go on without waiting for it.
            redis.pause(true)
            let started = Date()
            try load(2)
            #expect(Date().timeIntervalSince(started) < 1.5, "decisions waited for a frozen Redis")
            redis.pause(false)

            // Down: killed, its data gone with it.
            redis.stop()
            try load(3)
            usleep(500_000)
            try load(2)
            let during = try client.statistics()
            #expect(during["replication_errors"]! > 0)
            // One pending write per key at most, however many changes.
            #expect(during["replication_pending"]! <= Int64(keys), "\(during)")
            #expect(during["replication_lag_ms"]! > 0)

            try redis.start()
            try waitUntilReplicated(client)
            #expect(try redis.integer("DBSIZE") == keys + 1)
            // Eight rounds spent 8 of user:7's 10 per hour: 48 minutes to refill, as Redis now knows.
            let ttl = try redis.integer("PTTL ratelimitd:user:7")
            #expect(ttl > 47 * 60_000 && ttl <= 48 * 60_000, "\(ttl) ms")
            #expect(try client.statistics()["replication_lag_ms"] == 0)
            // Once when an outage begins and once when it ends (a busy machine may turn the freeze into an
            // outage of its own).
            let log = daemon.log
            let failing = log.components(separatedBy: "Redis replication failing").count - 1
            let recovered = log.components(separatedBy: "Redis replication recovered").count - 1
            #expect(failing >= 1 && failing == recovered, "\(log)")
        }
    }

    @Test func aRedisThatLostItsDataGetsEveryKeyAgainWithoutNewTraffic() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let daemon = try daemon(config: config, redis: redis)
            let client = try LineClient(port: daemon.port)
            try client.send((0..<50).map { "CHECK quiet:\($0) 3\n" }.joined())
            #expect(try client.readLines(50).allSatisfy { $0.hasPrefix("ALLOW 7 ") })
            try waitUntilReplicated(client)
            redis.stop()  // no persistence: everything it held is gone
            try redis.start()
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, (try? redis.integer("DBSIZE")) != 51 { usleep(20_000) }
            #expect(try redis.integer("DBSIZE") == 51)
            #expect(daemon.log.contains("writing every key again"))
        }
    }

    @Test func aRestoreThatCouldNotRunAtStartRunsWhenRedisComesBack() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let first = try daemon(config: config, redis: redis)
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK far 6").hasPrefix("ALLOW 4 "))
            #expect(try client.request("CHECK near 6").hasPrefix("ALLOW 4 "))
            try waitUntilReplicated(client)
            #expect(try first.signalAndWait(SIGKILL) == 128 + SIGKILL)

            redis.pause(true)
            let second = try daemon(config: config, redis: redis, ["--shutdown-timeout", "3s"])
            #expect(second.log.contains("cannot restore from Redis"))
            let again = try LineClient(port: second.port)
            // Decided here before Redis is back: this daemon's state is the newer one and stays.
            #expect(try again.request("CHECK near 1").hasPrefix("ALLOW 9 "))
            redis.pause(false)
            try waitUntilReplicated(again)
            #expect(second.log.contains("restored from Redis"))
            #expect(try again.request("CHECK far 0").hasPrefix("ALLOW 4 "))
            #expect(try again.request("CHECK near 0").hasPrefix("ALLOW 9 "))
        }
    }

    @Test func aResetBeforeTheDelayedRestoreIsNotUndoneByIt() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let first = try daemon(config: config, redis: redis)
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK k 6").hasPrefix("ALLOW 4 "))
            try waitUntilReplicated(client)
            #expect(try first.signalAndWait(SIGKILL) == 128 + SIGKILL)

            redis.pause(true)
            let second = try daemon(config: config, redis: redis)
            #expect(try LineClient(port: second.port).request("RESET k") == "OK")
            redis.pause(false)
            let again = try LineClient(port: second.port)
            try waitUntilReplicated(again)
            #expect(second.log.contains("restored from Redis"))
            #expect(try again.request("CHECK k 0").hasPrefix("ALLOW 10 "))
            #expect(try redis.integer("EXISTS ratelimitd:k") == 0)
        }
    }

    @Test func aFrozenRedisCannotHoldTheShutdownPastItsTimeout() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            let daemon = try daemon(config: config, redis: redis, ["--shutdown-timeout", "2s"])
            let client = try LineClient(port: daemon.port)
            #expect(try client.request("CHECK a 1").hasPrefix("ALLOW"))
            try waitUntilReplicated(client)
            redis.pause(true)
            defer { redis.pause(false) }
            #expect(try client.request("CHECK b 1").hasPrefix("ALLOW"))
            let started = Date()
            #expect(try daemon.signalAndWait(SIGTERM, timeoutSeconds: 10) == 0)
            #expect(Date().timeIntervalSince(started) < 3.5, "took \(Date().timeIntervalSince(started)) s")
            #expect(daemon.log.contains("changes not replicated at shutdown"))
        }
    }

    @Test func valuesRatelimitdDidNotWriteAreIgnoredWithALog() throws {
        try withConfig { config in
            let redis = try RedisServerProcess()
            #expect(try redis.command("SET ratelimitd:user:1 hello") == "+OK")
            #expect(try redis.command("RPUSH ratelimitd:list x") == ":1")
            let daemon = try daemon(config: config, redis: redis)
            #expect(daemon.log.contains("ignoring an invalid value in Redis"))
            #expect(daemon.log.contains("invalid=2"))
            #expect(try LineClient(port: daemon.port).request("CHECK user:1 0").hasPrefix("ALLOW 10 "))
        }
    }

    @Test func anUnreachableRedisAtStartIsLoggedAndServingStarts() throws {
        try withConfig { config in
            let port = try RedisServerProcess.freePort()
            let daemon = try DaemonProcess(arguments: ["--config", config, "--redis", "redis://127.0.0.1:\(port)"])
            #expect(daemon.log.contains("cannot restore from Redis"))
            let client = try LineClient(port: daemon.port)
            #expect(try client.request("CHECK user:1 1").hasPrefix("ALLOW 9 "))
            #expect(try daemon.signalAndWait(SIGTERM) == 0)
            #expect(daemon.log.contains("changes not replicated at shutdown"))
        }
    }

    @Test func aPasswordIsSentAndAWrongOneIsReported() throws {
        try withConfig { config in
            let redis = try RedisServerProcess(arguments: ["--requirepass", "s3cret"])
            let good = try DaemonProcess(arguments: [
                "--config", config, "--redis", "redis://:s3cret@127.0.0.1:\(redis.port)/2", "--redis-flush-interval", "20ms",
            ])
            let client = try LineClient(port: good.port)
            #expect(try client.request("CHECK user:1 1").hasPrefix("ALLOW 9 "))
            try waitUntilReplicated(client)
            #expect(!good.log.contains("s3cret"), "the password must not be logged")
            let bad = try DaemonProcess(arguments: ["--config", config, "--redis", "redis://:wrong@127.0.0.1:\(redis.port)"])
            #expect(bad.log.contains("Redis refused the password"))
        }
    }

    @Test func tlsURLsAreRefusedAtStartWithTheReason() throws {
        let result = try DaemonProcess.runToExit(["--redis", "rediss://example.com:6380", "--check-config"])
        #expect(result.status == 1)
        #expect(result.output.contains("rediss:// (TLS) is not supported"), "\(result.output)")
    }
}
