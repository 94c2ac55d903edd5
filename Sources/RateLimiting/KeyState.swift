/// What a shard remembers about one key: the state of whichever algorithm last decided for it.
public enum KeyState: Sendable, Hashable {
    case bucket(BucketState)
    case fixedWindow(FixedWindowState)
    case slidingLog(SlidingLogState)
    case slidingCounter(SlidingCounterState)

    /// Decides whether `cost` may be spent under `limit` at `now`, updating `state` when it is. `nil` is a key
    /// never seen (or forgotten); a denial and a cost of 0 leave it as it was. When the key's state belongs to
    /// another algorithm (its rule changed), it starts afresh under the new one.
    public static func check(_ state: inout KeyState?, cost: Int64, limit: Limit, now: Int64) -> Decision {
        switch limit.algorithm {
        case .tokenBucket, .leakyBucket:
            let stored: BucketState? = if case .bucket(let s) = state { s } else { nil }
            var bucket = stored
            let decision = GCRA.check(&bucket, cost: cost, limit: limit, now: now)
            // An admission, or a debt cut down to what this limit can owe.
            if let bucket, bucket != stored { state = .bucket(bucket) }
            return decision
        case .fixedWindow:
            var window: FixedWindowState? = if case .fixedWindow(let s) = state { s } else { nil }
            let decision = FixedWindow.check(&window, cost: cost, limit: limit, now: now)
            if let window, decision.allowed, cost > 0 { state = .fixedWindow(window) }
            return decision
        case .slidingWindowLog:
            var log = SlidingLogState()
            if case .slidingLog(let stored) = state {
                log = stored
                state = nil  // keep the entries uniquely referenced while they change
            }
            let decision = SlidingWindowLog.check(&log, cost: cost, limit: limit, now: now)
            if !log.isEmpty { state = .slidingLog(log) }
            return decision
        case .slidingWindowCounter:
            var counts: SlidingCounterState? = if case .slidingCounter(let s) = state { s } else { nil }
            let decision = SlidingWindowCounter.check(&counts, cost: cost, limit: limit, now: now)
            if let counts, decision.allowed, cost > 0 { state = .slidingCounter(counts) }
            return decision
        }
    }

    /// When forgetting this state starts to change no decision (bucket full, windows over): `isFresh` from
    /// then on. `windowNanos` is the deciding limit's window, or one longer (never shorter), which only
    /// moves the time later. Used for eviction order and for the time a replicated copy must live.
    public func freshAt(windowNanos: Int64) -> Int64 {
        switch self {
        case .bucket(let s):
            return s.theoreticalArrival
        case .fixedWindow(let s):
            return s.used == 0 ? .min : s.windowStart &+ windowNanos
        case .slidingCounter(let s):
            if s.previous == 0 && s.current == 0 { return .min }
            return s.windowStart &+ (s.current > 0 ? 2 &* windowNanos : windowNanos)
        case .slidingLog(let s):
            return s.newestTime.map { $0 &+ windowNanos } ?? .min
        }
    }

    /// Whether forgetting this state would change no future decision (bucket full, windows over).
    public func isFresh(now: Int64, windowNanos: Int64) -> Bool {
        switch self {
        case .bucket(let s): s.isFresh(now: now)
        case .fixedWindow(let s): s.isFresh(now: now, windowNanos: windowNanos)
        case .slidingLog(let s): s.isFresh(now: now, windowNanos: windowNanos)
        case .slidingCounter(let s): s.isFresh(now: now, windowNanos: windowNanos)
        }
    }
}
