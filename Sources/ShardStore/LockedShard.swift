import RateLimiting
import Locking

/// A shard behind a lock of its own, so that whichever event loop reads a request decides it there and
/// then, with no hand-off to another thread. The lock is held only for the decision itself (a hash lookup
/// and some arithmetic, never I/O), there is one per shard and no global one, and it is what makes each
/// decision atomic: exactly one thread at a time touches a shard's keys.
///
/// Why not a worker thread per shard that others hand batches to: on these machines a cross-core wake-up
/// costs more than the whole decision, and measured end to end the hand-off design served 0.64 M
/// pipelined CHECKs/s on two shards against 1.0 M+ for this one (BENCHMARKS.md has the runs).
///
/// `@unchecked Sendable`: `shard` and the counters beside it are touched only inside `lock.withLock`, which is what makes sharing it
/// between event loops safe. (A `Locked<Shard>` would say so to the compiler, but its `inout sending` value
/// cannot be handed the request's borrowed key bytes.)
public final class LockedShard: @unchecked Sendable {
    private let lock = Locked<Void>(())
    private let shard = Shard()
    /// The latest time this shard has decided at. Event loops read the clock before taking the lock, so
    /// two of them can arrive out of order; deciding at `max(now, latest)` keeps each key's time moving
    /// forward, which the window algorithms rely on (a window must not roll back).
    private nonisolated(unsafe) var latest: Int64 = .min
    /// Decisions made, allowed and denied, per counter slot (`run`'s `slot`: which rule decided): counted
    /// under the lock the decision holds anyway, so metrics cost the request path no lock and, once a
    /// slot has been seen, no allocation.
    private nonisolated(unsafe) var decisions = DecisionCounts()

    public init() {}

    /// Runs `operation`; a decision is counted under `slot` (0 for a limit the request gave, else the
    /// rule's slot in the rule book).
    public func run(
        _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int = 0
    ) -> ShardResult {
        lock.withLock { _ in
            latest = max(latest, now)
            let result = shard.run(operation, key: key, hash: hash, now: latest)
            if case .decision(let decision) = result { decisions.count(slot: slot, allowed: decision.allowed) }
            return result
        }
    }

    /// Counts a decision made elsewhere (in Redis, for shared mode) for a key of this shard, under `slot`, so
    /// STATS and /metrics count every decision alike.
    public func count(_ decision: Decision, slot: Int) {
        lock.withLock { _ in decisions.count(slot: slot, allowed: decision.allowed) }
    }

    /// One shard while `withLocks` holds its lock: what a batch of decisions may do with it.
    struct Held {
        let owner: LockedShard

        /// Moves the shard's decision time forward to `now` (never back) and returns it.
        func advance(to now: Int64) -> Int64 {
            owner.latest = max(owner.latest, now)
            return owner.latest
        }

        func state(key: UnsafeRawBufferPointer, hash: UInt64) -> KeyState? {
            owner.shard.state(key: key, hash: hash)
        }

        func check(key: UnsafeRawBufferPointer, hash: UInt64, cost: Int64, limit: Limit, now: Int64) -> Decision {
            owner.shard.check(key: key, hash: hash, cost: cost, limit: limit, now: now)
        }
    }

    /// Runs `body` with every one of `shards` locked, taking the locks in the order given (callers give
    /// shard order, so that two batches can never wait on each other in a cycle). Single-key operations
    /// take one lock, so they cannot be part of such a cycle either.
    static func withLocks<T: Sendable>(_ shards: [LockedShard], _ body: ([Held]) -> T) -> T {
        func nest(_ index: Int, _ held: [Held]) -> T {
            guard index < shards.count else { return body(held) }
            let shard = shards[index]
            return shard.lock.withLock { _ in nest(index + 1, held + [Held(owner: shard)]) }
        }
        return nest(0, [])
    }

    /// Keys held, decisions made and keys evicted so far, read together under the lock.
    public func counters() -> (keys: Int, allowed: Int64, denied: Int64, evictions: Int, refusals: Int, memory: Int) {
        lock.withLock { _ in
            (shard.keyCount, decisions.allowed, decisions.denied, shard.evictions, shard.refusals, shard.memoryBytes)
        }
    }

