/// Decisions per counter slot, allowed and denied; a slot stands for a rule (see `RuleBook`), slot 0 for
/// limits given in requests.
public struct DecisionCounts: Sendable, Hashable {
    /// `counts[2 * slot]` allowed, `counts[2 * slot + 1]` denied.
    public private(set) var counts: [Int64] = []
    /// The sums over every slot, kept as decisions are counted, so reading them (each STATS) costs the same
    /// however many rules there are.
    public private(set) var allowed: Int64 = 0
    public private(set) var denied: Int64 = 0

    public init() {}

    @inline(__always)
    mutating func count(slot: Int, allowed: Bool) {
        let index = 2 &* slot &+ (allowed ? 0 : 1)
        if index >= counts.count { counts += repeatElement(0, count: index + 1 - counts.count) }
        counts[index] &+= 1
        if allowed { self.allowed &+= 1 } else { denied &+= 1 }
    }

    public var slots: Int { counts.count / 2 + counts.count % 2 }

    public func allowed(slot: Int) -> Int64 { 2 * slot < counts.count ? counts[2 * slot] : 0 }
    public func denied(slot: Int) -> Int64 { 2 * slot + 1 < counts.count ? counts[2 * slot + 1] : 0 }
}
