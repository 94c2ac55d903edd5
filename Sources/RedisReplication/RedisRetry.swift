/// When to try Redis again after a failure, and whether an outage is under way: capped exponential back-off
/// counted from the failure (a connect that hung for its whole timeout must still wait), and when the outage
/// began, for the log lines at its start and end. The replicator and shared mode's decider each keep one.
struct RedisRetry {
    let firstDelayNanos: Int64
    let maxDelayNanos: Int64
    private(set) var delayNanos: Int64 = 0
    private var nextAttemptAt: Int64 = .min
    private var outageSince: Int64?

    init(firstDelayNanos: Int64 = 100_000_000, maxDelayNanos: Int64 = 5_000_000_000) {
        self.firstDelayNanos = firstDelayNanos
        self.maxDelayNanos = maxDelayNanos
    }

    /// Whether the back-off lets Redis be tried at `now`.
    func mayAttempt(at now: Int64) -> Bool { now >= nextAttemptAt }

    /// Records a failure at `now`; returns whether it starts an outage.
    mutating func failed(at now: Int64) -> Bool {
        delayNanos = delayNanos == 0 ? firstDelayNanos : min(delayNanos * 2, maxDelayNanos)
        nextAttemptAt = now + delayNanos
        guard outageSince == nil else { return false }
        outageSince = now
        return true
    }

    /// Records a success at `now`; returns how long the outage it ends lasted, if one did.
    mutating func succeeded(at now: Int64) -> Int64? {
        delayNanos = 0
        defer { outageSince = nil }
        return outageSince.map { now - $0 }
    }
}
