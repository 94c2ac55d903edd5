import RateLimiting
import ShardStore
import TestSupport
import Testing

/// The shard's table against a plain dictionary running the same algorithms: any difference in decisions,
/// key counts or states is a table bug (lost keys, wrong entry after a move, stale log storage).
@Suite("shard key table")
struct KeyTableTests {
    static let limits: [Limit] = Algorithm.allCases.map { algorithm in
        try! Limit(algorithm: algorithm, limit: 3, windowNanos: 1_000_000_000)
    }

    @Test(arguments: [1, 2, 3])
    func behavesLikeADictionary(seed: UInt64) {
        let shard = Shard()
        var model: [String: KeyState] = [:]
        var random = SplitMix(seed: seed)
        var now: Int64 = 1_700_000_000_000_000_000
        // Short keys, 24-byte keys (the inline limit) and long keys that need a tail.
        let keys = (0..<600).map { index -> String in
            switch index % 3 {
            case 0: "k\(index)"
            case 1: "key-" + String(repeating: "x", count: 20 - String(index).count) + "\(index)"
            default: String(repeating: "long-key/", count: 1 + index % 25) + "\(index)"
            }
        }
        for step in 0..<30_000 {
            let key = keys[Int(random.next() % UInt64(keys.count))]
            now += Int64(random.next() % 20_000_000)
            if random.next() % 10 == 0 {
                shard.reset(key: key)
                model[key] = nil
                continue
            }
            // Keys change algorithm now and then, which replaces their state (and frees or takes log space).
            let limit = Self.limits[Int(random.next() % UInt64(Self.limits.count))]
            let cost = Int64(random.next() % 3)
            let decided = shard.check(key: key, cost: cost, limit: limit, now: now)
            let expected = KeyState.check(&model[key], cost: cost, limit: limit, now: now)
            #expect(decided == expected, "step \(step) key \(key)")
            if decided != expected { return }
        }
        #expect(shard.keyCount == model.count)
        #expect(Set(shard.keys) == Set(model.keys))
        for (key, state) in model {
            #expect(shard.state(for: key) == state, "\(key)")
        }
    }

    @Test func growsAndShrinksThroughHundredsOfThousandsOfKeys() {
        let shard = Shard()
        let limit = try! Limit(algorithm: .fixedWindow, limit: 10, windowNanos: 60_000_000_000)
        for index in 0..<200_000 {
            #expect(shard.check(key: "user:\(index)", cost: 1, limit: limit, now: 0).allowed)
        }
        #expect(shard.keyCount == 200_000)
        for index in stride(from: 0, to: 200_000, by: 2) { shard.reset(key: "user:\(index)") }
        #expect(shard.keyCount == 100_000)
        for index in 0..<200_000 {
            let remaining = shard.check(key: "user:\(index)", cost: 0, limit: limit, now: 0).remaining
            #expect(remaining == (index % 2 == 0 ? 10 : 9))
        }
    }
}
