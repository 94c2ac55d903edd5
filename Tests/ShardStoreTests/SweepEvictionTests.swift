import RateLimiting
import Testing

@testable import ShardStore

@Suite("sweeping and eviction")
struct SweepEvictionTests {
    static let t0: Int64 = 1_700_000_000_000_000_000
    static let second: Int64 = 1_000_000_000

    @Test func anEntryStaysFortyEightBytes() {
        #expect(MemoryLayout<KeyTable.Entry>.stride == 48)
    }

    @Test func sweepingDropsExactlyTheFreshKeys() {
        let shard = Shard()
        for algorithm in Algorithm.allCases {
            let limit = try! Limit(algorithm: algorithm, limit: 5, windowNanos: Self.second)
            _ = shard.check(key: "k:\(algorithm.rawValue)", cost: 1, limit: limit, now: Self.t0)
        }
        #expect(shard.keyCount == 5)
        #expect(shard.sweep(now: Self.t0 + Self.second / 10, budget: shard.capacity) == 0)
        // Buckets refill 1 of 5 in 200 ms (leaky: its one unit in 200 ms): both fresh at 250 ms.
        #expect(shard.sweep(now: Self.t0 + Self.second / 4, budget: shard.capacity) == 2)
        #expect(shard.keyCount == 3)
        // The windows are over (the counter needs its next window too; windows are kept rounded up by a
        // few per cent).
        #expect(shard.sweep(now: Self.t0 + 2 * Self.second + 300_000_000, budget: shard.capacity) == 3)
        #expect(shard.keyCount == 0)
    }

    @Test func smallBudgetsCoverTheWholeTableInTurns() {
        let shard = Shard()
        let limit = try! Limit(algorithm: .fixedWindow, limit: 5, windowNanos: Self.second)
        for index in 0..<5_000 { _ = shard.check(key: "user:\(index)", cost: 1, limit: limit, now: Self.t0) }
        let later = Self.t0 + 3 * Self.second
        var removed = 0
        for _ in 0..<(shard.capacity / 100 + 1) { removed += shard.sweep(now: later, budget: 100) }
        #expect(removed == 5_000)
        #expect(shard.keyCount == 0)
    }

    @Test func aRestoredKeyKeepsItsWindowForTheSweeper() throws {
        let source = Shard()
        let limit = try Limit(algorithm: .slidingWindowCounter, limit: 5, windowNanos: Self.second)
        _ = source.check(key: "c", cost: 1, limit: limit, now: Self.t0)
        let contents = try SnapshotCodec.decode(SnapshotCodec.encode([source.snapshot()], savedAt: Self.t0))
        // Kept as a window code: rounded up, by less than a tenth.
        let window = try #require(contents.entries.first?.windowNanos)
        #expect(window >= Self.second && window <= Self.second * 11 / 10)
        let restored = Shard()
        for entry in contents.entries {
            entry.key.withUnsafeBytes {
                restored.restore(key: $0, hash: KeyHash.hash($0), state: entry.state, windowNanos: entry.windowNanos)
            }
        }
        #expect(restored.sweep(now: Self.t0 + 3 * Self.second, budget: restored.capacity) == 1)
    }

