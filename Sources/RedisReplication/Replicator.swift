import DaemonConfig
import Logging
import RateLimitServer
import ShardStore

/// Writes changed keys to Redis behind the decisions (write-behind): shards log which keys changed, and each
/// flush takes them, a key changed a thousand times since the last flush once, and writes them in pipelines
/// of `SET key value PX ttl` (or `DEL`). Decisions never wait for it. When Redis is down or slow, the
/// changes wait in the shards (one record per key at most), the connection is retried with capped
/// exponential back-off, and the first flush that gets through catches up.
///
/// `@unchecked Sendable`: its mutable state (the connection, the batch, the back-off) is touched only by
/// `ReplicationService`, which runs one flush at a time on its own thread.
public final class Replicator: @unchecked Sendable {
    public struct Settings: Sendable {
        public var endpoint: RedisEndpoint
        public var keyPrefix: String
        /// Bounds the connect and then every read and write; a Redis slower than this counts as down.
        public var timeoutMillis = 2_000
        /// Commands per pipeline: big enough to amortise round trips, small enough to requeue cheaply.
        public var pipelineSize = 4_096
        /// Pipelines per flush at most, so a backlog is worked off in steps rather than in one long flush.
        public var pipelinesPerFlush = 64
        public var firstRetryNanos: Int64 = 100_000_000
        public var maxRetryNanos: Int64 = 5_000_000_000

        public init(endpoint: RedisEndpoint, keyPrefix: String) {
            self.endpoint = endpoint
            self.keyPrefix = keyPrefix
        }
    }

    public let settings: Settings
    private let feed: ReplicationFeed
    private let logger: Logger
    private var connection: RedisConnection?
    private var batch: ChangeBatch
    private var pipeline = PipelineBuffer()
    private var retryDelay: Int64 = 0
    private var nextAttemptAt: Int64 = .min
    /// When the current outage began, and whether Redis was ever reached.
    private var outageSince: Int64?
    private var everConnected = false

    public init(settings: Settings, feed: ReplicationFeed, logger: Logger) {
        self.settings = settings
        self.feed = feed
        self.logger = logger
        self.batch = ChangeBatch(keyPrefix: Array(settings.keyPrefix.utf8))
    }

    /// Writes what the shards have logged, up to `pipelinesPerFlush` pipelines; returns whether Redis has
    /// caught up. With `retryNow`, a connection is attempted even inside the back-off (the final flush).
    @discardableResult
    public func flush(retryNow: Bool = false) -> Bool {
        let now = feed.clock.nanosecondsNow()
        if connection == nil {
            guard retryNow || now >= nextAttemptAt else { return false }
            do {
                connection = try RedisConnection.connect(to: settings.endpoint, timeoutMillis: settings.timeoutMillis)
            } catch {
                failed(error.description, now: now)
                return false
            }
        }
        for _ in 0..<settings.pipelinesPerFlush {
            batch.removeAll()
            let remaining = feed.take(budget: settings.pipelineSize, into: &batch)
            if batch.isEmpty { break }
            feed.status.inFlightSince.store(batch.oldestChangeAt == .max ? 0 : batch.oldestChangeAt, ordering: .relaxed)
            feed.status.inFlight.store(batch.count, ordering: .relaxed)
            let error = write(batch)
            if error != nil { feed.requeue(batch) }
            feed.status.inFlight.store(0, ordering: .relaxed)
            if let error {
                failed(error, now: feed.clock.nanosecondsNow())
                return false
            }
            if remaining == 0 { break }
        }
        succeeded(now: feed.clock.nanosecondsNow())
        return feed.pending().count == 0
    }

    /// Flushes until Redis has everything, a write fails, or `limit` has passed, trying to connect at once
    /// even inside the back-off; for shutdown, when nothing changes any more. Returns the changes still
    /// not written.
    public func finalFlush(forNanoseconds limit: Int64) -> Int {
        let deadline = feed.clock.nanosecondsNow() + limit
        var first = true
        while true {
            let before = feed.pending().count
            if flush(retryNow: first) { return 0 }
            first = false
            let after = feed.pending().count
            // A failed write, or one that made no progress, ends it: the shutdown must not hang on Redis.
            if connection == nil || after >= before || feed.clock.nanosecondsNow() >= deadline { return after }
        }
    }

    /// Sends `batch` as one pipeline and reads every reply; returns what went wrong, or nil.
    private func write(_ batch: ChangeBatch) -> String? {
        guard let connection else { return "not connected" }
        pipeline.removeAll()
        batch.bytes.withUnsafeBytes { raw in
            for item in batch.items {
                let key = UnsafeRawBufferPointer(rebasing: raw[item.key])
                switch item.action {
                case .set(let value, let ttl):
                    pipeline.set(key: key, value: UnsafeRawBufferPointer(rebasing: raw[value]), ttlMillis: ttl)
                case .delete:
                    pipeline.delete(key: key)
                }
            }
        }
        do {
            try pipeline.bytes.withUnsafeBytes { try connection.append(formatted: $0) }
            var refusal: String?
            for _ in batch.items {
                if case .error(let message) = try connection.readReply(), refusal == nil { refusal = message }
            }
            // Redis answered but refused (out of memory, a read-only replica after a failover): try again
            // on a new connection, which may reach the new primary.
            return refusal.map { "Redis refused a write: \($0)" }
        } catch {
            return "\(error)"
        }
    }

    private func failed(_ error: String, now: Int64) {
        connection = nil
        feed.status.errors.add(1, ordering: .relaxed)
        retryDelay = retryDelay == 0 ? settings.firstRetryNanos : min(retryDelay * 2, settings.maxRetryNanos)
        nextAttemptAt = now + retryDelay
        guard outageSince == nil else {
            logger.debug("Redis still unavailable", metadata: ["error": "\(error)", "retry_ms": "\(retryDelay / 1_000_000)"])
            return
        }
        outageSince = now
        logger.warning(
            "Redis replication failing; decisions go on from local state and changes wait for Redis",
            metadata: ["redis": "\(settings.endpoint)", "error": "\(error)", "pending": "\(feed.pending().count)"])
    }

    private func succeeded(now: Int64) {
        retryDelay = 0
        if let since = outageSince {
            outageSince = nil
            logger.notice(
                "Redis replication recovered",
                metadata: ["redis": "\(settings.endpoint)", "outage_ms": "\((now - since) / 1_000_000)",
                           "pending": "\(feed.pending().count)"])
        } else if !everConnected {
            logger.info("replicating to Redis", metadata: ["redis": "\(settings.endpoint)", "key_prefix": "\(settings.keyPrefix)"])
        }
        everConnected = true
    }
}
