import DaemonConfig
import RateLimiting
import RedisReplication
import ShardStore
import TestSupport
import Testing

/// Shared mode decides inside Redis with a Lua script; local mode in the shards. The same requests at the
/// same (explicit) times must get the same replies from both, for every algorithm, including values far
/// beyond what Lua's doubles hold exactly (nanosecond clocks, year-long windows, a billion per window).
@Suite("the shared-mode script decides as the local algorithms do", .enabled(if: ExternalTool.required || RedisServerProcess.isAvailable))
struct DecisionScriptTests {
    static let t0: Int64 = 1_700_000_000_123_456_789
    static let ms: Int64 = 1_000_000
    static let year = Limit.maxWindowNanos

    /// One redis-server with the script loaded.
    final class Script {
        let redis: RedisServerProcess
        let connection: RedisConnection
        let sha: String

        init() throws {
            redis = try RedisServerProcess()
            connection = try RedisConnection.connect(to: try RedisEndpoint(parsing: redis.url), timeoutMillis: 5_000)
            guard case .string(let sha) = try connection.command(["SCRIPT", "LOAD", DecisionScript.source]) else {
                throw RedisError("SCRIPT LOAD failed")
            }
            self.sha = String(decoding: sha, as: UTF8.self)
        }

        struct Item {
            var key: String
            var limit: Limit
            var cost: Int64
            /// 0 shadow, 1 may deny the batch, 2 quota.
            var role: Int = 1
        }

        /// Decides `items` at `now` (nil: Redis's clock), "each", "all" or "none"; returns the decisions and,
        /// for "all" and "none", whether they were applied.
        func decide(_ items: [Item], now: Int64?, mode: String = "each") throws -> (decisions: [Decision], applied: Bool) {
            var limits: [Limit] = []
            for item in items where !limits.contains(item.limit) { limits.append(item.limit) }
            var words = ["EVALSHA", sha, "\(items.count)"] + items.map(\.key) + [now.map { "\($0)" } ?? "", mode, "\(limits.count)"]
            for limit in limits {
                words += [
                    DecisionScript.code(limit.algorithm), "\(limit.limit)", "\(limit.windowNanos)", "\(limit.burst)",
                    "\(DecisionScript.reduction(limit))",
                ]
            }
            for item in items {
                words += ["\(limits.firstIndex(of: item.limit)! + 1)", "\(item.cost)", "\(item.role)"]
            }
            let reply = try connection.command(words)
            guard case .array(let values) = reply else { throw RedisError("unexpected reply \(reply)") }
            let numbers = values.map { value -> Int64 in
                switch value {
                case .integer(let number): number
                case .string(let text): Int64(String(decoding: text, as: UTF8.self)) ?? .min
                default: .min
                }
            }
            var decisions: [Decision] = []
            for index in items.indices {
                let at = index * 3
                decisions.append(Decision(allowed: numbers[at] == 1, remaining: numbers[at + 1], resetMillis: numbers[at + 2]))
            }
            return (decisions, mode == "each" ? true : numbers.last == 1)
        }
    }

    static let limits: [(String, Limit)] = {
        let odd: Int64 = 1_234_567_891  // a window no unit divides
        let specs: [(String, Algorithm, Int64, Int64, Int64?)] = [
            ("token 3/s", .tokenBucket, 3, 1_000 * ms, nil),
            ("token 10/min burst 20", .tokenBucket, 10, 60_000 * ms, 20),
            ("leaky 5/s", .leakyBucket, 5, 1_000 * ms, nil),
            ("token 1e9/ms", .tokenBucket, 1_000_000_000, ms, nil),
            ("token 1e9/year", .tokenBucket, 1_000_000_000, year, nil),
            ("token 7/year burst 3", .tokenBucket, 7, year, 3),
            ("token 3/odd", .tokenBucket, 3, odd, nil),
            ("fixed 5/s", .fixedWindow, 5, 1_000 * ms, nil),
            ("fixed 3/h", .fixedWindow, 3, 3_600_000 * ms, nil),
            ("fixed 1e9/year", .fixedWindow, 1_000_000_000, year, nil),
            ("fixed 4/odd", .fixedWindow, 4, odd, nil),
            ("counter 10/s", .slidingWindowCounter, 10, 1_000 * ms, nil),
            ("counter 7/min", .slidingWindowCounter, 7, 60_000 * ms, nil),
            ("counter 1e9/year", .slidingWindowCounter, 1_000_000_000, year, nil),
            ("counter 5/odd", .slidingWindowCounter, 5, odd, nil),
            ("log 5/s", .slidingWindowLog, 5, 1_000 * ms, nil),
            ("log 3/min", .slidingWindowLog, 3, 60_000 * ms, nil),
            ("log 10000/year", .slidingWindowLog, 10_000, year, nil),
            ("log 4/odd", .slidingWindowLog, 4, odd, nil),
        ]
        return specs.map { name, algorithm, limit, window, burst in
            (name, try! Limit(algorithm: algorithm, limit: limit, windowNanos: window, burst: burst))
        }
    }()