    @Test func evictionPrefersTheKeyClosestToFresh() {
        // A day-long window started long ago, against buckets that were just used hard.
        let shard = Shard()
        shard.maxKeys = 2
        let daily = try! Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 86_400 * Self.second)
        let bucket = try! Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 3_600 * Self.second)
        _ = shard.check(key: "login:alice", cost: 5, limit: daily, now: Self.t0)
        _ = shard.check(key: "api:1", cost: 9, limit: bucket, now: Self.t0 + 100 * Self.second)
        _ = shard.check(key: "api:2", cost: 1, limit: bucket, now: Self.t0 + 100 * Self.second)
        // Inserting api:2 evicted api:1 (full again in 54 min) rather than login:alice (whose window runs to
        // the end of the day, hours away): the key with the least quota left to lose.
        #expect(Set(shard.keys) == ["login:alice", "api:2"])
    }

    /// The flood: a victim out of quota, then keys that each spend their whole limit. No victim is
    /// evicted into a fresh quota; once every key is limited, new keys are denied until one stops mattering.
    @Test func aLimitedKeyIsNeverEvictedAndNewKeysAreDeniedWhenEveryKeyIs() {
        let shard = Shard()
        shard.maxKeys = 4
        let hourly = try! Limit(algorithm: .tokenBucket, limit: 5, windowNanos: 3_600 * Self.second)
        #expect(shard.check(key: "victim", cost: 5, limit: hourly, now: Self.t0) == Decision(allowed: true, remaining: 0, resetMillis: 3_600_000))
        for index in 0..<3 { _ = shard.check(key: "flood:\(index)", cost: 5, limit: hourly, now: Self.t0) }
        let later = Self.t0 + 10 * Self.second
        // Every key would be handed a fresh quota: the new one is denied until the soonest is fresh again.
        #expect(shard.check(key: "new", cost: 1, limit: hourly, now: later) == Decision(allowed: false, remaining: 0, resetMillis: 3_590_000))
        #expect(shard.check(key: "victim", cost: 1, limit: hourly, now: later).allowed == false)
        #expect(shard.evictions == 0 && shard.refusals == 1 && shard.keyCount == 4 && !shard.keys.contains("new"))
        // Once their hour is over the limited keys matter no more, and make room as any key does.
        #expect(shard.check(key: "new", cost: 1, limit: hourly, now: Self.t0 + 3_601 * Self.second).allowed)
        #expect(shard.evictions == 1 && shard.keys.contains("new"))
    }

    @Test func whenFullAllowDecidesANewKeyAsFreshAndRemembersItNowhere() {
        let shard = Shard()
        shard.maxKeys = 2
        shard.whenFull = .allow
        let hourly = try! Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 3_600 * Self.second)
        for key in ["a", "b"] { _ = shard.check(key: key, cost: 5, limit: hourly, now: Self.t0) }
        for _ in 0..<3 {
            #expect(shard.check(key: "new", cost: 1, limit: hourly, now: Self.t0).remaining == 4)
        }
        #expect(shard.refusals == 3 && Set(shard.keys) == ["a", "b"])
    }

    /// A large table samples: a flood of 20,000 keys that each spend their limit, into a shard of 1,000 keys
    /// that holds 999 keys with quota left and one victim without. The victim is never evicted.
    @Test func samplingNeverPicksALimitedKeyWhateverTheFlood() {
        let shard = Shard()
        shard.maxKeys = 1_000
        let hourly = try! Limit(algorithm: .slidingWindowCounter, limit: 5, windowNanos: 3_600 * Self.second)
        _ = shard.check(key: "victim", cost: 5, limit: hourly, now: Self.t0)
        for index in 0..<999 { _ = shard.check(key: "user:\(index)", cost: 1, limit: hourly, now: Self.t0) }
        for index in 0..<20_000 { _ = shard.check(key: "y:\(index)", cost: 5, limit: hourly, now: Self.t0 + Self.second) }
        #expect(shard.check(key: "victim", cost: 1, limit: hourly, now: Self.t0 + 2 * Self.second).allowed == false)
        #expect(shard.keyCount == 1_000)
        // Keys with quota left went first; then each new key was refused (a few may be sampled past).
        #expect(shard.evictions <= 999 && shard.evictions + shard.refusals == 20_000, "\(shard.evictions) \(shard.refusals)")
        #expect(shard.refusals >= 19_001)
    }

    @Test func aFullShardEvictsTheLeastRecentlyActive() {
        let shard = Shard()
        shard.maxKeys = 100
        let limit = try! Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 3_600 * Self.second)
        for index in 0..<1_000 {
            _ = shard.check(key: "user:\(index)", cost: 1, limit: limit, now: Self.t0 + Int64(index) * Self.second)
        }
        #expect(shard.keyCount == 100)
        #expect(shard.evictions == 900)
        // Sampling approximates LRU: nearly all of the most recent keys survive, almost none of the oldest.
        let keys = Set(shard.keys)
        let recent = (950..<1_000).filter { keys.contains("user:\($0)") }.count
        let old = (0..<500).filter { keys.contains("user:\($0)") }.count
        #expect(recent >= 40)
        #expect(old <= 10)
    }
}

