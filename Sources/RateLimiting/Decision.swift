/// The answer to one `CHECK`: allowed or denied, what is left, and when to come back.
public struct Decision: Sendable, Hashable {
    /// Whether the cost was admitted (and consumed).
    public var allowed: Bool
    /// Whole units still available after this decision; on a denial, unchanged by it.
    public var remaining: Int64
    /// On ALLOW: milliseconds until the key is back at its full quota. On DENY: milliseconds until the same
    /// request would be allowed, or `-1` when it never can be (the cost exceeds the limit's capacity).
    public var resetMillis: Int64

    public init(allowed: Bool, remaining: Int64, resetMillis: Int64) {
        self.allowed = allowed
        self.remaining = remaining
        self.resetMillis = resetMillis
    }

    /// The reset value of a denial that no amount of waiting fixes.
    public static let never: Int64 = -1

    static func allow(remaining: Int64, resetNanos: Int64) -> Decision {
        Decision(allowed: true, remaining: max(0, remaining), resetMillis: TimeMath.millisRoundingUp(resetNanos))
    }

    public static func deny(remaining: Int64, retryNanos: Int64) -> Decision {
        Decision(allowed: false, remaining: max(0, remaining), resetMillis: TimeMath.millisRoundingUp(retryNanos))
    }

    static func denyForever(remaining: Int64) -> Decision {
        Decision(allowed: false, remaining: max(0, remaining), resetMillis: never)
    }
}
