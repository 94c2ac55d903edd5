/// State of `sliding_window_counter`: the counts of the current epoch-aligned window and the one before it.
public struct SlidingCounterState: Sendable, Hashable {
    public var windowStart: Int64
    public var previous: Int64
    public var current: Int64

    public init(windowStart: Int64, previous: Int64, current: Int64) {
        self.windowStart = windowStart
        self.previous = previous
        self.current = current
    }

    /// The counts as seen from the window starting at `start`: one window on, the current count becomes the
    /// previous one; two or more on, both are gone.
    func rolled(to start: Int64, windowNanos: Int64) -> SlidingCounterState {
        if start == windowStart { return self }
        if start == windowStart + windowNanos {
            return SlidingCounterState(windowStart: start, previous: current, current: 0)
        }
        return SlidingCounterState(windowStart: start, previous: 0, current: 0)
    }

    /// Whether the estimate is 0 from `now` on: the previous count fades out by the end of this state's
    /// window, the current one by the end of the next. Needs no window alignment, so a window known only
    /// approximately (rounded up, as the sweeper keeps it) errs towards keeping the state.
    public func isFresh(now: Int64, windowNanos: Int64) -> Bool {
        if previous == 0 && current == 0 { return true }
        return now >= windowStart + (current > 0 ? 2 * windowNanos : windowNanos)
    }
}

/// Approximates the sliding log in O(1) memory, as Cloudflare and Redis users commonly do: the estimate of
/// units in the last `window` is `previous * (window - elapsed) / window + current`, where `elapsed` is the
/// time since the current window began. Arithmetic is exact (scaled by `window` in `Int128`), so the only
/// approximation is the assumption that the previous window's units were spread evenly.
enum SlidingWindowCounter {
    static func check(_ state: inout SlidingCounterState?, cost: Int64, limit: Limit, now: Int64) -> Decision {
        let window = limit.windowNanos
        // A stored window ahead of the clock stays the current one (see FixedWindow).
        let start = max(TimeMath.windowStart(now, window: window), state?.windowStart ?? .min)
        var counts = state?.rolled(to: start, windowNanos: window)
            ?? SlidingCounterState(windowStart: start, previous: 0, current: 0)
        // Counts left by a larger limit (a per-request limit, an edited rule) are at most a full window here,
        // so they fade within this limit's own windows.
        counts.previous = min(counts.previous, limit.limit)
        counts.current = min(counts.current, limit.limit)
        let elapsed = min(max(now - start, 0), window - 1)
        let w = Int128(window)
        let capacity = Int128(limit.limit) * w
        // The estimate, scaled by the window length.
        func scaledEstimate(_ c: SlidingCounterState) -> Int128 {
            Int128(c.previous) * (w - Int128(elapsed)) + Int128(c.current) * w
        }
        func remaining(_ c: SlidingCounterState) -> Int64 {
            TimeMath.clamp((capacity - scaledEstimate(c)) / w)
        }

        if cost == 0 {
            return .allow(remaining: remaining(counts), resetNanos: fullIn(counts, window: window, elapsed: elapsed))
        }
        guard cost <= limit.limit else {
            return .denyForever(remaining: remaining(counts))
        }
        guard scaledEstimate(counts) + Int128(cost) * w <= capacity else {
            return .deny(remaining: remaining(counts), retryNanos: retryNanos(counts, cost: cost, limit: limit, elapsed: elapsed))
        }
        counts.current += cost
        state = counts
        return .allow(remaining: remaining(counts), resetNanos: fullIn(counts, window: window, elapsed: elapsed))
    }

    /// Time until the estimate is 0: the end of the next window while the current one has counts, else the
    /// end of the current one while the previous has.
    private static func fullIn(_ counts: SlidingCounterState, window: Int64, elapsed: Int64) -> Int64 {
        if counts.current > 0 { return 2 * window - elapsed }
        if counts.previous > 0 { return window - elapsed }
        return 0
    }

    /// How long until `cost` fits: the previous window's weight falls linearly through the current window;
    /// if the current count alone leaves no room, the wait runs into the next window, where the current
    /// count becomes the one that fades.
    private static func retryNanos(_ c: SlidingCounterState, cost: Int64, limit: Limit, elapsed: Int64) -> Int64 {
        let window = limit.windowNanos
        if c.current + cost <= limit.limit, c.previous > 0 {
            // previous * (window - e) <= (limit - current - cost) * window
            let fitsAt = window - TimeMath.mulDiv(limit.limit - c.current - cost, window, c.previous)
            return max(fitsAt - elapsed, 1)
        }
        // In the next window: current * (window - e) <= (limit - cost) * window.
        let fitsAt = c.current > 0 ? window - TimeMath.mulDiv(limit.limit - cost, window, c.current) : 0
        return window - elapsed + max(fitsAt, 0)
    }
}
