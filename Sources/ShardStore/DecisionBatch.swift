import RateLimiting

/// Several keys decided together, all or nothing: every shard they fall in is locked (in shard order, so
/// two batches never wait on each other in a cycle), every decision is worked out on a copy of the state,
/// and only if the caller accepts the outcome are they all applied, within the same lock hold. Nothing
/// can change a key between its trial and its application, so what is applied is exactly what was tried.
public struct DecisionBatch: Sendable {
    public struct Item: Sendable {
        public var key: [UInt8]
        public var cost: Int64
        public var limit: Limit
        public var role: Role

        public init(key: [UInt8], cost: Int64, limit: Limit, role: Role = .denies) {
            self.key = key
            self.cost = cost
            self.limit = limit
            self.role = role
        }
    }

    /// What an item's denial does to the batch (Envoy's descriptor modes; the numbers are the shared-mode
    /// script's).
    public enum Role: Int, Sendable {
        /// Counted, never denies the batch (shadow mode).
        case shadow = 0
        /// Its denial denies the batch.
        case denies = 1
        /// The batch is denied only when every quota item is (quota mode).
        case quota = 2
    }

    /// Whether decisions of `items` let the batch apply: no denying item denied, and when quota items exist,
    /// not all of them denied. The shared-mode script applies the same rule in Redis.
    public static func accepts(_ items: [Item], _ decisions: [Decision]) -> Bool {
        var quota = (count: 0, denied: 0)
        for (item, decision) in zip(items, decisions) {
            switch item.role {
            case .shadow: continue
            case .denies: if !decision.allowed { return false }
            case .quota:
                quota.count += 1
                if !decision.allowed { quota.denied += 1 }
            }
        }
        return quota.count == 0 || quota.denied < quota.count
    }

    public let shards: [LockedShard]
    public let router: ShardRouter

    public init(shards: [LockedShard], router: ShardRouter) {
        self.shards = shards
        self.router = router
    }

    /// Decides `items` at `now`. `accept` sees the trial decisions (one per item, in order; an item whose
    /// key appeared earlier in the batch is tried after the earlier ones) and says whether to apply them.
    /// If it does, returns the decisions as applied. If not, nothing is consumed, and each item that would
    /// have been allowed is reported as a peek (its remaining quota as it stands); denials stay as tried.
    public func decide(_ items: [Item], now: Int64, accept: ([Decision]) -> Bool) -> (decisions: [Decision], applied: Bool) {
        let hashes = items.map { item in item.key.withUnsafeBytes { KeyHash.hash($0) } }
        let shardIndices = hashes.map { router.shard(forHash: $0) }
        let involved = Array(Set(shardIndices)).sorted()
        // Each item's place among the locked shards, found once, outside the locks.
        let held = shardIndices.map { involved.firstIndex(of: $0)! }
        return LockedShard.withLocks(involved.map { shards[$0] }) { locked in
            let times = locked.map { $0.advance(to: now) }
            // Trial: each item on a copy of its key's state, later items of the same key after earlier ones.
            var storedStates: [KeyState?] = []
            var trialStates: [KeyState?] = []
            var decisions: [Decision] = []
            // Where each key was last tried, so a repeated key continues from there (linear, not quadratic:
            // the locks of every shard involved are held meanwhile).
            var lastTried: [[UInt8]: Int] = [:]
            for (position, item) in items.enumerated() {
                let shard = locked[held[position]]
                var state: KeyState?
                if let earlier = lastTried.updateValue(position, forKey: item.key) {
                    state = trialStates[earlier]
                    storedStates.append(storedStates[earlier])
                } else {
                    state = item.key.withUnsafeBytes { shard.state(key: $0, hash: hashes[position]) }
                    storedStates.append(state)
                }
                decisions.append(KeyState.check(&state, cost: item.cost, limit: item.limit, now: times[held[position]]))
                trialStates.append(state)
            }
            guard accept(decisions) else {
                for (position, item) in items.enumerated() where decisions[position].allowed {
                    var state = storedStates[position]
                    decisions[position] = KeyState.check(&state, cost: 0, limit: item.limit, now: times[held[position]])
                }
                return (decisions, false)
            }
            var applied: [Decision] = []
            for (position, item) in items.enumerated() {
                applied.append(item.key.withUnsafeBytes {
                    locked[held[position]].check(
                        key: $0, hash: hashes[position], cost: item.cost, limit: item.limit, now: times[held[position]])
                })
            }
            return (applied, true)
        }
    }
}
