/// State of `token_bucket` and `leaky_bucket`: the theoretical arrival time (TAT) of GCRA, which is also the
/// moment the bucket is full again. One timestamp says everything a token count plus last-refill time would,
/// exactly: tokens at `now` are `burst - max(0, tat - now) * limit / window`, so refill is continuous and
/// fractions of a token are never rounded away.
public struct BucketState: Sendable, Hashable {
    public var theoreticalArrival: Int64

    public init(theoreticalArrival: Int64) {
        self.theoreticalArrival = theoreticalArrival
    }

    /// A bucket whose TAT has passed is full: forgetting it changes nothing.
    public func isFresh(now: Int64) -> Bool { theoreticalArrival <= now }
}

/// The generic cell rate algorithm, shared by `token_bucket` (burst defaults to the limit) and `leaky_bucket`
/// (burst defaults to 1). The two are the same mathematics: a bucket of `burst` tokens refilled at
/// `limit / window` admits exactly what a GCRA with emission interval `window / limit` and tolerance
/// `burst * window / limit` admits. Comparisons are exact in `Int128`; the stored TAT advances by the cost's
/// emission time rounded down to the nanosecond, so rounding can only ever favour the client, by under 1 ns
/// per admitted request.
enum GCRA {
    static func check(_ state: inout BucketState?, cost: Int64, limit: Limit, now: Int64) -> Decision {
        let rate = Int128(limit.limit)
        let window = Int128(limit.windowNanos)
        let capacity = Int128(limit.burst) * window
        // Queue ahead of this request, in nanoseconds; nothing is queued once the TAT has passed. A state
        // left by another limit (a per-request limit, an edited rule) may owe more than this limit can: it
        // counts as an empty bucket, which refills within this limit's own window.
        var backlog = Int128(max(state?.theoreticalArrival ?? now, now) - now)
        if backlog * rate > capacity {
            backlog = capacity / rate
            // Kept so by a request that spends, or the next one would see the old debt again; a peek
            // changes nothing.
            if cost > 0 { state = BucketState(theoreticalArrival: now + TimeMath.clamp(backlog)) }
        }

        func remaining(backlog: Int128) -> Int64 {
            TimeMath.clamp((capacity - backlog * rate) / window)
        }

        if cost == 0 {
            return .allow(remaining: remaining(backlog: backlog), resetNanos: TimeMath.clamp(backlog))
        }
        guard cost <= limit.burst else {
            return .denyForever(remaining: remaining(backlog: backlog))
        }
        let costTime = Int128(cost) * window
        guard backlog * rate + costTime <= capacity else {
            // Allowed once the backlog has drained to what leaves room for `cost`.
            let allowedBacklog = (capacity - costTime) / rate
            return .deny(remaining: remaining(backlog: backlog), retryNanos: TimeMath.clamp(backlog - allowedBacklog))
        }
        // At least a nanosecond: at rates above one unit per nanosecond the emission time would round to
        // nothing and requests would be free. That is the clock's resolution, not a real limit anyone sets.
        let newBacklog = backlog + max(costTime / rate, 1)
        state = BucketState(theoreticalArrival: now + TimeMath.clamp(newBacklog))
        return .allow(remaining: remaining(backlog: newBacklog), resetNanos: TimeMath.clamp(newBacklog))
    }
}