    /// A gap before the next request: none, a little, a slice of the window, or more than the window.
    static func gap(_ rng: inout SplitMix, window: Int64) -> Int64 {
        switch rng.next() % 6 {
        case 0: 0
        case 1: Int64(rng.next() % 1_000)
        case 2: Int64(rng.next() % UInt64(max(window / 50, 1)))
        case 3: Int64(rng.next() % UInt64(max(window / 3, 1)))
        case 4: Int64(rng.next() % UInt64(window))
        default: window + Int64(rng.next() % UInt64(window))
        }
    }

    /// Mostly 1; sometimes a peek, more than can ever fit, the whole capacity, or a random share of it.
    static func cost(_ rng: inout SplitMix, limit: Limit) -> Int64 {
        switch rng.next() % 8 {
        case 0: 0
        case 1: limit.capacity + 1
        case 2: limit.capacity
        case 3: Int64(rng.next() % UInt64(limit.capacity)) + 1
        default: 1
        }
    }

    @Test(arguments: limits)
    func eachRequestGetsTheLocalReply(_ name: String, _ limit: Limit) throws {
        let script = try Script()
        var rng = SplitMix(seed: name.utf8.reduce(14_695_981_039_346_656_037) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 })
        var now = Self.t0
        var local: [String: KeyState] = [:]
        var seen = (allowed: 0, denied: 0, never: 0)
        for step in 0..<300 {
            // Every fifth request comes at once after the one before, so that large limits are exhausted too.
            now += step % 5 == 0 ? 0 : Self.gap(&rng, window: limit.windowNanos)
            let key = "k\(rng.next() % 2)"
            let cost = Self.cost(&rng, limit: limit)
            var state = local[key]
            let expected = KeyState.check(&state, cost: cost, limit: limit, now: now)
            local[key] = state
            let got = try script.decide([.init(key: "\(name):\(key)", limit: limit, cost: cost)], now: now).decisions[0]
            #expect(got == expected, "\(name) step \(step): \(key) cost \(cost) at \(now)")
            if got != expected { return }
            if expected.allowed { seen.allowed += 1 } else if expected.resetMillis == Decision.never { seen.never += 1 } else { seen.denied += 1 }
        }
        // The sequence went through every kind of answer.
        #expect(seen.allowed > 20 && seen.denied > 5 && seen.never > 5, "\(name): \(seen)")
    }

    @Test func aKeyWhoseLimitChangedStartsAfreshAsLocally() throws {
        let script = try Script()
        let bucket = try Limit(algorithm: .tokenBucket, limit: 2, windowNanos: 1_000 * Self.ms)
        let window = try Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 1_000 * Self.ms)
        var state: KeyState?
        for (limit, cost) in [(bucket, 2), (window, 1), (bucket, 1), (window, 0)] as [(Limit, Int64)] {
            let expected = KeyState.check(&state, cost: cost, limit: limit, now: Self.t0)
            #expect(try script.decide([.init(key: "changing", limit: limit, cost: cost)], now: Self.t0).decisions[0] == expected)
        }
        // The same algorithm at another rate keeps the state: a year-long backlog under a fast limit.
        let yearly = try Limit(algorithm: .tokenBucket, limit: 1, windowNanos: Self.year, burst: 1)
        let fast = try Limit(algorithm: .tokenBucket, limit: 1_000_000_000, windowNanos: 1_000 * Self.ms)
        state = nil
        for (limit, cost) in [(yearly, 1), (fast, 0), (fast, 1), (fast, 2_000_000_000)] as [(Limit, Int64)] {
            let expected = KeyState.check(&state, cost: cost, limit: limit, now: Self.t0)
            #expect(try script.decide([.init(key: "rate", limit: limit, cost: cost)], now: Self.t0).decisions[0] == expected)
        }
    }

    /// A key exhausted under one limit and then checked under a smaller one (a per-request limit on a rule's
    /// key): Redis cuts the debt to one window of the new limit exactly as the local table does.
    @Test func aStateFromAnotherLimitOwesAtMostOneOfItsWindowsAsLocally() throws {
        let script = try Script()
        let pairs: [(Limit, Limit)] = [
            (try Limit(algorithm: .tokenBucket, limit: 1, windowNanos: Self.year), try Limit(algorithm: .tokenBucket, limit: 100, windowNanos: 60_000 * Self.ms)),
            (try Limit(algorithm: .fixedWindow, limit: 1000, windowNanos: 3_600_000 * Self.ms), try Limit(algorithm: .fixedWindow, limit: 10, windowNanos: 60_000 * Self.ms)),
            (try Limit(algorithm: .slidingWindowCounter, limit: 1000, windowNanos: 3_600_000 * Self.ms), try Limit(algorithm: .slidingWindowCounter, limit: 10, windowNanos: 60_000 * Self.ms)),
            (try Limit(algorithm: .slidingWindowLog, limit: 100, windowNanos: 3_600_000 * Self.ms), try Limit(algorithm: .slidingWindowLog, limit: 10, windowNanos: 60_000 * Self.ms)),
        ]
        for (index, (first, second)) in pairs.enumerated() {
            var state: KeyState?
            var now = Self.t0
            let steps: [(Limit, Int64, Int64)] = [
                (first, first.capacity, 0), (second, 1, 0), (second, 0, 0), (second, 1, 700 * Self.ms), (second, 1, 0),
                (second, 1, 61_000 * Self.ms), (second, 1, 0),
            ]
            for (step, (limit, cost, advance)) in steps.enumerated() {
                now += advance
                let expected = KeyState.check(&state, cost: cost, limit: limit, now: now)
                let got = try script.decide([.init(key: "changed:\(index)", limit: limit, cost: cost)], now: now).decisions[0]
                #expect(got == expected, "\(limit) step \(step)")
            }
        }
    }

    @Test func batchesAreAllOrNothingAsTheDecisionBatchIs() throws {
        let script = try Script()
        let shards = [LockedShard(), LockedShard()]
        let batch = DecisionBatch(shards: shards, router: ShardRouter(shardCount: 2))
        var rng = SplitMix(seed: 11)
        let limits = [
            try Limit(algorithm: .fixedWindow, limit: 3, windowNanos: 1_000 * Self.ms),
            try Limit(algorithm: .tokenBucket, limit: 4, windowNanos: 1_000 * Self.ms),
            try Limit(algorithm: .slidingWindowLog, limit: 2, windowNanos: 500 * Self.ms),
        ]
        var now = Self.t0
        for step in 0..<300 {
            now += Int64(rng.next() % UInt64(200 * Self.ms))
            let items = (0..<(1 + Int(rng.next() % 4))).map { _ in
                let index = Int(rng.next() % 3)
                return Script.Item(key: "b\(index)", limit: limits[index], cost: Int64(rng.next() % 3), role: Int(rng.next() % 3))
            }
            // Every fifth batch in "none" mode: tried, never applied (a descriptor outside it is over).
            let mode = step % 5 == 0 ? "none" : "all"
            let batchItems = items.map { item in
                DecisionBatch.Item(
                    key: Array(item.key.utf8), cost: item.cost, limit: item.limit, role: DecisionBatch.Role(rawValue: item.role)!)
            }
            let expected = batch.decide(batchItems, now: now) { mode == "all" && DecisionBatch.accepts(batchItems, $0) }
            let got = try script.decide(items, now: now, mode: mode)
            #expect(got.applied == expected.applied && got.decisions == expected.decisions, "step \(step): \(items.map { ($0.key, $0.cost, $0.role) })")
            if got.applied != expected.applied || got.decisions != expected.decisions { return }
        }
    }

    @Test func aBatchOfThousandsOfKeysAndAnEmptyOneAreAnswered() throws {
        let script = try Script()
        let limit = try Limit(algorithm: .fixedWindow, limit: 3, windowNanos: 1_000 * Self.ms)
        let many = (0..<2_500).map { Script.Item(key: "m\($0 % 1_200)", limit: limit, cost: 1) }
        let decisions = try script.decide(many, now: Self.t0).decisions
        // Keys repeat: the first two uses of each leave 2 then 1; the third (for m0 to m99) leaves 0.
        #expect(decisions.prefix(1_200).allSatisfy { $0.remaining == 2 })
        #expect(decisions.dropFirst(1_200).prefix(1_200).allSatisfy { $0.remaining == 1 })
        #expect(decisions.suffix(100).allSatisfy { $0.allowed && $0.remaining == 0 })
        #expect(try script.decide([], now: Self.t0).decisions.isEmpty)
    }

    @Test func aStateLivesInRedisUntilItIsFresh() throws {
        let script = try Script()
        let limit = try Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 10_000 * Self.ms)
        // Redis's own clock: three spent refill in 3 s.
        _ = try script.decide([.init(key: "ttl", limit: limit, cost: 3)], now: nil)
        let ttl = try script.redis.integer("PTTL ttl")
        #expect(ttl > 2_500 && ttl <= 3_000, "\(ttl) ms")
    }
}
