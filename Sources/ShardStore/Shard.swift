import RateLimiting

/// What a request for a new key gets when its shard holds `max_keys` keys and every one it could evict is
/// limited (evicting it would hand it a fresh quota): `deny` (the default: no quota is given away) or
/// `allow` (decided as a fresh key, and remembered nowhere).
public enum WhenFull: String, Sendable, CaseIterable {
    case deny
    case allow
}

/// One shard's keys and their state. Not thread-safe by itself: `LockedShard` gives it one owner at a time.
public final class Shard {
    var table = KeyTable()
    /// Keys changed since the replicator last took them; empty unless `tracksChanges`.
    var changes = ChangeLog()
    /// The latest decision time seen, which dates the changes logged (0 before any).
    var latest: Int64 = 0
    /// A compaction of `changes` under way (see `compactChanges`).
    var compaction: (markingAgain: Bool, remaining: Int)?
    /// Keys reset while a restore from the replica is still to come (see `rememberResets`).
    var resetsBeforeRestore: ResetsBeforeRestore?

    public init() {}

    /// Decides `cost` for `key` under `limit` at `now`, recording what it consumes. `hash` is the key's
    /// `KeyHash`, which the caller already computed to pick this shard.
    public func check(key: UnsafeRawBufferPointer, hash: UInt64, cost: Int64, limit: Limit, now: Int64) -> Decision {
        var needsListing = false
        var refusedUntil: Int64?
        let decision = table.update(
            key: key, hash: hash, windowNanos: limit.windowNanos, now: now, needsListing: &needsListing,
            refusedUntil: &refusedUntil, isLimited: { !$0.allowed || $0.remaining == 0 }
        ) {
            KeyState.check(&$0, cost: cost, limit: limit, now: now)
        }
        if let refusedUntil {
            // Full of keys without quota: the new key is remembered nowhere, and answered as configured.
            guard whenFull == .deny else { return decision }
            return .deny(remaining: 0, retryNanos: max(refusedUntil - now, 1_000_000))
        }
        if needsListing {
            latest = max(latest, now)
            logChange(key: key, hash: hash)
        }
        return decision
    }

    /// What a new key is answered when the shard is full and every key it could evict is limited.
    public var whenFull = WhenFull.deny

    /// New keys refused because the shard was full of limited keys.
    public var refusals: Int { table.refusals }

    /// Forgets `key`, so its next request starts from a full quota. With replication, the replica is told
    /// to forget it too, also when this shard did not hold it (the replica may, from before a restart).
    public func reset(key: UnsafeRawBufferPointer, hash: UInt64) {
        var needsListing = false
        var refusedUntil: Int64?
        let held = table.update(key: key, hash: hash, needsListing: &needsListing, refusedUntil: &refusedUntil) { state -> Bool in
            defer { state = nil }
            return state != nil
        }
        if needsListing || (!held && table.tracksChanges) { logChange(key: key, hash: hash) }
        if resetsBeforeRestore != nil { rememberReset(key) }
    }

    public var keyCount: Int { table.count }

    /// Keys evicted so far to stay within `maxKeys`.
    public var evictions: Int { table.evictions }

    /// The most keys this shard holds; a new key past it evicts the least recently active of a sample.
    public var maxKeys: Int {
        get { table.maxKeys }
        set { table.maxKeys = max(1, newValue) }
    }

    /// The most memory the shard's table holds (slots, long keys, sliding logs); past it, new keys evict
    /// old ones as past `maxKeys`.
    public var maxMemory: Int {
        get { table.maxMemory }
        set { table.maxMemory = max(1, newValue) }
    }

    /// What `maxMemory` counts, now.
    public var memoryBytes: Int { table.memoryBytes }

    /// Drops keys whose state is fresh at `now`, looking at up to `budget` table slots from where the last
    /// call stopped; returns how many were dropped.
    @discardableResult
    public func sweep(now: Int64, budget: Int) -> Int {
        table.sweep(now: now, budget: budget)
    }

    /// Slots in the shard's table: what one full sweep has to look at.
    public var capacity: Int { table.capacity }

    public func state(key: UnsafeRawBufferPointer, hash: UInt64) -> KeyState? {
        table.state(key: key, hash: hash)
    }

    /// Sets `key`'s state, replacing whatever it had; for restoring a snapshot. `windowNanos` is the window
    /// it was decided under (0 if unknown), which the sweeper needs. With replication on, the key goes to
    /// the replica like any change: the snapshot may be newer than the replica.
    public func restore(key: UnsafeRawBufferPointer, hash: UInt64, state: KeyState, windowNanos: Int64 = 0) {
        var needsListing = false
        var refusedUntil: Int64?
        table.update(
            key: key, hash: hash, windowNanos: windowNanos, origin: .snapshot, needsListing: &needsListing,
            refusedUntil: &refusedUntil
        ) {
            $0 = state
        }
        if needsListing { logChange(key: key, hash: hash) }
    }

    /// A point-in-time copy of every key's state. O(1): the table's arrays are shared copy-on-write, so the
    /// cost falls on the shard's next change (one copy of its arrays), not on the caller holding the lock.
    public func snapshot() -> KeyTableSnapshot {
        KeyTableSnapshot(table: table)
    }

    /// Every key in the shard, for tests and diagnostics.
    public var keys: [String] {
        table.keys.map { String(decoding: $0, as: UTF8.self) }
    }
}

extension Shard {
    /// `check` for a key given as a string; for tests and tools, not the request path.
    public func check(key: String, cost: Int64, limit: Limit, now: Int64) -> Decision {
        withBytes(key) { check(key: $0, hash: $1, cost: cost, limit: limit, now: now) }
    }

    public func reset(key: String) {
        withBytes(key) { reset(key: $0, hash: $1) }
    }

    public func state(for key: String) -> KeyState? {
        withBytes(key) { state(key: $0, hash: $1) }
    }

    private func withBytes<T>(_ key: String, _ body: (UnsafeRawBufferPointer, UInt64) -> T) -> T {
        var key = key
        return key.withUTF8 { bytes in
            let raw = UnsafeRawBufferPointer(bytes)
            return body(raw, KeyHash.hash(raw))
        }
    }
}

@available(*, unavailable)
extension Shard: Sendable {}

/// A frozen copy of one shard's keys, safe to read on any thread while the shard carries on.
public struct KeyTableSnapshot: @unchecked Sendable {
    // @unchecked: a copy of a value type whose arrays no one else can change through this copy (writes to
    // the shard's own table copy-on-write away from it); the logs inside hold only value types.
    let table: KeyTable

    public var count: Int { table.count }

    /// Every key, its state, and the window it was last decided under (0 if unknown).
    public func forEach(_ body: (UnsafeRawBufferPointer, KeyState, Int64) -> Void) {
        table.forEach(body)
    }
}
