import DaemonConfig
import Logging
import RateLimiting
import ShardStore
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
        health = SharedHealth(tally: tally, logger: logger, endpoint: settings.endpoint, onError: settings.onError)
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

/// Whether Redis answers, for every loop at once: one back-off (so a Redis that is down is tried again
/// with capped delays, not by every request), and one outage, logged when it starts and when it ends.
final class SharedHealth: Sendable {
    private let retry = Mutex(RedisRetry())
    /// Set while the back-off is in force or an outage under way, so that a success costs one relaxed load
    /// when all is well.
    private let troubled = Atomic<Bool>(false)
    private let tally: SharedDecisionCounters
    private let logger: Logger
    private let endpoint: RedisEndpoint
    private let onError: SharedDecider.OnError

    init(tally: SharedDecisionCounters, logger: Logger, endpoint: RedisEndpoint, onError: SharedDecider.OnError) {
        self.tally = tally
        self.logger = logger
        self.endpoint = endpoint
        self.onError = onError
    }

    func mayAttempt(at now: Int64) -> Bool {
        guard troubled.load(ordering: .relaxed) else { return true }
        return retry.withLock { $0.mayAttempt(at: now) }
    }

    func failed(_ error: RedisError, at now: Int64) {
        tally.errors.add(1, ordering: .relaxed)
        troubled.store(true, ordering: .relaxed)
        guard retry.withLock({ $0.failed(at: now) }) else { return }
        tally.outage.store(true, ordering: .relaxed)
        logger.warning(
            "Redis unavailable for shared decisions; deciding by on_error until it answers",
            metadata: ["redis": "\(endpoint)", "error": "\(error)", "on_error": "\(onError.rawValue)"])
    }

    /// Redis decided something: an outage, if one was under way, is over.
    func succeeded(at now: Int64) {
        guard troubled.load(ordering: .relaxed) else { return }
        let ended = retry.withLock { retry -> Int64? in
            let ended = retry.succeeded(at: now)
            troubled.store(false, ordering: .relaxed)
            return ended
        }
        guard let outage = ended else { return }
        tally.outage.store(false, ordering: .relaxed)
        logger.notice(
            "Redis answers shared decisions again", metadata: ["redis": "\(endpoint)", "outage_ms": "\(outage / 1_000_000)"])
    }
}
