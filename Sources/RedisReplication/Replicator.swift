import DaemonConfig
import Logging
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
    public let feed: ReplicationFeed
    private let logger: Logger
    private var connection: RedisConnection?
    private var batch = ChangeBatch()
    private let keyPrefix: [UInt8]
    private var pipeline = PipelineBuffer()
    /// The value being encoded (a `ReplicaRecord`), reused from key to key.
    private var value: [UInt8] = []
    private var retry: RedisRetry
    /// When the current outage began, and whether Redis was ever reached.
    private var everConnected = false
    /// Set when the start-up restore could not reach Redis: it runs on the first connection instead, before
    /// anything is written, with the snapshot's save time (nil: no snapshot).
    private var restoreOnConnect: Int64??
    /// This connection's Redis client ID, and that of one abandoned after a failure (see `open`).
    private var clientID: Int64?
    private var abandonedClientID: Int64?

    public init(settings: Settings, feed: ReplicationFeed, logger: Logger) {
        self.settings = settings
        self.feed = feed
        self.logger = logger
        self.retry = RedisRetry(firstDelayNanos: settings.firstRetryNanos, maxDelayNanos: settings.maxRetryNanos)
        self.keyPrefix = Array(settings.keyPrefix.utf8)
    }

    /// Loads Redis's copy into the shards before the server listens (see `RedisRestore`); call once, after
    /// the snapshot. If Redis cannot be reached the daemon starts anyway, from the snapshot alone, and says
    /// so: refusing to start would turn a Redis outage into a rate-limiter outage. The restore then runs
    /// on the first connection, before anything is written, and replaces only keys no decision has
    /// changed since.
    public func restoreAtStart(snapshotSavedAt: Int64?) {
        do {
            try open(deadline: .max)
            try restore(snapshotSavedAt: snapshotSavedAt)
        } catch {
            connection = nil
            restoreOnConnect = .some(snapshotSavedAt)
            feed.rememberResets(true)
            feed.status.errors.add(1, ordering: .relaxed)
            logger.error(
                "cannot restore from Redis; starting from the local snapshot alone, keys only Redis held start with full quota until it is back",
                metadata: ["redis": "\(settings.endpoint)", "error": "\(error)"])
        }
    }

    private func restore(snapshotSavedAt: Int64?) throws(RedisError) {
        guard let connection else { return }
        let started = feed.clock.nanosecondsNow()
        let outcome = try RedisRestore.restore(
            from: connection, keyPrefix: settings.keyPrefix, into: feed, snapshotSavedAt: snapshotSavedAt,
            logger: logger)
        logger.info(
            "restored from Redis",
            metadata: [
                "redis": "\(settings.endpoint)", "keys": "\(outcome.restored)",
                "older_than_snapshot": "\(outcome.olderThanSnapshot)", "newer_here": "\(outcome.newerHere)",
                "invalid": "\(outcome.invalid)", "expired": "\(outcome.vanished)",
                "ms": "\((feed.clock.nanosecondsNow() - started) / 1_000_000)",
            ])
    }

    /// Writes what the shards have logged, up to `pipelinesPerFlush` pipelines or until `deadline`; returns
    /// whether Redis has caught up. With `retryNow`, a connection is attempted even inside the back-off
    /// (the final flush).
    @discardableResult
    public func flush(retryNow: Bool = false, deadline: Int64 = .max) -> Bool {
        // Kept bounded while Redis is away too, and never while a batch is out (this thread takes them).
        feed.compact()
        guard connect(retryNow: retryNow, deadline: deadline) else { return false }
        for _ in 0..<settings.pipelinesPerFlush {
            guard feed.clock.nanosecondsNow() < deadline else { break }
            connection?.setTimeout(millis: timeoutMillis(until: deadline))
            batch.removeAll()
            let remaining = feed.take(budget: settings.pipelineSize, into: &batch)
            if batch.isEmpty { break }
            feed.status.inFlightSince.store(batch.oldestChangeAt == .max ? 0 : batch.oldestChangeAt, ordering: .relaxed)
            feed.status.inFlight.store(batch.count, ordering: .relaxed)
            let error = write(batch)
            if error != nil { feed.requeue(batch) }
            feed.status.inFlight.store(0, ordering: .relaxed)
            if let error {
                failed(error)
                return false
            }
            if remaining == 0 { break }
        }
        succeeded()
        return feed.pending().count == 0
    }

    /// Makes sure there is a connection, that Redis has restored into the shards if the start-up restore
    /// could not, and that Redis still holds what was written to it; returns false when Redis is not there.
    private func connect(retryNow: Bool, deadline: Int64) -> Bool {
        do {
            if connection == nil {
                guard retryNow || retry.mayAttempt(at: feed.clock.nanosecondsNow()) else { return false }
                try open(deadline: deadline)
            }
            connection?.setTimeout(millis: timeoutMillis(until: deadline))
            if let snapshotSavedAt = restoreOnConnect {
                try restore(snapshotSavedAt: snapshotSavedAt)
                restoreOnConnect = nil
                feed.rememberResets(false)
            }
            try checkMarker()
            return true
        } catch {
            failed(error.description)
            return false
        }
    }

    /// Connects, and makes sure a pipeline the last connection left behind in a stalled Redis cannot land
    /// after what this one writes: Redis runs a closed client's buffered commands when it wakes, and an
    /// older state must not overwrite a newer one.
    private func open(deadline: Int64) throws(RedisError) {
        let opened = try RedisConnection.connect(to: settings.endpoint, timeoutMillis: timeoutMillis(until: deadline))
        // A cluster node would refuse most keys (MOVED) and hold only its slots' share of a restore.
        if case .array = try opened.command(["CLUSTER", "SLOTS"]) {
            throw RedisError("replicate mode needs a single Redis server and this is a Redis Cluster node: use mode = \"shared\" with a cluster")
        }
        connection = opened
        if let stale = abandonedClientID {
            // An error (no such client any more, or no permission to kill) leaves nothing to do.
            _ = try opened.command(["CLIENT", "KILL", "ID", "\(stale)"])
            abandonedClientID = nil
        }
        if case .integer(let id) = try opened.command(["CLIENT", "ID"]) { clientID = id }
    }

    /// The I/O timeout, shortened to what is left before `deadline`.
    private func timeoutMillis(until deadline: Int64) -> Int {
        guard deadline != .max else { return settings.timeoutMillis }
        let left = (deadline - feed.clock.nanosecondsNow()) / 1_000_000
        return Int(max(1, min(Int64(settings.timeoutMillis), left)))
    }

    /// The marker is a key named exactly the prefix (no ratelimitd key is empty, so none collides). Its
    /// absence means Redis lost what it had (restarted without persistence, flushed, or failed over to a
    /// replica that lacked it): every key held here is written again, not only those changed since.
    private func checkMarker() throws(RedisError) {
        guard let connection else { return }
        let marker = Array(settings.keyPrefix.utf8)
        switch try connection.command([Array("EXISTS".utf8), marker]) {
        case .integer(0): break
        case .integer: return
        case let other: throw RedisError("unexpected reply to EXISTS: \(other)")
        }
        let keys = feed.resyncAll()
        let reply = try connection.command([Array("SET".utf8), marker, Array("ratelimitd replication marker".utf8)])
        if case .error(let message) = reply { throw RedisError("Redis refused a write: \(message)") }
        if everConnected || keys > 0 {
            logger.notice(
                "Redis holds none of this daemon's keys (new, restarted without persistence, or flushed); writing every key again",
                metadata: ["redis": "\(settings.endpoint)", "keys": "\(keys)"])
        }
    }

    /// Flushes until Redis has everything, a write fails, or `deadline` (decision-clock nanoseconds) passes,
    /// trying to connect at once even inside the back-off; for shutdown, when nothing changes any more.
    /// Reads and writes are cut short at the deadline too. Returns the changes still not written.
    public func finalFlush(deadline: Int64) -> Int {
        guard restoreOnConnect == nil else {
            // Redis's copy never came in, so writing could overwrite states newer than this daemon's.
            logger.warning("final replication flush skipped: the restore from Redis never ran")
            return feed.pending().count
        }
        var first = true
        while true {
            guard feed.clock.nanosecondsNow() < deadline else { return feed.pending().count }
            let before = feed.pending().count
            if flush(retryNow: first, deadline: deadline) { return 0 }
            first = false
            let after = feed.pending().count
            // A failed write, or one that made no progress, ends it: the shutdown must not hang on Redis.
            if connection == nil || after >= before { return after }
        }
    }

    /// Sends `batch` as one pipeline and reads every reply; returns what went wrong, or nil. A held key is
    /// `SET <prefix><key> <ReplicaRecord> PX <ms until fresh>`, a removed one `DEL <prefix><key>`.
    private func write(_ batch: ChangeBatch) -> String? {
        guard let connection else { return "not connected" }
        pipeline.removeAll()
        let now = batch.takenAt
        for item in batch.items {
            batch.withKey(of: item) { key in
                switch item.change {
                case .held(let state, let windowNanos, let freshAt):
                    value.removeAll(keepingCapacity: true)
                    ReplicaRecord.encode(.init(updatedAt: now, state: state, windowNanos: windowNanos), into: &value)
                    // Rounded up to whole milliseconds: the copy may outlive the state by under 1 ms, never die first.
                    let ttl = (freshAt - now + 999_999) / 1_000_000
                    value.withUnsafeBytes { pipeline.set(prefix: keyPrefix, key: key, value: $0, ttlMillis: ttl) }
                case .removed:
                    pipeline.delete(prefix: keyPrefix, key: key)
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

    private func failed(_ error: String) {
        connection = nil
        if let clientID {
            abandonedClientID = clientID
            self.clientID = nil
        }
        feed.status.errors.add(1, ordering: .relaxed)
        guard retry.failed(at: feed.clock.nanosecondsNow()) else {
            logger.debug("Redis still unavailable", metadata: ["error": "\(error)", "retry_ms": "\(retry.delayNanos / 1_000_000)"])
            return
        }
        logger.warning(
            "Redis replication failing; decisions go on from local state and changes wait for Redis",
            metadata: ["redis": "\(settings.endpoint)", "error": "\(error)", "pending": "\(feed.pending().count)"])
    }

    private func succeeded() {
        if let outage = retry.succeeded(at: feed.clock.nanosecondsNow()) {
            logger.notice(
                "Redis replication recovered",
                metadata: ["redis": "\(settings.endpoint)",
                           "outage_ms": "\(outage / 1_000_000)",
                           "pending": "\(feed.pending().count)"])
        } else if !everConnected {
            logger.info("replicating to Redis", metadata: ["redis": "\(settings.endpoint)", "key_prefix": "\(settings.keyPrefix)"])
        }
        everConnected = true
    }
}
