import ShardStore
import WireProtocol

/// Everything the metrics endpoint publishes, read at once: cumulative counters and current values. Taking
/// it locks each shard briefly, two or three times; nothing here is counted on the request path beyond what the shards
/// and the per-loop counters already keep.
public struct MetricsReading: Sendable {
    public struct RuleDecisions: Sendable, Hashable {
        /// The rule's name; "(request)" for limits given in requests.
        public var rule: String
        public var allowed: Int64
        public var denied: Int64
    }

    public var decisions: [RuleDecisions] = []
    public var keys = 0
    public var evictions = 0
    /// New keys refused because their shard was full of limited keys.
    public var storeFull = 0
    /// What `max_memory` counts of the key tables.
    public var keyMemoryBytes = 0
    public var connections = 0
    public var totalConnections = 0
    /// Envoy rate limit decisions by domain, rule and result.
    public var envoyDecisions: [(labels: EnvoyDecisionCounts.Labels, count: Int64)] = []
    /// Connections accepted but never served, by listener.
    public var connectionSetupFailures: [(listener: String, count: Int)] = []
    /// Connections refused for `max_connections`, by listener.
    public var rejectedConnections: [(listener: String, count: Int)] = []
    /// Failed authentications by listener; empty when no token is configured.
    public var authFailures: [(listener: String, count: Int)] = []
    /// Client connections that never completed a TLS handshake.
    public var tlsFailures = 0
    /// Times accepting paused for want of descriptors.
    public var acceptPauses = 0
    /// Unparsed input held by client connections, and connections closed to bound it.
    public var inputBufferBytes = 0
    public var inputClosed = 0
    /// Connections closed for being idle.
    public var idleClosed = 0
    /// Connections closed for a request still incomplete `request_timeout` after its first byte.
    public var requestTimeouts = 0
    /// Connections closed for leaving replies unread for `request_timeout`.
    public var replyTimeouts = 0
    /// Error replies by code word.
    public var errors: [(code: String, count: Int64)] = []
    /// The decision latency histogram: cumulative counts per upper bound in seconds (the last is +Inf).
    public var latencyBuckets: [(upperBound: Double, count: Int64)] = []
    public var latencySumSeconds = 0.0
    public var uptimeSeconds = 0.0
    /// nil before the first snapshot save or restore.
    public var snapshotAgeSeconds: Double?
    public var snapshotDurationSeconds: Double?
    public var snapshotKeys = 0
    /// nil without replication.
    public var replication: (lagSeconds: Double, pending: Int, errors: Int)?
    /// The decider's own counters (shared mode's), as STATS has them.
    public var deciderCounters: [DeciderCounter] = []
}

extension RateLimitServer {
    /// The name of requests' own limits in `decisions`.
    public static let requestLimitRuleName = "(request)"

    public func readMetrics() -> MetricsReading {
        var reading = MetricsReading()
        let now = configuration.clock.nanosecondsNow()
        var perSlot: [(allowed: Int64, denied: Int64)] = []
        for shard in shards {
            let counters = shard.counters()
            reading.keys += counters.keys
            reading.evictions += counters.evictions
            reading.storeFull += counters.refusals
            reading.keyMemoryBytes += counters.memory
            shard.addDecisionCounts(into: &perSlot)
        }
        let names = [Self.requestLimitRuleName] + ruleBook.slotNames
        for (slot, counts) in perSlot.enumerated() where slot < names.count && counts.allowed + counts.denied > 0 {
            reading.decisions.append(.init(rule: names[slot], allowed: counts.allowed, denied: counts.denied))
        }
        reading.connections = statistics.openConnections.load(ordering: .relaxed)
        reading.totalConnections = statistics.lastConnectionID.load(ordering: .relaxed)
        reading.envoyDecisions = envoyDecisions.all()
        reading.connectionSetupFailures = Listener.allCases.map { ($0.rawValue, connectionSetup.failures(on: $0)) }
        reading.rejectedConnections = Listener.allCases.map { ($0.rawValue, connectionSetup.refusals(on: $0)) }
        if let auth {
            reading.authFailures = [Listener.client, .envoy, .http].map { ($0.rawValue, auth.failures(on: $0)) }
        }
        reading.acceptPauses = connectionSetup.acceptPauses
        reading.tlsFailures = connectionSetup.tlsFailures
        reading.idleClosed = connectionSetup.timeoutCounts.idleCloses
        reading.inputBufferBytes = connectionSetup.inputBudget.total
        reading.inputClosed = connectionSetup.inputBudget.closed
        reading.requestTimeouts = connectionSetup.timeoutCounts.requestTimeouts
        reading.replyTimeouts = connectionSetup.timeoutCounts.replyTimeouts
        reading.uptimeSeconds = Double(now - statistics.startedAt) / 1e9

        let loops = loopMetrics.all
        for (index, code) in ErrorCode.allCases.enumerated() {
            let count = loops.reduce(Int64(0)) { $0 &+ $1.errors[index].load(ordering: .relaxed) }
            reading.errors.append((code.rawValue, count))
        }
        var cumulative: Int64 = 0
        for index in 0...LoopMetrics.bucketBounds.count {
            cumulative &+= loops.reduce(Int64(0)) { $0 &+ $1.buckets[index].load(ordering: .relaxed) }
            let bound = index < LoopMetrics.bucketBounds.count ? Double(LoopMetrics.bucketBounds[index]) / 1e9 : .infinity
            reading.latencyBuckets.append((bound, cumulative))
        }
        reading.latencySumSeconds = loops.reduce(0.0) { $0 + Double($1.sumNanos.load(ordering: .relaxed)) } / 1e9

        let savedAt = statistics.snapshot.savedAt.load(ordering: .relaxed)
        if savedAt != 0 {
            reading.snapshotAgeSeconds = Double(max(0, now - savedAt)) / 1e9
            let duration = statistics.snapshot.durationNanos.load(ordering: .relaxed)
            if duration > 0 { reading.snapshotDurationSeconds = Double(duration) / 1e9 }
        }
        reading.snapshotKeys = statistics.snapshot.keys.load(ordering: .relaxed)
        reading.deciderCounters = decider.counters
        let replication = statistics.replication
        if replication.isEnabled {
            let lag = replication.lag(in: shards, now: now)
            reading.replication = (Double(lag.nanos) / 1e9, lag.pending, replication.errors.load(ordering: .relaxed))
        }
        return reading
    }
}
