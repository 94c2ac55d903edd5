import RateLimiting
import Testing

@Suite("token_bucket and leaky_bucket (GCRA)")
struct GCRATests {
    /// redis-cell's `it_rate_limits` vectors (src/cell/mod.rs): max_burst 4 (a limit of 5) at one per second,
    /// which is `limit = 1, window = 1s, burst = 5` here, in milliseconds.
    @Test func reproducesRedisCellVectors() {
        expectSteps(makeLimit(.leakyBucket, 1, "1s", burst: 5), [
            deny(0, 6, 5, -1),  // a request larger than the burst can never pass
            allow(0, 1, 4, 1000),
            allow(0, 1, 3, 2000),
            allow(0, 1, 2, 3000),
            allow(0, 1, 1, 4000),
            allow(0, 1, 0, 5000),
            deny(0, 1, 0, 1000),
            allow(3000, 1, 2, 3000),
            allow(3100, 1, 1, 3900),
            allow(4000, 1, 1, 4000),
            allow(8000, 1, 4, 1000),
            allow(9500, 1, 4, 1000),
            allow(9500, 0, 4, 1000),  // cost 0 peeks
            allow(9500, 2, 2, 3000),
            deny(9500, 5, 2, 3000),
        ])
    }

    @Test func tokenBucketStartsFullAndRefillsContinuously() {
        expectSteps(makeLimit(.tokenBucket, 10, "1s"), [
            allow(0, 1, 9, 100),
            allow(0, 8, 1, 900),
            allow(0, 1, 0, 1000),
            deny(0, 1, 0, 100),
            deny(50, 1, 0, 50),
            allow(100, 1, 0, 1000),
            deny(100, 11, 0, -1),
            allow(1100, 0, 10, 0),
            allow(1100, 10, 0, 1000),
        ])
    }

    @Test func fractionalRefillIsExact() {
        // 3 per second: one token every 333.33...ms; the fourth is refused until the fraction is complete.
        expectSteps(makeLimit(.tokenBucket, 3, "1s"), [
            allow(0, 3, 0, 1000),
            deny(333, 1, 0, 1),
            allow(334, 1, 0, 1000),
        ])
    }

    @Test func pollingEveryFewMillisecondsAdmitsTheFullRate() {
        // A limiter that rounds refill down on every poll would admit almost nothing here.
        let limit = makeLimit(.tokenBucket, 7, "1s", burst: 1)
        var state: KeyState?
        var admitted = 0
        var at: Int64 = 0
        while at < 10_000 {
            if KeyState.check(&state, cost: 1, limit: limit, now: t0 + at * ms).allowed { admitted += 1 }
            at += 3
        }
        // The initial token plus one every 1/7 s up to the last poll at 9999 ms.
        #expect(admitted == 1 + Int(9_999 * 7 / 1000))
    }

    @Test func leakyBucketDefaultsToOneAtATime() {
        expectSteps(makeLimit(.leakyBucket, 5, "1s"), [
            allow(0, 1, 0, 200),
            deny(0, 1, 0, 200),
            deny(0, 2, 0, -1),
            deny(150, 1, 0, 50),
            allow(200, 1, 0, 200),
        ])
    }

    @Test func deniedRequestsConsumeNothing() {
        let limit = makeLimit(.tokenBucket, 2, "1s")
        var state: KeyState?
        _ = KeyState.check(&state, cost: 2, limit: limit, now: t0)
        let before = state
        for _ in 0..<100 { _ = KeyState.check(&state, cost: 1, limit: limit, now: t0) }
        #expect(state == before)
    }

    @Test func aDenialOrPeekOfANewKeyStoresNothing() {
        let limit = makeLimit(.tokenBucket, 2, "1s")
        var state: KeyState?
        _ = KeyState.check(&state, cost: 0, limit: limit, now: t0)
        _ = KeyState.check(&state, cost: 3, limit: limit, now: t0)
        #expect(state == nil)
    }
}
