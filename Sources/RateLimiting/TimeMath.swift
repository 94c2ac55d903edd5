/// Integer time arithmetic shared by the algorithms. All times are nanoseconds on the decision clock
/// (a monotonic clock anchored to the Unix epoch); products go through `Int128` so that no limit, window
/// or cost in the accepted ranges can overflow.
enum TimeMath {
    static let nanosPerMilli: Int64 = 1_000_000

    /// Rounds up, so that a client that waits the reported time is never refused for being a moment early.
    static func millisRoundingUp(_ nanos: Int64) -> Int64 {
        guard nanos > 0 else { return 0 }
        return (nanos - 1) / nanosPerMilli + 1
    }

    /// `a * b / c`, rounded down, for non-negative operands and a positive divisor.
    static func mulDiv(_ a: Int64, _ b: Int64, _ c: Int64) -> Int64 {
        clamp(Int128(a) * Int128(b) / Int128(c))
    }

    static func clamp(_ value: Int128) -> Int64 {
        if value > Int128(Int64.max) { return .max }
        if value < Int128(Int64.min) { return .min }
        return Int64(value)
    }

    /// The start of the window that contains `now`, for windows aligned to the Unix epoch.
    static func windowStart(_ now: Int64, window: Int64) -> Int64 {
        let offset = now % window
        return now - (offset < 0 ? offset + window : offset)
    }
}
