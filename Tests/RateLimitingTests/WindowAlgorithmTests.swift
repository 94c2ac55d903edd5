import RateLimiting
import TestSupport
import Testing

@Suite("fixed_window, sliding_window_log, sliding_window_counter")
struct WindowAlgorithmTests {
    @Test func fixedWindowIsAlignedToTheEpoch() {
        // t0 is on a second boundary: starting 200ms in, the window ends 800ms later.
        expectSteps(makeLimit(.fixedWindow, 3, "1s"), start: t0 + 200 * ms, [
            allow(0, 0, 3, 0),
            allow(0, 1, 2, 800),
            allow(10, 2, 0, 790),
            deny(10, 1, 0, 790),
            deny(10, 4, 0, -1),
            deny(799, 1, 0, 1),
            allow(800, 1, 2, 1000),
            allow(2900, 3, 0, 900),
        ])
    }

    @Test func slidingLogCountsEveryIntervalExactly() {
        expectSteps(makeLimit(.slidingWindowLog, 3, "1s"), [
            allow(0, 1, 2, 1000),
            allow(100, 1, 1, 1000),
            allow(200, 1, 0, 1000),
            deny(300, 1, 0, 700),
            deny(300, 4, 0, -1),
            allow(300, 0, 0, 900),
            allow(1000, 1, 0, 1000),
            deny(1050, 2, 0, 150),
            allow(1200, 2, 0, 1000),
            allow(5000, 0, 3, 0),
        ])
    }

    @Test func slidingLogNeverAdmitsMoreThanTheLimitInAnyWindow() {
        let limit = makeLimit(.slidingWindowLog, 50, "1s")
        var state: KeyState?
        var generator = SplitMix(seed: 42)
        var admitted: [(time: Int64, cost: Int64)] = []
        var now = t0
        for _ in 0..<20_000 {
            now += Int64(generator.next() % 3) * ms + Int64(generator.next() % 1000)
            let cost = Int64(generator.next() % 4)
            if KeyState.check(&state, cost: cost, limit: limit, now: now).allowed, cost > 0 {
                admitted.append((now, cost))
            }
        }
        var windowTotal: Int64 = 0
        var tail = 0
        for entry in admitted {
            windowTotal += entry.cost
            while admitted[tail].time <= entry.time - limit.windowNanos {
                windowTotal -= admitted[tail].cost
                tail += 1
            }
            #expect(windowTotal <= 50)
        }
        // And it is not trivially strict: the limit is reached.
        #expect(admitted.reduce(0) { $0 + $1.cost } > 20_000 * 50 / 1000 / 2)
    }

    @Test func slidingCounterWeighsThePreviousWindow() {
        expectSteps(makeLimit(.slidingWindowCounter, 10, "1s"), [
            allow(0, 10, 0, 2000),
            deny(500, 1, 0, 600),
            deny(500, 11, 0, -1),
            allow(1100, 1, 0, 1900),
            deny(1100, 1, 0, 100),
            allow(1200, 1, 0, 1800),
            allow(1200, 0, 0, 1800),
            allow(2500, 0, 9, 500),
            allow(3000, 0, 10, 0),
        ])
    }

    @Test func algorithmChangeStartsAfresh() {
        var state: KeyState?
        _ = KeyState.check(&state, cost: 5, limit: makeLimit(.fixedWindow, 5, "1m"), now: t0)
        let decision = KeyState.check(&state, cost: 1, limit: makeLimit(.tokenBucket, 5, "1m"), now: t0)
        #expect(decision == Decision(allowed: true, remaining: 4, resetMillis: 12_000))
    }

    @Test(arguments: Algorithm.allCases)
    func everyAlgorithmIsFreshOnceItsWindowHasPassed(algorithm: Algorithm) {
        let limit = makeLimit(algorithm, 5, "1s")
        var state: KeyState?
        _ = KeyState.check(&state, cost: 1, limit: limit, now: t0)
        #expect(state?.isFresh(now: t0, windowNanos: limit.windowNanos) == false)
        #expect(state?.isFresh(now: t0 + 2_000 * ms, windowNanos: limit.windowNanos) == true)
    }
}

@Suite("edge cases the review found")
struct EdgeCaseTests {
    @Test(arguments: Algorithm.allCases)
    func aPeekIsAllowedEvenOverALoweredLimit(algorithm: Algorithm) {
        var state: KeyState?
        let generous = makeLimit(algorithm, 1_000, "1h", burst: algorithm.usesBurst ? 1_000 : nil)
        _ = KeyState.check(&state, cost: 900, limit: generous, now: t0)
        let before = state
        let peek = KeyState.check(&state, cost: 0, limit: makeLimit(algorithm, 10, "1h"), now: t0)
        #expect(peek.allowed)
        #expect(peek.remaining <= 1)  // buckets keep time, not counts: 9 of 10 units of the new rate are spent
        #expect(state == before)
    }

    @Test func aBucketFasterThanTheClockStillCharges() {
        // Three units per nanosecond: the emission time rounds to nothing, yet every request must cost (at
        // least the clock's resolution, 1 ns), so a burst of 10 admits at most 5 requests of 2, not 100.
        let limit = makeLimit(.tokenBucket, 3_000_000, "1ms", burst: 10)
        var state: KeyState?
        var admitted = 0
        for _ in 0..<100 where KeyState.check(&state, cost: 2, limit: limit, now: t0).allowed { admitted += 1 }
        #expect(admitted >= 1 && admitted <= 5)
    }

    @Test func aWindowStoredAheadOfTheClockIsNotForgotten() {
        // As after restoring a snapshot written while the wall clock was a window ahead.
        for algorithm in [Algorithm.fixedWindow, .slidingWindowCounter, .slidingWindowLog] {
            let limit = makeLimit(algorithm, 5, "1s")
            var state: KeyState?
            _ = KeyState.check(&state, cost: 5, limit: limit, now: t0 + 1_500 * ms)
            let earlier = KeyState.check(&state, cost: 1, limit: limit, now: t0 + 200 * ms)
            #expect(!earlier.allowed, "\(algorithm)")
        }
    }
}
