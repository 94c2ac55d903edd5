import RateLimiting
import Testing

/// A key checked against one limit and then another (a per-request limit on a rule's key, an edited rule):
/// the state never owes the second limit more than one of its own windows.
@Suite("state under a changed limit")
struct LimitChangeTests {
    /// On an hour boundary of the epoch (so on a minute's too): every window here starts at it.
    let hour = t0 - 800_000 * ms

    /// `steps` under `first`, then `then` under `second`, on one key's state.
    func run(_ first: Limit, _ steps: [Step], then second: Limit, _ then: [Step], sourceLocation: SourceLocation = #_sourceLocation) {
        var state: KeyState?
        for (limit, list) in [(first, steps), (second, then)] {
            for step in list {
                let decision = KeyState.check(&state, cost: step.cost, limit: limit, now: hour + step.atMillis * ms)
                let expected = Decision(allowed: step.allowed, remaining: step.remaining, resetMillis: step.resetMillis)
                #expect(decision == expected, "\(step.testDescription) under \(limit)", sourceLocation: sourceLocation)
            }
        }
    }

    /// The case: `CHECK user:9 1 1/365d` left a year of debt; the rule's 100/1m now sees an empty
    /// bucket that lets one request through 600 ms later, not a year later.
    @Test func aBucketOwesAtMostAnEmptyBucketOfTheNewLimit() {
        run(makeLimit(.tokenBucket, 1, "365d"), [allow(0, 1, 0, 31_536_000_000)],
            then: makeLimit(.tokenBucket, 100, "1m"), [
                deny(0, 1, 0, 600),
                allow(600, 1, 0, 60_000),
                deny(600, 1, 0, 600),
            ])
    }

    @Test func aFixedWindowCountsAtMostTheNewLimit() {
        run(makeLimit(.fixedWindow, 1000, "1h"), [allow(0, 1000, 0, 3_600_000)],
            then: makeLimit(.fixedWindow, 10, "1m"), [
                deny(1000, 1, 0, 59_000),
                allow(60_000, 1, 9, 60_000),
            ])
    }

    @Test func aSlidingCounterCountsAtMostTheNewLimit() {
        run(makeLimit(.slidingWindowCounter, 1000, "1h"), [allow(0, 1000, 0, 7_200_000)],
            then: makeLimit(.slidingWindowCounter, 10, "1m"), [
                deny(1000, 1, 0, 59_000 + 6_000),
                // One window on, the capped count fades: a tenth of the window later there is room for one.
                allow(66_000, 1, 0, 114_000),
            ])
    }

    @Test func aSlidingLogNeverShowsANegativeRemainder() {
        run(makeLimit(.slidingWindowLog, 100, "1h"), [allow(0, 100, 0, 3_600_000)],
            then: makeLimit(.slidingWindowLog, 10, "1m"), [
                deny(1000, 1, 0, 59_000),
                allow(60_000, 1, 9, 60_000),
            ])
    }

    @Test func anotherAlgorithmStartsAfresh() {
        run(makeLimit(.tokenBucket, 1, "365d"), [allow(0, 1, 0, 31_536_000_000)],
            then: makeLimit(.fixedWindow, 10, "1m"), [allow(0, 1, 9, 60_000)])
    }
}
