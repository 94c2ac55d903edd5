import RateLimiting
import Synchronization

/// What a replicator needs of the shards, whatever it copies them to: the changed keys of every shard, a
/// way to hand back what it could not write, and a way to load the copy at start-up. Every call takes one
/// shard lock at a time, briefly; none waits for the replica.
public final class ReplicationFeed: Sendable {
    private let shards: [LockedShard]
    private let router: ShardRouter
    public let clock: any DecisionClock
    public let status: ReplicationStatus
    private let shutdownBegan: @Sendable () -> Int64?

    /// `shutdownStartedAt` tells when the owner's graceful shutdown began, if it has.
    public init(
        shards: [LockedShard], clock: any DecisionClock, status: ReplicationStatus,
        shutdownStartedAt: @escaping @Sendable () -> Int64?
    ) {
        self.shards = shards
        self.router = ShardRouter(shardCount: shards.count)
        self.clock = clock
        self.status = status
        self.shutdownBegan = shutdownStartedAt
        for shard in shards { shard.trackChanges() }
        status.enabled.store(true, ordering: .relaxed)
    }

    /// When graceful shutdown began, if it has: how much of the shutdown timeout the final flush has left.
    public var shutdownStartedAt: Int64? { shutdownBegan() }

    /// Moves up to `budget` changed keys, spread over the shards, into `batch`; returns how many stay logged.
    /// Each lock hold takes at most `Self.keysPerLockHold`, so requests on a shard never wait long.
    @discardableResult
    public func take(budget: Int, into batch: inout ChangeBatch) -> Int {
        let now = clock.nanosecondsNow()
        let perShard = max(1, budget / shards.count)
        var remaining = 0
        for (index, shard) in shards.enumerated() {
            var taken = 0
            var left = 0
            repeat {
                let chunk = min(Self.keysPerLockHold, perShard - taken)
                left = shard.takeChanges(budget: chunk, shardIndex: index, now: now, into: &batch)
                taken += chunk
            } while left > 0 && taken < perShard
            remaining += left
        }
        return remaining
    }

    /// A request arriving during a take waits behind at most this many lookups and state encodings.
    static let keysPerLockHold = 256

    /// Logs the keys of `batch` again after writing it failed; the next write sends their state as it is then.
    public func requeue(_ batch: ChangeBatch) {
        guard !batch.isEmpty else { return }
        for (index, shard) in shards.enumerated() { shard.requeue(batch, shardIndex: index) }
    }

    /// Puts the replica's copy of `key` into its shard, unless a decision has changed the key since start-up
    /// (the shard's state is newer then); not sent back. Returns whether it did.
    @discardableResult
    public func restore(key: UnsafeRawBufferPointer, state: KeyState, windowNanos: Int64) -> Bool {
        let hash = KeyHash.hash(key)
        return shards[router.shard(forHash: hash)].restoreFromReplica(
            key: key, hash: hash, state: state, windowNanos: windowNanos)
    }

    /// While a restore from the replica is still to come, keys reset here are kept from coming back.
    public func rememberResets(_ on: Bool) {
        for shard in shards { shard.rememberResets(on) }
    }

    /// Compacts every shard's change log that has grown past twice its keys, a few thousand records per
    /// lock hold; run before taking changes, never while a batch is out.
    public func compact() {
        for shard in shards { shard.compactChanges(budget: Self.recordsPerCompactionStep) }
    }

    /// Logs every key held for writing again, for a replica that lost its data (restarted without
    /// persistence, flushed, or failed over to a copy that lacks it). Each shard is walked in a snapshot,
    /// off its lock, and marked a few thousand keys per lock hold. Returns the keys marked.
    @discardableResult
    public func resyncAll() -> Int {
        var chunk = KeyChunk()
        var total = 0
        for shard in shards {
            let copy = shard.snapshot()
            total += copy.count
            copy.forEach { key, _, _ in
                chunk.append(key: key, hash: KeyHash.hash(key))
                if chunk.count == Self.recordsPerCompactionStep {
                    shard.markForResync(chunk)
                    chunk.removeAll()
                }
            }
            shard.markForResync(chunk)
            chunk.removeAll()
        }
        return total
    }

    static let recordsPerCompactionStep = 4_096

    /// Changes not yet in the replica, and when the oldest of them happened (0 if unknown).
    public func pending() -> (count: Int, since: Int64) {
        status.pending(in: shards)
    }
}

/// The replicator's side of `STATS`: errors so far and the batch being written.
public final class ReplicationStatus: Sendable {
    let enabled = Atomic<Bool>(false)
    public let errors = Atomic<Int>(0)
    /// Changes taken from the shards and not yet acknowledged by the replica, and the oldest one's time.
    public let inFlight = Atomic<Int>(0)
    public let inFlightSince = Atomic<Int64>(0)

    public init() {}

    public var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// How far the replica is behind at `now`: changes waiting, and the age of the oldest of them in
    /// nanoseconds (0 when none waits or its time is unknown).
    public func lag(in shards: [LockedShard], now: Int64) -> (pending: Int, nanos: Int64) {
        let pending = pending(in: shards)
        return (pending.count, pending.count > 0 && pending.since != 0 ? max(0, now - pending.since) : 0)
    }

    /// Changes not yet in the replica (logged in `shards` or in flight), and when the oldest of them
    /// happened (0 if unknown).
    public func pending(in shards: [LockedShard]) -> (count: Int, since: Int64) {
        var count = inFlight.load(ordering: .relaxed)
        var since = count > 0 ? inFlightSince.load(ordering: .relaxed) : 0
        for shard in shards {
            let waiting = shard.pendingChanges()
            count += waiting.count
            if waiting.count > 0, waiting.since != 0 { since = since == 0 ? waiting.since : min(since, waiting.since) }
        }
        return (count, since)
    }
}
