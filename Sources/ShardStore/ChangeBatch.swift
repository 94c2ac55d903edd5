import RateLimiting

/// Changed keys taken from the shards for one write to wherever a copy is kept: each key and what it now
/// holds (its state until that state is fresh again), or that it is gone. Nothing here knows how or where
/// the copy is stored; the key bytes live in one array that is reused from batch to batch.
public struct ChangeBatch: Sendable {
    public enum Change: Sendable, Hashable {
        /// The key's state, the window it was last decided under (0 if unknown), and when the state will be
        /// fresh (from then, forgetting it changes no decision: a copy may expire then).
        case held(KeyState, windowNanos: Int64, freshAt: Int64)
        /// The key is gone (reset, swept or evicted) or its state is already fresh: the copy can go too.
        case removed
    }

    public struct Item: Sendable {
        /// The shard the key belongs to, its hash, and when it changed, so a failed write can be handed back.
        public var shard: Int
        public var hash: UInt64
        public var changedAt: Int64
        /// The key, in `keyBytes`.
        public var key: Range<Int>
        public var change: Change
    }

    public private(set) var keyBytes: [UInt8] = []
    public private(set) var items: [Item] = []
    /// When the oldest change in the batch happened (decision-clock nanoseconds); `.max` when none is known.
    public private(set) var oldestChangeAt: Int64 = .max
    /// When the changes were taken: the time their states are as of.
    public private(set) var takenAt: Int64 = 0

    public init() {}

    public var isEmpty: Bool { items.isEmpty }
    public var count: Int { items.count }

    public mutating func removeAll() {
        keyBytes.removeAll(keepingCapacity: true)
        items.removeAll(keepingCapacity: true)
        oldestChangeAt = .max
    }

    /// Calls `body` with the key of `item`.
    public func withKey<T>(of item: Item, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try keyBytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[item.key])) }
    }

    /// Adds what a copy should hold for `key` at `now`: its state until fresh, or nothing.
    mutating func append(
        shard: Int, key: UnsafeRawBufferPointer, hash: UInt64, changedAt: Int64, change: KeyTable.PendingChange,
        now: Int64
    ) {
        takenAt = max(takenAt, now)
        let recorded: Change
        switch change {
        case .unchanged:
            return
        case .absent:
            recorded = .removed
        case .changed(let state, let known):
            // A state restored without its window (older snapshots) is kept as long as any window could need.
            let freshAt = state.freshAt(windowNanos: known != 0 ? known : Limit.maxWindowNanos)
            recorded = freshAt > now ? .held(state, windowNanos: known, freshAt: freshAt) : .removed
        }
        if changedAt != 0 { oldestChangeAt = min(oldestChangeAt, changedAt) }
        let start = keyBytes.count
        keyBytes.append(contentsOf: key)
        items.append(Item(shard: shard, hash: hash, changedAt: changedAt, key: start..<keyBytes.count, change: recorded))
    }
}