@Suite("window codes")
struct WindowCodeTests {
    @Test func codesRoundUpAndStayStable() {
        var window: Int64 = 1_000_000
        while window <= 365 * 86_400 * 1_000_000_000 {
            let code = WindowCode.encode(window)
            let decoded = WindowCode.decode(code)
            #expect(decoded >= window)
            #expect(Double(decoded) <= Double(window) * 1.11)
            #expect(WindowCode.encode(decoded) == code)
            window = window * 13 / 10 + 7
        }
        #expect(WindowCode.encode(0) == 0 && WindowCode.decode(0) == 0)
    }

    @Test func anyNumberOfDistinctWindowsStaysSweepable() {
        let shard = Shard()
        for index in 1...600 {
            let limit = try! Limit(algorithm: .fixedWindow, limit: 5, windowNanos: Int64(index) * 1_000_000)
            _ = shard.check(key: "w\(index)", cost: 1, limit: limit, now: 1_700_000_000_000_000_000)
        }
        #expect(shard.sweep(now: 1_700_000_000_000_000_000 + 2_000_000_000, budget: shard.capacity) == 600)
    }
}

@Suite("max_memory")
struct MaxMemoryTests {
    static let t0: Int64 = 1_700_000_000_000_000_000
    static let hourly = try! Limit(algorithm: .tokenBucket, limit: 5, windowNanos: 3_600_000_000_000)

    @Test func longKeysAndSlidingLogsAreCountedAndGiveTheirBytesBack() {
        let shard = Shard()
        let empty = shard.memoryBytes
        let long = String(repeating: "k", count: 100)
        _ = shard.check(key: long, cost: 1, limit: Self.hourly, now: Self.t0)
        #expect(shard.memoryBytes == empty + 100 + KeyTable.longKeyOverhead)
        let log = try! Limit(algorithm: .slidingWindowLog, limit: 100, windowNanos: 3_600_000_000_000)
        for step in 0..<50 { _ = shard.check(key: "log", cost: 1, limit: log, now: Self.t0 + Int64(step)) }
        let withLog = shard.memoryBytes
        #expect(withLog >= empty + 100 + KeyTable.longKeyOverhead + 32 + 50 * 16)
        shard.reset(key: "log")
        shard.reset(key: long)
        #expect(shard.memoryBytes == empty)
    }

    /// The case: a million keys of 252 bytes. The table stays within its bytes, however many keys.
    @Test func keysOfTwoHundredFiftyTwoBytesStayWithinTheBound() {
        let shard = Shard()
        shard.maxMemory = 1 << 20
        let prefix = String(repeating: "x", count: 240)
        for index in 0..<20_000 {
            _ = shard.check(key: prefix + String(format: "%012d", index), cost: 1, limit: Self.hourly, now: Self.t0)
            #expect(shard.memoryBytes <= 1 << 20)
            if shard.memoryBytes > 1 << 20 { return }
        }
        #expect(shard.keyCount > 2_000 && shard.keyCount < 4_000, "\(shard.keyCount)")
        #expect(shard.evictions == 20_000 - shard.keyCount)
    }

    /// A sliding log that grows evicts other keys, never itself.
    @Test func aGrowingLogMakesRoomByEvictingOthers() {
        let shard = Shard()
        shard.maxMemory = 400_000
        // Keys with logs of their own (about 1 KB each), and keys without side storage, whose eviction would
        // free nothing.
        let small = try! Limit(algorithm: .slidingWindowLog, limit: 100, windowNanos: 3_600_000_000_000)
        for index in 0..<100 {
            for step in 0..<50 { _ = shard.check(key: "other:\(index)", cost: 1, limit: small, now: Self.t0 + Int64(step)) }
        }
        for index in 0..<1_000 { _ = shard.check(key: "user:\(index)", cost: 1, limit: Self.hourly, now: Self.t0) }
        let before = shard.keyCount
        let log = try! Limit(algorithm: .slidingWindowLog, limit: 10_000, windowNanos: 3_600_000_000_000)
        for step in 0..<9_000 {
            #expect(shard.check(key: "log", cost: 1, limit: log, now: Self.t0 + Int64(step)).allowed)
        }
        #expect(shard.memoryBytes <= 400_000 && shard.keys.contains("log"))
        // Only keys with logs went; the others free nothing and stay.
        #expect(shard.keyCount < before && shard.keys.filter { $0.hasPrefix("user:") }.count == 1_000)
    }
}
