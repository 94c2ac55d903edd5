import RateLimiting
import ShardStore
import Synchronization
import WireProtocol

/// What every connection shares: the rules, the shards and the limits that protect the server. Immutable
/// (but for the ID counter, an atomic, and the shards, each behind its own lock).
struct ConnectionServices: Sendable {
    let ruleBook: RuleBook
    /// Where CHECK and RESET are decided.
    let decider: any Decider
    /// For STATS: the shards' counters.
    let shards: [LockedShard]
    let clock: any DecisionClock
    let framer: LineFramer
    let respLimits: RESPDecoder
    let statistics: ServerStatistics
    /// nil: no token is configured, and every connection may do everything.
    var auth: AuthToken? = nil

    /// What `STATS` reports.
    func collectStatistics() -> [Statistic] {
        var keys = 0
        var allowed: Int64 = 0
        var denied: Int64 = 0
        var evictions = 0
        var refusals = 0
        var memory = 0
        for shard in shards {
            let counters = shard.counters()
            keys += counters.keys
            allowed += counters.allowed
            denied += counters.denied
            evictions += counters.evictions
            refusals += counters.refusals
            memory += counters.memory
        }
        let now = clock.nanosecondsNow()
        let snapshotAt = statistics.snapshot.savedAt.load(ordering: .relaxed)
        return [
            Statistic("uptime_ms", (now - statistics.startedAt) / 1_000_000),
            Statistic("connections", Int64(statistics.openConnections.load(ordering: .relaxed))),
            Statistic("total_connections", Int64(statistics.lastConnectionID.load(ordering: .relaxed))),
            Statistic("connection_setup_failures", Int64(statistics.connectionSetup.totalFailures)),
            Statistic("rejected_connections", Int64(statistics.connectionSetup.totalRefusals)),
            Statistic("accept_pauses", Int64(statistics.connectionSetup.acceptPauses)),
            Statistic("input_buffer_bytes", Int64(statistics.connectionSetup.inputBudget.total)),
            Statistic("input_closed", Int64(statistics.connectionSetup.inputBudget.closed)),
            Statistic("idle_closed", Int64(statistics.connectionSetup.timeoutCounts.idleCloses)),
            Statistic("tls_failures", Int64(statistics.connectionSetup.tlsFailures)),
            Statistic("auth_failures", Int64(auth?.totalFailures ?? 0)),
            Statistic("request_timeouts", Int64(statistics.connectionSetup.timeoutCounts.requestTimeouts)),
            Statistic("reply_timeouts", Int64(statistics.connectionSetup.timeoutCounts.replyTimeouts)),
            Statistic("keys", Int64(keys)),
            Statistic("allowed", allowed),
            Statistic("denied", denied),
            Statistic("key_memory_bytes", Int64(memory)),
            Statistic("evictions", Int64(evictions)),
            Statistic("store_full", Int64(refusals)),
            Statistic("shards", Int64(shards.count)),
            Statistic("snapshot_age_ms", snapshotAt == 0 ? -1 : max(0, now - snapshotAt) / 1_000_000),
            Statistic("snapshot_keys", Int64(statistics.snapshot.keys.load(ordering: .relaxed))),
            Statistic("envoy_requests", statistics.envoyDecisions.totals.requests),
            Statistic("envoy_over_limit", statistics.envoyDecisions.totals.overLimit),
        ] + replicationStatistics(now: now) + decider.counters.map { Statistic($0.name, $0.value) }
    }

    /// How far the Redis copy is behind: -1 for the lag when there is no replication.
    private func replicationStatistics(now: Int64) -> [Statistic] {
        let replication = statistics.replication
        guard replication.isEnabled else {
            return [Statistic("replication_lag_ms", -1), Statistic("replication_pending", 0),
                    Statistic("replication_errors", 0)]
        }
        let lag = replication.lag(in: shards, now: now)
        return [
            Statistic("replication_lag_ms", lag.nanos / 1_000_000),
            Statistic("replication_pending", Int64(lag.pending)),
            Statistic("replication_errors", Int64(replication.errors.load(ordering: .relaxed))),
        ]
    }
}

/// Server-wide counters that are not a shard's: connections, start time, the last snapshot.
final class ServerStatistics: Sendable {
    let startedAt: Int64
    /// Also the ID `HELLO` reports, as Redis's `CLIENT ID` does.
    let lastConnectionID = Atomic<Int>(0)
    let openConnections = Atomic<Int>(0)
    /// When graceful shutdown began (decision-clock nanoseconds); 0 until then.
    let shutdownStartedAt = Atomic<Int64>(0)
    let snapshot: SnapshotStatus
    let replication = ReplicationStatus()
    /// Connections accepted but never served, per listener.
    let connectionSetup: ConnectionSetup
    /// Decisions of Envoy's gRPC rate limit service.
    let envoyDecisions = EnvoyDecisionCounts()

    init(startedAt: Int64, snapshot: SnapshotStatus, connectionSetup: ConnectionSetup) {
        self.startedAt = startedAt
        self.snapshot = snapshot
        self.connectionSetup = connectionSetup
    }

    func connectionOpened() -> Int {
        openConnections.add(1, ordering: .relaxed)
        return lastConnectionID.add(1, ordering: .relaxed).newValue
    }

    func connectionClosed() {
        openConnections.subtract(1, ordering: .relaxed)
    }
}

/// When the last snapshot was saved or restored (decision-clock nanoseconds; 0 for never) and how many
/// keys it held.
public final class SnapshotStatus: Sendable {
    let savedAt = Atomic<Int64>(0)
    let keys = Atomic<Int>(0)
    /// How long the last save took (0 for none, or for a restore).
    let durationNanos = Atomic<Int64>(0)

    public init() {}

    func record(savedAt: Int64, keys: Int, durationNanos: Int64 = 0) {
        self.keys.store(keys, ordering: .relaxed)
        self.durationNanos.store(durationNanos, ordering: .relaxed)
        self.savedAt.store(savedAt, ordering: .relaxed)
    }
}
