import RateLimiting
import ShardStore
import Testing

@Suite("shards and shard workers")
struct ShardTests {
    let limit = try! Limit(algorithm: .tokenBucket, limit: 2, windowNanos: 1_000_000_000)

    @Test func aShardKeepsStatePerKeyAndForgetsOnReset() {
        let shard = Shard()
        let now: Int64 = 1_700_000_000_000_000_000
        #expect(shard.check(key: "a", cost: 2, limit: limit, now: now).allowed)
        #expect(!shard.check(key: "a", cost: 1, limit: limit, now: now).allowed)
        #expect(shard.check(key: "b", cost: 1, limit: limit, now: now).allowed)
        #expect(shard.keyCount == 2)
        shard.reset(key: "a")
        #expect(shard.keyCount == 1)
        #expect(shard.check(key: "a", cost: 2, limit: limit, now: now).allowed)
    }

    @Test func peeksAndDenialsOfUnknownKeysStoreNothing() {
        let shard = Shard()
        _ = shard.check(key: "peek", cost: 0, limit: limit, now: 0)
        _ = shard.check(key: "too-big", cost: 3, limit: limit, now: 0)
        #expect(shard.keyCount == 0)
    }

    @Test func aLockedShardDecidesFromManyThreadsExactly() async {
        let shard = LockedShard()
        let limit = try! Limit(algorithm: .fixedWindow, limit: 1_000, windowNanos: 3_600_000_000_000)
        let key = Array("hot".utf8)
        let hash = key.withUnsafeBytes { KeyHash.hash($0) }
        let allowed = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var allowed = 0
                    for _ in 0..<500 {
                        let result = key.withUnsafeBytes { shard.run(.check(cost: 1, limit: limit), key: $0, hash: hash, now: 0) }
                        if case .decision(let decision) = result, decision.allowed { allowed += 1 }
                    }
                    return allowed
                }
            }
            return await group.reduce(0, +)
        }
        #expect(allowed == 1_000)
        #expect(shard.withShard { $0.keyCount } == 1)
        let reset = key.withUnsafeBytes { shard.run(.reset, key: $0, hash: hash, now: 0) }
        #expect(reset == .reset)
        #expect(shard.withShard { $0.keyCount } == 0)
    }
}

@Suite("locked shard time")
struct LockedShardTimeTests {
    @Test func decisionsNeverGoBackInTime() {
        // Two event loops read the clock, then take the lock in the other order.
        let shard = LockedShard()
        let limit = try! Limit(algorithm: .fixedWindow, limit: 10, windowNanos: 1_000_000_000)
        let key = Array("k".utf8)
        let hash = key.withUnsafeBytes { KeyHash.hash($0) }
        func check(_ cost: Int64, at now: Int64) -> Bool {
            let result = key.withUnsafeBytes { shard.run(.check(cost: cost, limit: limit), key: $0, hash: hash, now: now) }
            if case .decision(let decision) = result { return decision.allowed }
            return false
        }
        #expect(check(10, at: 1_000_000_100))
        // A read made just before the window boundary, decided after: still the new, full window.
        #expect(!check(1, at: 999_999_900))
    }
}
