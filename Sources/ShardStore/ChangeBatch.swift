import RateLimiting

/// Changed keys taken from the shards for one write to the replica: each key (with the replica's key prefix
/// in front) and either its encoded state with how long it matters, or a removal. The bytes live in one
/// array that is reused from batch to batch.
public struct ChangeBatch: Sendable {
    public enum Action: Sendable, Hashable {
        /// Store `value` (a `ReplicaRecord`) for `ttlMillis`: until the state is fresh again.
        case set(value: Range<Int>, ttlMillis: Int64)
        /// Forget the key: it was reset, swept or evicted, or its state is already fresh.
        case delete
    }

    public struct Item: Sendable {
        /// The shard the key belongs to, its hash, and when it changed, so a failed write can be handed back.
        public var shard: Int
        public var hash: UInt64
        public var changedAt: Int64
        /// The prefixed key, in `bytes`.
        public var key: Range<Int>
        public var action: Action
    }

    public let keyPrefix: [UInt8]
    public private(set) var bytes: [UInt8] = []
    public private(set) var items: [Item] = []
    /// When the oldest change in the batch happened (decision-clock nanoseconds); `.max` when none is known.
    public private(set) var oldestChangeAt: Int64 = .max

    public init(keyPrefix: [UInt8]) {
        self.keyPrefix = keyPrefix
    }

    public var isEmpty: Bool { items.isEmpty }
    public var count: Int { items.count }

    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        items.removeAll(keepingCapacity: true)
        oldestChangeAt = .max
    }

    /// Calls `body` with the key of `item` as the shard knows it (without the prefix).
    public func withShardKey<T>(of item: Item, _ body: (UnsafeRawBufferPointer) -> T) -> T {
        bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[(item.key.lowerBound + keyPrefix.count)..<item.key.upperBound])) }
    }

    /// Adds what the replica should hold for `key` at `now`: its state until fresh, or nothing.
    mutating func append(
        shard: Int, key: UnsafeRawBufferPointer, hash: UInt64, changedAt: Int64, change: KeyTable.PendingChange,
        now: Int64
    ) {
        if case .unchanged = change { return }
        if changedAt != 0 { oldestChangeAt = min(oldestChangeAt, changedAt) }
        let item = Item(shard: shard, hash: hash, changedAt: changedAt, key: appendKey(key), action: .delete)
        switch change {
        case .unchanged:
            return
        case .absent:
            items.append(item)
        case .changed(let state, let known):
            // A state restored without its window (older snapshots) is kept as long as any window could need.
            let window = known != 0 ? known : Limit.maxWindowNanos
            let freshAt = state.freshAt(windowNanos: window)
            guard freshAt > now else {
                items.append(item)
                return
            }
            let valueStart = bytes.count
            ReplicaRecord.encode(.init(updatedAt: now, state: state, windowNanos: known), into: &bytes)
            // Rounded up to whole milliseconds: the copy may outlive the state by under 1 ms, never die first.
            let ttl = (freshAt - now + 999_999) / 1_000_000
            var set = item
            set.action = .set(value: valueStart..<bytes.count, ttlMillis: ttl)
            items.append(set)
        }
    }

    private mutating func appendKey(_ key: UnsafeRawBufferPointer) -> Range<Int> {
        let start = bytes.count
        bytes += keyPrefix
        bytes.append(contentsOf: key)
        return start..<bytes.count
    }
}
