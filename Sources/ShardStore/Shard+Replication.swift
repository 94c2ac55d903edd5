import RateLimiting

/// The shard's side of replication: logging changed keys, handing them to the replicator, taking back what
/// it could not write, loading the replica's copy, and keeping the log bounded while the replica is away.
extension Shard {
    /// Whether changes are logged for the replicator. Off by default, when nothing would take them.
    public var tracksChanges: Bool {
        get { table.tracksChanges }
        set { table.tracksChanges = newValue }
    }

    /// Records waiting for the replicator: about one per changed key (a key removed and used again before
    /// the replicator came by has two), plus removals.
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
        if !(mark.found && mark.wasChanged) {
            changes.append(key: key, hash: hash, time: changedAt, outOfOrder: true)
        }
    }

    /// Logs `key` for writing unless it is already logged or no longer held: for writing every key again to
    /// a replica that lost its data.
    public func markForResync(key: UnsafeRawBufferPointer, hash: UInt64) {
        let mark = table.setChanged(key: key, hash: hash, true)
        if mark.found && !mark.wasChanged { changes.append(key: key, hash: hash, time: latest) }
    }

    /// Puts the replica's copy of `key` in place unless a decision has changed the key since start-up (the
    /// shard's state is then newer than any copy). Not sent back to the replica. Returns whether it did.
    @discardableResult
    public func restoreFromReplica(key: UnsafeRawBufferPointer, hash: UInt64, state: KeyState, windowNanos: Int64) -> Bool {
        guard table.isAbsentOrRestored(key: key, hash: hash) else { return false }
        if let resets = resetsBeforeRestore {
            // Reset here before the replica's copy arrived: the reset is the newer word.
            if resets.overflowed, table.state(key: key, hash: hash) == nil { return false }
            if resets.keys.contains(Array(key)) { return false }
        }
        var needsListing = false  // never, for the replica's own copy
        var refusedUntil: Int64?
        table.update(
            key: key, hash: hash, windowNanos: windowNanos, origin: .replica, needsListing: &needsListing,
            refusedUntil: &refusedUntil
        ) {
            $0 = state
        }
        return true
    }

    /// While a restore from the replica is still to come (Redis was down at start), keys reset here are
    /// remembered, so the restore does not bring back what a client explicitly reset. Past `limit` keys the
    /// restore stops inserting keys this shard does not hold at all.
    public func rememberResets(_ on: Bool, limit: Int = 100_000) {
        resetsBeforeRestore = on ? ResetsBeforeRestore(limit: limit) : nil
    }

    func rememberReset(_ key: UnsafeRawBufferPointer) {
        guard var resets = resetsBeforeRestore else { return }
        resetsBeforeRestore = nil  // keep the set uniquely referenced while it changes
        if resets.keys.count < resets.limit {
            resets.keys.insert(Array(key))
        } else {
            resets.overflowed = true
        }
        resetsBeforeRestore = resets
    }

    func logChange(key: UnsafeRawBufferPointer, hash: UInt64) {
        changes.append(key: key, hash: hash, time: latest)
    }

    /// Whether the log has grown past twice the keys held (removals and records of keys removed and used
    /// again pile up while the replica is away), so `compactChanges` has work to do.
    public var changesNeedCompaction: Bool {
        compaction != nil || changes.count > max(2 * table.count, Self.minimumCompactionCount)
    }

    /// One step of compacting the log, looking at up to `budget` records under one lock hold; returns
    /// whether there is more to do. The replicator runs it to the end before it takes anything again.
    ///
    /// First every record is moved to the back if its key is held and marked, with the mark cleared, so a
    /// second record of the key is dropped, as are removals; then the marks of the records kept are set
    /// again. Dropping a removal only leaves the replica a copy that its TTL expires: more conservative,
    /// never less. Decisions meanwhile log and mark as usual.
    public func compactChanges(budget: Int) -> Bool {
        if compaction == nil {
            guard changesNeedCompaction else { return false }
            compaction = (markingAgain: false, remaining: changes.count)
        }
        guard var step = compaction else { return false }
        let count = min(budget, step.remaining)
        if step.markingAgain {
            changes.rotate(count) { key, hash in
                table.setChanged(key: key, hash: hash, true)
                return true
            }
        } else {
            changes.rotate(count) { key, hash in table.setChanged(key: key, hash: hash, false).wasChanged }
        }
        step.remaining -= count
        if step.remaining == 0 {
            if step.markingAgain {
                compaction = nil
                return false
            }
            step = (markingAgain: true, remaining: changes.count)
        }
        compaction = step
        return true
    }

    static let minimumCompactionCount = 65_536
}

/// Keys reset before a delayed restore from the replica, which the restore must not bring back.
struct ResetsBeforeRestore {
    var keys: Set<[UInt8]> = []
    let limit: Int
    var overflowed = false

    init(limit: Int) {
        self.limit = limit
    }
}
