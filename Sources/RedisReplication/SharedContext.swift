import DaemonConfig
import Logging
import RateLimiting
import ShardStore
import Locking
import Synchronization

/// What every event loop's `SharedLoop` shares: the settings, this daemon's own state (for `on_error =
/// "local"` and the decision counts), the deny cache, the counters and Redis's health.
final class SharedContext: Sendable {
    let seed: RedisEndpoint
    let timeoutMillis: Int
    let timeoutNanos: Int64
    let onError: SharedDecider.OnError
    let keyPrefix: [UInt8]
    let local: LocalDecider
    let denials = DenyCache()
    let tally = SharedDecisionCounters()
    let health: SharedHealth
    let clock: any DecisionClock
    let logger: Logger
    private let clusterLogged = Atomic<Bool>(false)

    init(settings: SharedDecider.Settings, local: LocalDecider, clock: any DecisionClock, logger: Logger) {
        seed = settings.endpoint
        timeoutMillis = settings.timeoutMillis
        timeoutNanos = Int64(settings.timeoutMillis) * 1_000_000
        onError = settings.onError
        keyPrefix = Array(settings.keyPrefix.utf8)
        self.local = local
        self.clock = clock
        self.logger = logger
        health = SharedHealth(tally: tally, logger: logger, onError: settings.onError)
    }

    /// The first loop to find a cluster says so (each loop learns the slot map for itself).
    func clusterFound(primaries: Int) {
        guard !clusterLogged.exchange(true, ordering: .relaxed) else { return }
        logger.notice(
            "Redis Cluster found: deciding on its primaries by slot",
            metadata: ["redis": "\(seed)", "primaries": "\(primaries)"])
    }

    /// Decides `request` as `on_error` says, at once.
    func fallBack(_ request: Request) {
        tally.fellBack.add(1, ordering: .relaxed)
        let now = clock.nanosecondsNow()
        let result: ShardResult
        switch (onError, request.operation) {
        case (.local, _), (_, .reset):
            // A RESET while Redis is away resets this daemon's own state (README: shared mode).
            result = request.key.withUnsafeBytes {
                local.run(request.operation, key: $0, hash: request.hash, now: now, slot: request.ruleSlot,
                          ticket: request.ticket, waiter: request.waiter)!
            }
        case (.allow, .check(_, let limit)):
            let decision = Decision(allowed: true, remaining: limit.capacity, resetMillis: 0)
            local.count(decision, hash: request.hash, slot: request.ruleSlot)
            result = .decision(decision)
        case (.deny, .check):
            let decision = Decision(allowed: false, remaining: 0, resetMillis: Int64(timeoutMillis))
            local.count(decision, hash: request.hash, slot: request.ruleSlot)
            result = .decision(decision)
        }
        request.waiter.resolve(ticket: request.ticket, result: result)
    }

    /// Decides Envoy's request as `on_error` says, at once.
    func fallBack(_ job: BatchJob) {
        tally.fellBack.add(1, ordering: .relaxed)
        let outcome: BatchOutcome
        switch onError {
        case .local:
            outcome = local.decideAll(job.items, alwaysOver: job.alwaysOver, now: clock.nanosecondsNow(), later: job.later)!
        case .allow:
            outcome = BatchOutcome(
                decisions: job.items.map { Decision(allowed: true, remaining: $0.limit.capacity, resetMillis: 0) },
                applied: !job.alwaysOver)
        case .deny:
            let denial = Decision(allowed: false, remaining: 0, resetMillis: Int64(timeoutMillis))
            outcome = BatchOutcome(decisions: job.items.map { _ in denial }, applied: false)
        }
        job.later(outcome)
    }
}

/// Whether Redis answers, for every loop at once, node by node: each node has its own back-off (so a node
/// that is down is tried again with capped delays, not by every request, while the others are used as
/// usual) and its own outage, logged when it starts and when it ends. `shared_redis_down` is 1 while any
/// node is down.
final class SharedHealth: Sendable {
    private struct State {
        var nodes: [RedisEndpoint: RedisRetry] = [:]
        var down: Set<RedisEndpoint> = []
    }

    private let state = Locked(State())
    /// Nodes with a back-off in force or an outage under way, read without the lock: when all is well a
    /// success or a connection costs one relaxed load.
    private let troubled = Atomic<Int>(0)
    private let tally: SharedDecisionCounters
    private let logger: Logger
    private let onError: SharedDecider.OnError

    init(tally: SharedDecisionCounters, logger: Logger, onError: SharedDecider.OnError) {
        self.tally = tally
        self.logger = logger
        self.onError = onError
    }

    func mayAttempt(_ node: RedisEndpoint, at now: Int64) -> Bool {
        guard troubled.load(ordering: .relaxed) > 0 else { return true }
        return state.withLock { $0.nodes[node]?.mayAttempt(at: now) ?? true }
    }

    func failed(_ node: RedisEndpoint, _ error: RedisError, at now: Int64) {
        tally.errors.add(1, ordering: .relaxed)
        let started = state.withLock { state -> Bool in
            let started = state.nodes[node, default: RedisRetry()].failed(at: now)
            if started { state.down.insert(node) }
            troubled.store(state.nodes.count, ordering: .relaxed)
            tally.outage.store(!state.down.isEmpty, ordering: .relaxed)
            return started
        }
        guard started else { return }
        logger.warning(
            "Redis unavailable for shared decisions; deciding by on_error until it answers",
            metadata: ["redis": "\(node)", "error": "\(error)", "on_error": "\(onError.rawValue)"])
    }

    /// `node` decided something: its outage, if one was under way, is over.
    func succeeded(_ node: RedisEndpoint, at now: Int64) {
        guard troubled.load(ordering: .relaxed) > 0 else { return }
        let ended = state.withLock { state -> Int64? in
            guard var retry = state.nodes.removeValue(forKey: node) else { return nil }
            let ended = retry.succeeded(at: now)
            state.down.remove(node)
            troubled.store(state.nodes.count, ordering: .relaxed)
            tally.outage.store(!state.down.isEmpty, ordering: .relaxed)
            return ended
        }
        guard let outage = ended else { return }
        logger.notice(
            "Redis answers shared decisions again", metadata: ["redis": "\(node)", "outage_ms": "\(outage / 1_000_000)"])
    }
}