    /// Adds the decisions per slot so far into `totals` (allowed, denied by slot), for metrics. Copied out
    /// under the lock rather than shared, so the shard's next decision need not copy its counts.
    public func addDecisionCounts(into totals: inout [(allowed: Int64, denied: Int64)]) {
        lock.withLock { _ in
            for slot in 0..<decisions.slots {
                if slot >= totals.count { totals.append((0, 0)) }
                totals[slot].allowed &+= decisions.allowed(slot: slot)
                totals[slot].denied &+= decisions.denied(slot: slot)
            }
        }
    }

    /// Bounds the shard's keys; a new key past the bound evicts one.
    public func setMaxKeys(_ maxKeys: Int, maxMemory: Int = .max, whenFull: WhenFull = .deny) {
        lock.withLock { _ in
            shard.maxKeys = maxKeys
            shard.maxMemory = maxMemory
            shard.whenFull = whenFull
        }
    }

    /// Drops fresh keys among the next `budget` table slots; one short lock hold per call, so the sweeper
    /// never pauses the shard for long. Returns the keys dropped and the table's size in slots.
    public func sweep(now: Int64, budget: Int) -> (removed: Int, capacity: Int) {
        lock.withLock { _ in
            latest = max(latest, now)
            return (shard.sweep(now: latest, budget: budget), shard.capacity)
        }
    }

    /// A point-in-time copy of the shard; O(1) under the lock (see `Shard.snapshot`).
    public func snapshot() -> KeyTableSnapshot {
        lock.withLock { _ in shard.snapshot() }
    }

    /// Sets `key`'s state, replacing whatever it had; for restoring a snapshot at `now`.
    public func restore(key: UnsafeRawBufferPointer, hash: UInt64, state: KeyState, windowNanos: Int64, now: Int64) {
        lock.withLock { _ in
            shard.latest = max(shard.latest, now)
            shard.restore(key: key, hash: hash, state: state, windowNanos: windowNanos)
        }
    }

    /// See `Shard.rememberResets`.
    public func rememberResets(_ on: Bool) {
        lock.withLock { _ in shard.rememberResets(on) }
    }

    // MARK: Replication

    /// Starts logging changed keys for a replicator; call before the shard serves or restores anything.
    public func trackChanges() {
        lock.withLock { _ in shard.tracksChanges = true }
    }

    /// Moves up to `budget` changed keys into `batch` in one lock hold; returns how many stay logged.
    @discardableResult
    public func takeChanges(budget: Int, shardIndex: Int, now: Int64, into batch: inout ChangeBatch) -> Int {
        lock.withLock { _ in
            latest = max(latest, now)
            shard.takeChanges(budget: budget, shardIndex: shardIndex, now: latest, into: &batch)
            return shard.pendingChanges
        }
    }

    /// Logs again the keys of `batch` that belong to this shard, after writing them to the replica failed.
    public func requeue(_ batch: ChangeBatch, shardIndex: Int) {
        lock.withLock { _ in
            for item in batch.items where item.shard == shardIndex {
                batch.withKey(of: item) { shard.requeue(key: $0, hash: item.hash, changedAt: item.changedAt) }
            }
        }
    }

    /// Puts the replica's copy of `key` in place unless a decision changed the key since start-up (see
    /// `Shard.restoreFromReplica`); returns whether it did.
    public func restoreFromReplica(key: UnsafeRawBufferPointer, hash: UInt64, state: KeyState, windowNanos: Int64) -> Bool {
        lock.withLock { _ in shard.restoreFromReplica(key: key, hash: hash, state: state, windowNanos: windowNanos) }
    }

    /// Logs every key of `keys` (a chunk taken from a snapshot of this shard) for writing again.
    public func markForResync(_ keys: KeyChunk) {
        lock.withLock { _ in keys.forEach { shard.markForResync(key: $0, hash: $1) } }
    }

    /// Compacts the change log by up to `budget` records per lock hold until done, if it needs it.
    public func compactChanges(budget: Int) {
        while lock.withLock({ _ in shard.compactChanges(budget: budget) }) {}
    }

    /// Changes waiting for the replicator, and when the oldest of them happened (0 if none, or if it came
    /// from a restore before any decision).
    public func pendingChanges() -> (count: Int, since: Int64) {
        lock.withLock { _ in (shard.pendingChanges, shard.oldestPendingChange ?? 0) }
    }

    /// Runs `body` with the shard locked; for statistics, tests and maintenance.
    public func withShard<T: Sendable>(_ body: (Shard) -> T) -> T {
        lock.withLock { _ in body(shard) }
    }
}
