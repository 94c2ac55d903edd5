import RateLimiting

/// One shard's keys and their state. Not thread-safe by itself: `LockedShard` gives it one owner at a time.
public final class Shard {
    private var table = KeyTable()
    /// Keys changed since the replicator last took them; empty unless `tracksChanges`.
    private var changes = ChangeLog()
    /// The latest decision time seen, which dates the changes logged (0 before any).
    var latest: Int64 = 0

    public init() {}

    /// Decides `cost` for `key` under `limit` at `now`, recording what it consumes. `hash` is the key's
    /// `KeyHash`, which the caller already computed to pick this shard.
    public func check(key: UnsafeRawBufferPointer, hash: UInt64, cost: Int64, limit: Limit, now: Int64) -> Decision {
        latest = max(latest, now)
        let decision = table.update(key: key, hash: hash, windowNanos: limit.windowNanos) { state in
            KeyState.check(&state, cost: cost, limit: limit, now: now)
        }
        if table.lastUpdateNeedsListing { logChange(key: key, hash: hash) }
        return decision
    }

    /// Forgets `key`, so its next request starts from a full quota.
    public func reset(key: UnsafeRawBufferPointer, hash: UInt64) {
        table.update(key: key, hash: hash) { $0 = nil }
        if table.lastUpdateNeedsListing { logChange(key: key, hash: hash) }
    }

    public var keyCount: Int { table.count }

    /// Keys evicted so far to stay within `maxKeys`.
    public var evictions: Int { table.evictions }

    /// The most keys this shard holds; a new key past it evicts the least recently active of a sample.
    public var maxKeys: Int {
        get { table.maxKeys }
        set { table.maxKeys = max(1, newValue) }
    }

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
    /// it was decided under (0 if unknown), which the sweeper needs. With `replicate`, the key goes to the
    /// replica like any change (a snapshot may be newer than the replica); a state read from the replica
    /// itself is not sent back.
    public func restore(
        key: UnsafeRawBufferPointer, hash: UInt64, state: KeyState, windowNanos: Int64 = 0, replicate: Bool = true
    ) {
        table.update(key: key, hash: hash, windowNanos: windowNanos, marksChange: replicate) { $0 = state }
        if table.lastUpdateNeedsListing { logChange(key: key, hash: hash) }
    }

    // MARK: Changes for replication

    /// Whether changes are logged for the replicator. Off by default, when nothing would take them.
    public var tracksChanges: Bool {
        get { table.tracksChanges }
        set { table.tracksChanges = newValue }
    }

    /// Logged changes not yet taken: at most one per key held, plus removals, however long the replica is away.
    public var pendingChanges: Int { changes.count }

    /// When the oldest change not yet taken happened (decision-clock nanoseconds; 0 if unknown, as for a key
    /// restored before any decision); nil when none waits.
    public var oldestPendingChange: Int64? { changes.oldestTime }

    /// Moves up to `budget` logged keys into `batch` with what the replica should now hold for each.
    public func takeChanges(budget: Int, shardIndex: Int, now: Int64, into batch: inout ChangeBatch) {
        latest = max(latest, now)
        changes.take(budget) { key, hash, time in
            batch.append(shard: shardIndex, key: key, hash: hash, changedAt: time,
                         change: table.takeChange(key: key, hash: hash), now: now)
        }
    }

    /// Logs `key` again after a write to the replica failed, unless a newer change already did; `changedAt`
    /// is when it first changed, so the lag keeps counting from then.
    public func requeue(key: UnsafeRawBufferPointer, hash: UInt64, changedAt: Int64) {
        let mark = table.setChanged(key: key, hash: hash, true)
        // Held and marked: already logged. Held and unmarked, or gone (a removal to send): log it.
        if !(mark.found && mark.wasChanged) { changes.append(key: key, hash: hash, time: changedAt) }
    }

    private func logChange(key: UnsafeRawBufferPointer, hash: UInt64) {
        changes.append(key: key, hash: hash, time: latest)
        if changes.count > max(2 * table.count, Self.minimumCompactionCount) { compactChanges() }
    }

    /// Removals logged while the replica is away can pile up past the keys held (a key reset and used
    /// again, over and over); this keeps each held key's record once and drops the removals. Dropping one
    /// only leaves the replica a copy that its TTL expires: more conservative, never less.
    private func compactChanges() {
        changes.filter { key, hash in table.setChanged(key: key, hash: hash, false).wasChanged }
        changes.forEach { key, hash in table.setChanged(key: key, hash: hash, true) }
    }

    static let minimumCompactionCount = 65_536

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
