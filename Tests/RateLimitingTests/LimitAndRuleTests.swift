import RateLimiting
import Testing

@Suite("limits, durations, patterns and rule matching")
struct LimitAndRuleTests {
    @Test(arguments: [
        ("250ms", Int64(250_000_000)), ("1s", 1_000_000_000), ("15m", 900_000_000_000),
        ("1h", 3_600_000_000_000), ("1d", 86_400_000_000_000), ("007s", 7_000_000_000),
    ])
    func parsesDurations(text: String, nanos: Int64) {
        #expect(WindowDuration.parseNanos(text) == nanos)
        #expect(WindowDuration.parseNanos(WindowDuration.format(nanos)) == nanos)
    }

    @Test(arguments: ["", "1", "s", "0s", "-1s", "1.5s", "1 s", "1M", "1sec", "99999999999999999999d", "1s2"])
    func refusesBadDurations(text: String) {
        #expect(WindowDuration.parseNanos(text) == nil)
    }

    @Test func validatesLimits() {
        #expect(throws: LimitError.self) { try Limit(algorithm: .tokenBucket, limit: 0, windowNanos: 1_000_000_000) }
        #expect(throws: LimitError.self) { try Limit(algorithm: .tokenBucket, limit: 1, windowNanos: 999_999) }
        #expect(throws: LimitError.self) { try Limit(algorithm: .tokenBucket, limit: 1, windowNanos: 366 * 86_400_000_000_000) }
        #expect(throws: LimitError.self) { try Limit(algorithm: .slidingWindowLog, limit: 10_001, windowNanos: 1_000_000_000) }
        #expect(throws: LimitError.self) { try Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 1_000_000_000, burst: 9) }
        #expect(throws: LimitError.self) {
            try Limit(algorithm: .tokenBucket, limit: 1, windowNanos: 365 * 86_400_000_000_000, burst: 1_000)
        }
        let limit = try? Limit(algorithm: .slidingWindowLog, limit: 10_000, windowNanos: 1_000_000_000)
        #expect(limit?.capacity == 10_000)
        #expect(makeLimit(.leakyBucket, 5, "1s").burst == 1)
        #expect(makeLimit(.tokenBucket, 5, "1s").burst == 5)
    }

    @Test func patternsAreExactOrTrailingStarPrefixes() throws {
        #expect(try KeyPattern(parsing: "login:*") == .prefix("login:"))
        #expect(try KeyPattern(parsing: "*") == .prefix(""))
        #expect(try KeyPattern(parsing: "user:42") == .exact("user:42"))
        #expect(throws: LimitError.PatternError.self) { try KeyPattern(parsing: "lo*gin") }
        #expect(throws: LimitError.PatternError.self) { try KeyPattern(parsing: "") }
        #expect(throws: LimitError.PatternError.self) { try KeyPattern(parsing: "has space*") }
    }

    @Test func longestMatchWinsAndExactBeatsPrefix() throws {
        let limit = makeLimit(.tokenBucket, 1, "1s")
        let rules = try RuleSet([
            Rule(name: "all", pattern: .prefix(""), limit: limit),
            Rule(name: "api", pattern: .prefix("api:"), limit: limit),
            Rule(name: "api-v2", pattern: .prefix("api:v2:"), limit: limit),
            Rule(name: "exact", pattern: .exact("api:v2:"), limit: limit),
        ])
        #expect(rules.match("x")?.name == "all")
        #expect(rules.match("api:1")?.name == "api")
        #expect(rules.match("api:v2:9")?.name == "api-v2")
        #expect(rules.match("api:v2:")?.name == "exact")
        #expect(rules.match("api")?.name == "all")

        let narrow = try RuleSet([Rule(name: "login", pattern: .prefix("login:"), limit: limit)])
        #expect(narrow.match("other") == nil)
    }

    @Test func duplicateNamesAndPatternsAreRefused() {
        let limit = makeLimit(.tokenBucket, 1, "1s")
        #expect(throws: RuleSetError.self) {
            try RuleSet([Rule(name: "a", pattern: .prefix(""), limit: limit), Rule(name: "a", pattern: .exact("k"), limit: limit)])
        }
        #expect(throws: RuleSetError.self) {
            try RuleSet([Rule(name: "a", pattern: .exact("k"), limit: limit), Rule(name: "b", pattern: .exact("k"), limit: limit)])
        }
    }
}
