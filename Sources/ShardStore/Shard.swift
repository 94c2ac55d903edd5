import RateLimiting

/// One shard's keys and their state. Not thread-safe by design: a shard has exactly one owner (its
/// `ShardWorker`'s event loop), which is what makes each decision atomic without a lock.
public final class Shard {
    private var states: [String: KeyState] = [:]

    public init() {}

    /// Decides `cost` for `key` under `limit` at `now`, recording what it consumes.
    public func check(key: String, cost: Int64, limit: Limit, now: Int64) -> Decision {
        KeyState.check(&states[key], cost: cost, limit: limit, now: now)
    }

    /// Forgets `key`, so its next request starts from a full quota.
    public func reset(key: String) {
        states[key] = nil
    }

    public var keyCount: Int { states.count }

    public func state(for key: String) -> KeyState? { states[key] }
}

@available(*, unavailable)
extension Shard: Sendable {}
