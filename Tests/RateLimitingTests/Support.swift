import RateLimiting
import Testing

/// An arbitrary instant on a second boundary, so window alignment in tests is easy to read.
let t0: Int64 = 1_700_000_000_000_000_000
let ms: Int64 = 1_000_000

/// One step of a table-driven algorithm test: at `t0 + atMillis`, spend `cost`, expect this reply.
struct Step: CustomTestStringConvertible {
    var atMillis: Int64
    var cost: Int64
    var allowed: Bool
    var remaining: Int64
    var resetMillis: Int64

    var testDescription: String {
        "+\(atMillis)ms cost \(cost) → \(allowed ? "ALLOW" : "DENY") \(remaining) \(resetMillis)"
    }
}

func allow(_ at: Int64, _ cost: Int64, _ remaining: Int64, _ reset: Int64) -> Step {
    Step(atMillis: at, cost: cost, allowed: true, remaining: remaining, resetMillis: reset)
}

func deny(_ at: Int64, _ cost: Int64, _ remaining: Int64, _ reset: Int64) -> Step {
    Step(atMillis: at, cost: cost, allowed: false, remaining: remaining, resetMillis: reset)
}

/// Runs `steps` in order against one key's state and checks every decision.
func expectSteps(_ limit: Limit, start: Int64 = t0, _ steps: [Step], sourceLocation: SourceLocation = #_sourceLocation) {
    var state: KeyState?
    for (index, step) in steps.enumerated() {
        let decision = KeyState.check(&state, cost: step.cost, limit: limit, now: start + step.atMillis * ms)
        let expected = Decision(allowed: step.allowed, remaining: step.remaining, resetMillis: step.resetMillis)
        #expect(decision == expected, "step \(index): \(step.testDescription)", sourceLocation: sourceLocation)
    }
}

func makeLimit(_ algorithm: Algorithm, _ limit: Int64, _ window: String, burst: Int64? = nil) -> Limit {
    try! Limit(algorithm: algorithm, limit: limit, windowNanos: WindowDuration.parseNanos(window)!, burst: burst)
}
