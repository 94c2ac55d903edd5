import DaemonConfig
import Foundation
import Logging
import RateLimitServer
import RateLimiting
import ShardStore
import TestSupport
import Testing

@testable import RedisReplication

/// The replicator and the restore, in process, against a `redis-server` each test starts and stops.
@Suite("replicator", .serialized, .timeLimit(.minutes(2)), .enabled(if: RedisServerProcess.isAvailable))
struct ReplicatorTests {
    init() {
        // hiredis writes with write(2); the daemon ignores SIGPIPE, and so must the process running these.
        signal(SIGPIPE, SIG_IGN)
    }

    static var logger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// A server on a free port with replication on, a replicator for `redis` that the test flushes by hand.
    func withReplicatedServer(
        redis: RedisServerProcess, keyPrefix: String = "ratelimitd:",
        _ body: (_ client: LineClient, _ replicator: Replicator, _ feed: ReplicationFeed) throws -> Void
    ) async throws {
        let server = RateLimitServer(
            configuration: ServerConfiguration(host: "127.0.0.1", port: 0, shards: 2), logger: Self.logger)
        let feed = server.replicationFeed()
        let channel = try await server.start()
        var settings = Replicator.Settings(
            endpoint: try RedisEndpoint(parsing: redis.url), keyPrefix: keyPrefix)
        settings.firstRetryNanos = 1_000_000
        let replicator = Replicator(settings: settings, feed: feed, logger: Self.logger)
        do {
            try body(try LineClient(port: channel.localAddress!.port!), replicator, feed)
        } catch {
            Issue.record(error)
        }
        try await channel.close()
        try await server.shutdown()
    }

    func connect(_ redis: RedisServerProcess) throws -> RedisConnection {
        try RedisConnection.connect(to: try RedisEndpoint(parsing: redis.url), timeoutMillis: 2_000)
    }

    /// `calls` of a command in Redis's INFO commandstats (0 if never called).
    func calls(of command: String, in redis: RedisServerProcess) throws -> Int {
        guard case .string(let bytes) = try connect(redis).command(["INFO", "commandstats"]) else { return -1 }
        let info = String(decoding: bytes, as: UTF8.self)
        guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_\(command):") }),
            let calls = line.split(separator: ",").first?.split(separator: "=").last
        else { return 0 }
        return Int(calls) ?? -1
    }

    @Test func aKeyChangedAThousandTimesBetweenFlushesIsWrittenOnce() async throws {
        let redis = try RedisServerProcess()
        try await withReplicatedServer(redis: redis) { client, replicator, feed in
            try client.send(String(repeating: "CHECK hot 1 100000/1h\n", count: 1_000))
            #expect(try client.readLines(1_000).allSatisfy { $0.hasPrefix("ALLOW") })
            #expect(feed.pending().count == 1)
            #expect(replicator.flush())
            // One for the key, one for the replication marker.
            #expect(try calls(of: "set", in: redis) == 2)
            guard case .string(let value) = try connect(redis).command(["GET", "ratelimitd:hot"]) else {
                Issue.record("no value in Redis")
                return
            }
            let stored = try ReplicaRecord.decode(value, now: feed.clock.nanosecondsNow())
            guard case .bucket(let bucket) = stored.state else {
                Issue.record("not a bucket: \(stored)")
                return
            }
            // 1,000 of 100,000 per hour spent: 36 s of refill ahead of the clock when spent, less the time
            // since (generously bounded: the machine may be busy).
            let ahead = bucket.theoreticalArrival - stored.updatedAt
            #expect(ahead > 26_000_000_000 && ahead <= 36_000_000_000, "\(ahead)")
        }
    }

    @Test func aFailedFlushKeepsEveryChangeAndALaterOneCatchesUp() async throws {
        let redis = try RedisServerProcess()
        try await withReplicatedServer(redis: redis) { client, replicator, feed in
            redis.stop()
            for key in ["a", "b", "c"] { #expect(try client.request("CHECK \(key) 1").hasPrefix("ALLOW")) }
            #expect(!replicator.flush())
            #expect(feed.status.errors.load(ordering: .relaxed) == 1)
            #expect(feed.pending().count == 3)
            #expect(try client.request("CHECK a 1").hasPrefix("ALLOW"))
            #expect(feed.pending().count == 3)
            try redis.start()
            usleep(10_000)  // past the 1 ms back-off
            #expect(replicator.flush())
            #expect(try redis.integer("DBSIZE") == 3 + 1)
            #expect(feed.pending().count == 0)
        }
    }

    @Test func aRefusedWriteIsRetriedNotLost() async throws {
        let redis = try RedisServerProcess()
        try await withReplicatedServer(redis: redis) { client, replicator, feed in
            #expect(replicator.flush())  // the marker is in place: what follows is a refused pipeline
            // A replica refuses writes, as a demoted primary does after a failover.
            let demoted = try redis.command("REPLICAOF 127.0.0.1 1")
            #expect(demoted == "+OK")
            #expect(try client.request("CHECK k 1").hasPrefix("ALLOW"))
            #expect(!replicator.flush())
            #expect(feed.pending().count == 1)
            #expect(try redis.command("REPLICAOF NO ONE") == "+OK")
            usleep(10_000)
            #expect(replicator.flush())
            #expect(try redis.integer("EXISTS ratelimitd:k") == 1)
        }
    }

    @Test func restoreTakesOnlyKeysUnderThePrefixTakenLiterally() async throws {
        let redis = try RedisServerProcess()
        let now = ManualDecisionClock().nanosecondsNow()
        let state = ReplicaRecord.Contents(
            updatedAt: now, state: .bucket(BucketState(theoreticalArrival: .max / 2)), windowNanos: 0)
        let connection = try connect(redis)
        for name in ["a*b:mine", "axb:other", "a*b:also-mine"] {
            _ = try connection.command([Array("SET".utf8), Array(name.utf8), ReplicaRecord.encode(state)])
        }
        _ = try connection.command(["SET", "a*b:bad key", "x"])
        let server = RateLimitServer(configuration: ServerConfiguration(shards: 2), logger: Self.logger)
        let feed = server.replicationFeed()
        let outcome = try RedisRestore.restore(
            from: connection, keyPrefix: "a*b:", into: feed, snapshotSavedAt: nil, logger: Self.logger, scanCount: 1)
        #expect(outcome.restored == 2)
        #expect(outcome.invalid == 1)
        #expect(server.keyCounts().reduce(0, +) == 2)
        #expect(feed.pending().count == 0, "what came from Redis is not written back")
        try await server.shutdown()
    }

    @Test func repliesOfEveryTypeComeBackWhole() throws {
        let redis = try RedisServerProcess()
        let connection = try connect(redis)
        #expect(try connection.command(["NOSUCHCOMMAND"]) == .error("ERR unknown command 'NOSUCHCOMMAND', with args beginning with: "))
        #expect(try connection.command(["SET", "k", ""]) == .status("OK"))
        #expect(try connection.command(["GET", "k"]) == .string([]))
        #expect(try connection.command(["GET", "missing"]) == .null)
        #expect(try connection.command(["RPUSH", "l", "a", "b"]) == .integer(2))
        #expect(try connection.command(["LRANGE", "l", "0", "-1"]) == .array([.string([97]), .string([98])]))
        redis.stop()
        #expect(throws: RedisError.self) { try connection.command(["PING"]) }
    }
}
