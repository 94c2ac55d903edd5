/// State of `fixed_window`: which window the count belongs to, and the units admitted in it.
public struct FixedWindowState: Sendable, Hashable {
    /// Start of the counted window, in decision-clock nanoseconds (aligned to the Unix epoch).
    public var windowStart: Int64
    public var used: Int64

    public init(windowStart: Int64, used: Int64) {
        self.windowStart = windowStart
        self.used = used
    }

    public func isFresh(now: Int64, windowNanos: Int64) -> Bool {
        used == 0 || now >= windowStart + windowNanos
    }
}

/// At most `limit` units per window; windows are aligned to the Unix epoch so every daemon (and anything else
/// that counts the same way) agrees on where they start and end.
enum FixedWindow {
    static func check(_ state: inout FixedWindowState?, cost: Int64, limit: Limit, now: Int64) -> Decision {
        // A stored window ahead of the clock (restored after the wall clock stepped back) stays the current
        // one: a count must never be forgotten because time appeared to go backwards.
        let start = max(TimeMath.windowStart(now, window: limit.windowNanos), state?.windowStart ?? .min)
        let untilEnd = start + limit.windowNanos - now
        // A count left by a larger limit (a per-request limit, an edited rule) is at most a full window here.
        let used = min(state.map { $0.windowStart == start ? $0.used : 0 } ?? 0, limit.limit)
        if cost == 0 {
            return .allow(remaining: limit.limit - used, resetNanos: used > 0 ? untilEnd : 0)
        }
        guard cost <= limit.limit else {
            return .denyForever(remaining: limit.limit - used)
        }
        guard used + cost <= limit.limit else {
            return .deny(remaining: limit.limit - used, retryNanos: untilEnd)
        }
        state = FixedWindowState(windowStart: start, used: used + cost)
        return .allow(remaining: limit.limit - used - cost, resetNanos: untilEnd)
    }
}
