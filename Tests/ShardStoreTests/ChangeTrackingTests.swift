import RateLimiting
import TestSupport
import Testing

@testable import ShardStore

@Suite("change tracking for replication")
struct ChangeTrackingTests {
    static let t0: Int64 = 1_700_000_000_000_000_000
    static let ms: Int64 = 1_000_000
    static let limit = try! Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 10_000 * ms)

    static func trackingShard() -> Shard {
        let shard = Shard()
        shard.tracksChanges = true
        return shard
    }

    /// Takes every logged change, as (key, state or nil for a removal, its window, when it is fresh).
    static func take(_ shard: Shard, now: Int64, budget: Int = .max) -> [(key: String, state: KeyState?, window: Int64, freshAt: Int64)] {
        var batch = ChangeBatch()
        shard.takeChanges(budget: budget, shardIndex: 0, now: now, into: &batch)
        #expect(batch.isEmpty || batch.takenAt == now)
        return batch.items.map { item in
            let key = batch.withKey(of: item) { String(decoding: $0, as: UTF8.self) }
            switch item.change {
            case .held(let state, let window, let freshAt): return (key, state, window, freshAt)
            case .removed: return (key, nil, 0, 0)
            }
        }
    }

    @Test func aKeyChangedAThousandTimesIsWrittenOnceWithItsLatestState() throws {
        let shard = Self.trackingShard()
        for step in 0..<1_000 {
            _ = shard.check(key: "hot", cost: 0, limit: Self.limit, now: Self.t0)  // a peek changes nothing
            _ = shard.check(key: "hot", cost: 1, limit: Self.limit, now: Self.t0 + Int64(step) * 100 * Self.ms)
        }
        #expect(shard.pendingChanges == 1)
        let now = Self.t0 + 100_000 * Self.ms
        let changes = Self.take(shard, now: now)
        #expect(changes.count == 1)
        #expect(changes.first?.state == shard.state(for: "hot"))
        #expect(shard.pendingChanges == 0)
        #expect(Self.take(shard, now: now).isEmpty)
    }

    @Test func theOldestWaitingChangeDatesTheLag() {
        let shard = Self.trackingShard()
        #expect(shard.oldestPendingChange == nil)
        _ = shard.check(key: "a", cost: 1, limit: Self.limit, now: Self.t0)
        _ = shard.check(key: "b", cost: 1, limit: Self.limit, now: Self.t0 + 5 * Self.ms)
        _ = shard.check(key: "a", cost: 1, limit: Self.limit, now: Self.t0 + 9 * Self.ms)  // still the first record
        #expect(shard.oldestPendingChange == Self.t0)
        _ = Self.take(shard, now: Self.t0 + 10 * Self.ms, budget: 1)
        #expect(shard.oldestPendingChange == Self.t0 + 5 * Self.ms)
        _ = Self.take(shard, now: Self.t0 + 10 * Self.ms)
        #expect(shard.oldestPendingChange == nil)
    }

    @Test func aStateIsHeldUntilItIsFreshAndAFreshStateIsARemoval() throws {
        let shard = Self.trackingShard()
        // 10 per 10 s: each unit refills in 1 s. Three spent: full again 3 s later.
        for _ in 0..<3 { _ = shard.check(key: "k", cost: 1, limit: Self.limit, now: Self.t0) }
        let changes = Self.take(shard, now: Self.t0 + 500 * Self.ms + 1)
        #expect(changes.map(\.freshAt) == [Self.t0 + 3_000 * Self.ms])
        _ = shard.check(key: "k", cost: 1, limit: Self.limit, now: Self.t0 + 600 * Self.ms)
        // Taken only after it refilled: nothing to keep, so the replica forgets it.
        let late = Self.take(shard, now: Self.t0 + 10_000 * Self.ms)
        #expect(late.count == 1 && late[0].state == nil)
    }

    @Test func denialsAndUntrackedShardsLogNothing() {
        let shard = Self.trackingShard()
        let one = try! Limit(algorithm: .fixedWindow, limit: 1, windowNanos: 1_000 * Self.ms)
        #expect(shard.check(key: "k", cost: 1, limit: one, now: Self.t0).allowed)
        _ = Self.take(shard, now: Self.t0)
        #expect(!shard.check(key: "k", cost: 1, limit: one, now: Self.t0).allowed)
        #expect(shard.pendingChanges == 0)

        let untracked = Shard()
        _ = untracked.check(key: "k", cost: 1, limit: Self.limit, now: Self.t0)
        untracked.reset(key: "k")
        #expect(untracked.pendingChanges == 0)
    }

    @Test func aResetReachesTheReplicaAsARemoval() {
        let shard = Self.trackingShard()
        _ = shard.check(key: "taken", cost: 1, limit: Self.limit, now: Self.t0)
        _ = shard.check(key: "untaken", cost: 1, limit: Self.limit, now: Self.t0)
        _ = Self.take(shard, now: Self.t0, budget: 1)  // "taken" goes; "untaken" waits
        shard.reset(key: "taken")
        shard.reset(key: "untaken")
        shard.reset(key: "never-seen")
        let changes = Self.take(shard, now: Self.t0)
        // "never-seen" too: the replica may hold it from before a restart.
        #expect(changes.map(\.key).sorted() == ["never-seen", "taken", "untaken"])
        #expect(changes.allSatisfy { $0.state == nil })
    }

    @Test func aFailedWriteIsLoggedAgainAndAHeldKeyOnlyOnce() {
        let shard = Self.trackingShard()
        for key in ["a", "b", "c"] { _ = shard.check(key: key, cost: 1, limit: Self.limit, now: Self.t0) }
        var batch = ChangeBatch()
        shard.takeChanges(budget: .max, shardIndex: 0, now: Self.t0, into: &batch)
        #expect(batch.count == 3 && shard.pendingChanges == 0)
        _ = shard.check(key: "a", cost: 1, limit: Self.limit, now: Self.t0 + Self.ms)  // logged anew
        shard.reset(key: "b")  // logged as a removal
        for item in batch.items {
            batch.withKey(of: item) { shard.requeue(key: $0, hash: item.hash, changedAt: item.changedAt) }
        }
        let changes = Self.take(shard, now: Self.t0 + 2 * Self.ms)
        // A held key comes back once; a removal may come twice (both say "forget it").
        #expect(changes.filter { $0.state != nil }.map(\.key).sorted() == ["a", "c"])
        #expect(Set(changes.filter { $0.state == nil }.map(\.key)) == ["b"])
    }

    @Test func restoringFromTheReplicaIsNotSentBackButASnapshotIs() {
        let shard = Self.trackingShard()
        let state = KeyState.bucket(BucketState(theoreticalArrival: Self.t0 + 1_000 * Self.ms))
        withKey("from-redis") { #expect(shard.restoreFromReplica(key: $0, hash: $1, state: state, windowNanos: 0)) }
        #expect(shard.pendingChanges == 0)
        withKey("from-snapshot") { shard.restore(key: $0, hash: $1, state: state) }
        #expect(Self.take(shard, now: Self.t0).map(\.key) == ["from-snapshot"])
    }

    @Test func aLateRestoreFromTheReplicaNeverUndoesADecisionMadeHere() {
        let shard = Self.trackingShard()
        let old = KeyState.bucket(BucketState(theoreticalArrival: Self.t0 + 1_000 * Self.ms))
        let replica = KeyState.bucket(BucketState(theoreticalArrival: Self.t0 + 5_000 * Self.ms))
        for key in ["decided", "denied-only", "untouched"] { withKey(key) { shard.restore(key: $0, hash: $1, state: old) } }
        _ = shard.check(key: "decided", cost: 1, limit: Self.limit, now: Self.t0)
        let tight = try! Limit(algorithm: .tokenBucket, limit: 1, windowNanos: 10_000 * Self.ms)
        #expect(!shard.check(key: "denied-only", cost: 1, limit: tight, now: Self.t0).allowed)
        for key in ["decided", "denied-only", "untouched", "new"] {
            withKey(key) { bytes, hash in
                let replaced = shard.restoreFromReplica(key: bytes, hash: hash, state: replica, windowNanos: 0)
                #expect(replaced == (key != "decided"), "\(key)")
            }
        }
        #expect(shard.state(for: "decided") != replica)
        #expect(shard.state(for: "denied-only") == replica)
        #expect(shard.state(for: "untouched") == replica && shard.state(for: "new") == replica)
    }

    @Test func compactionInterleavedWithDecisionsLosesNoKeysLatestState() {
        let shard = Self.trackingShard()
        var rng = SplitMix(seed: 7)
        var now = Self.t0
        func churn(_ count: Int) {
            for _ in 0..<count {
                now += Self.ms
                let key = "k:\(rng.next() % 300)"
                if rng.next() % 4 == 0 { shard.reset(key: key) } else { _ = shard.check(key: key, cost: 1, limit: Self.limit, now: now) }
            }
        }
        churn(400_000)  // past the compaction threshold, with many removals and keys used again
        #expect(shard.changesNeedCompaction)
        // Small steps with decisions, resets and new keys between them, as happens while the replicator runs.
        while shard.compactChanges(budget: 997) { churn(50) }
        #expect(!shard.changesNeedCompaction)
        var replica: [String: KeyState] = [:]
        for change in Self.take(shard, now: now) {
            replica[change.key] = change.state
        }
        for index in 0..<300 {
            let key = "k:\(index)"
            // A state already fresh is written as a removal: it means the same full quota.
            let held = shard.state(for: key).flatMap { $0.isFresh(now: now, windowNanos: Self.limit.windowNanos) ? nil : $0 }
            #expect(replica[key] == held, "\(key)")
        }
        #expect(replica.count > 200, "most keys hold quota worth replicating")
    }

    @Test func resettingAKeyNotHeldStillTellsTheReplica() {
        let shard = Self.trackingShard()
        shard.reset(key: "only-in-redis")
        let changes = Self.take(shard, now: Self.t0)
        #expect(changes.map(\.key) == ["only-in-redis"] && changes[0].state == nil)
    }

    @Test func removalsPilingUpWhileTheReplicaIsAwayStayBoundedByCompaction() {
        let shard = Self.trackingShard()
        for index in 0..<1_000 { _ = shard.check(key: "steady:\(index)", cost: 1, limit: Self.limit, now: Self.t0) }
        var most = 0
        for round in 0..<200 {
            for step in 0..<1_000 {
                let now = Self.t0 + Int64(round * 1_000 + step) * Self.ms
                _ = shard.check(key: "churn", cost: 1, limit: Self.limit, now: now)
                shard.reset(key: "churn")
                shard.reset(key: "absent:\(step)")
            }
            // What the replicator does at every tick, connected or not.
            while shard.compactChanges(budget: 4_096) {}
            most = max(most, shard.pendingChanges)
        }
        #expect(most <= Shard.minimumCompactionCount + 3_000)
        _ = shard.check(key: "steady:7", cost: 2, limit: Self.limit, now: Self.t0 + 1)
        // Every held key is still logged exactly once, with its latest state.
        let changes = Self.take(shard, now: Self.t0 + 2)
        let sets = changes.filter { $0.state != nil }
        #expect(sets.count == 1_000 && Set(sets.map(\.key)).count == 1_000)
        #expect(sets.first { $0.key == "steady:7" }?.state == shard.state(for: "steady:7"))
    }

    @Test func anEvictedKeyThatWaitedIsRemovedFromTheReplica() {
        let shard = Self.trackingShard()
        shard.maxKeys = 1
        _ = shard.check(key: "first", cost: 1, limit: Self.limit, now: Self.t0)
        _ = shard.check(key: "second", cost: 1, limit: Self.limit, now: Self.t0)
        let changes = Self.take(shard, now: Self.t0)
        #expect(changes.map(\.key) == ["first", "second"])
        #expect(changes[0].state == nil && changes[1].state != nil)
    }

    private func withKey(_ key: String, _ body: (UnsafeRawBufferPointer, UInt64) -> Void) {
        Array(key.utf8).withUnsafeBytes { body($0, KeyHash.hash($0)) }
    }

    @Test func aYearLongWindowSurvivesTheReplicaAndTheSnapshot() throws {
        let shard = Self.trackingShard()
        let year = try Limit(algorithm: .fixedWindow, limit: 10, windowNanos: Limit.maxWindowNanos)
        _ = shard.check(key: "yearly", cost: 3, limit: year, now: Self.t0)
        let changes = Self.take(shard, now: Self.t0)
        #expect(changes.first?.window == Limit.maxWindowNanos)
        let snapshot = try SnapshotCodec.decode(SnapshotCodec.encode([shard.snapshot()], savedAt: Self.t0))
        #expect(snapshot.entries.first?.windowNanos == Limit.maxWindowNanos)
    }
}
