@testable import EnvoyRules
import RateLimiting
import TestSupport
import Testing

@Suite("Envoy rules: envoyproxy/ratelimit's YAML")
struct EnvoyRulesTests {
    func parse(_ yaml: String) throws(EnvoyConfigError) -> EnvoyDomain {
        try EnvoyRulesLoader.parse(yaml: yaml, file: "test.yaml")
    }

    func refusal(_ yaml: String) -> String {
        do {
            _ = try parse(yaml)
            return "accepted"
        } catch {
            return error.description
        }
    }

    @Test func envoyproxyRatelimitsReadmeExampleTwoLoadsAndMatchesAsThere() throws {
        let domain = try parse(envoyproxyReadmeExample)
        let marketing = try #require(domain.match([("message_type", "marketing"), ("to_number", "2061111111")]))
        #expect(marketing.limit.requestsPerUnit == 5)
        #expect(marketing.limit.unit == .day)
        #expect(marketing.limit.limit == (try Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 86_400_000_000_000)))
        #expect(marketing.ruleName == "messaging.message_type_marketing.to_number")
        #expect(domain.match([("to_number", "2061111111")])?.limit.requestsPerUnit == 100)
        // An entry that matches nothing stops the walk: no limit.
        #expect(domain.match([("message_type", "other"), ("to_number", "1")]) == nil)
        // A limit applies only where the last entry lands.
        #expect(domain.match([("message_type", "marketing")]) == nil)
    }

    @Test func exactThenWildcardInFileOrderThenKeyAlone() throws {
        let domain = try parse("""
            domain: d
            descriptors:
              - key: path
                rate_limit: {unit: minute, requests_per_unit: 1, name: any}
              - key: path
                value: /api/*/action
                rate_limit: {unit: minute, requests_per_unit: 2, name: first-wildcard}
              - key: path
                value: /api/*
                rate_limit: {unit: minute, requests_per_unit: 3, name: second-wildcard}
              - key: path
                value: /api/v1/action
                rate_limit: {unit: Minute, requests_per_unit: 4, name: exact}
            """)
        #expect(domain.match([("path", "/api/v1/action")])?.ruleName == "exact")
        #expect(domain.match([("path", "/api/v2/action")])?.ruleName == "first-wildcard")
        #expect(domain.match([("path", "/api/v2/other")])?.ruleName == "second-wildcard")
        #expect(domain.match([("path", "/health")])?.ruleName == "any")
        #expect(domain.match([("other", "/api/v1/action")]) == nil)
    }

    @Test func shareThresholdKeysEveryMatchingValueByThePattern() throws {
        let domain = try parse("""
            domain: example11
            descriptors:
              - key: files
                value: files/*
                share_threshold: true
                rate_limit:
                  unit: hour
                  requests_per_unit: 10
              - key: files_no_share
                value: files_no_share/*
                share_threshold: false
                rate_limit:
                  unit: hour
                  requests_per_unit: 10
            """)
        let shared = try #require(domain.match([("files", "files/a.pdf")]))
        #expect(shared.sharedPatterns == [0: "files/*"])
        let a = DescriptorKey.make(domain: "example11", unit: .hour, entries: [("files", "files/a.pdf")], sharedPatterns: shared.sharedPatterns)
        let b = DescriptorKey.make(domain: "example11", unit: .hour, entries: [("files", "files/b.csv")], sharedPatterns: shared.sharedPatterns)
        #expect(a == b)
        #expect(String(decoding: a, as: UTF8.self) == "envoy/example11/hour/files=files%2F*")
        #expect(domain.match([("files_no_share", "files_no_share/x")])?.sharedPatterns == [:])
    }

    @Test func stateKeysNeverCollideAndStayWithinTheKeyLimit() {
        func key(_ domain: String, _ entries: [(String, String)]) -> String {
            String(decoding: DescriptorKey.make(domain: domain, unit: .second, entries: entries.map { (key: $0.0, value: $0.1) }), as: UTF8.self)
        }
        // What a naive join would confuse.
        #expect(key("d", [("a", "b/c=d")]) != key("d", [("a", "b"), ("c", "d")]))
        #expect(key("d", [("a_b", "c")]) != key("d", [("a", "b_c")]))
        #expect(key("d/a", [("b", "c")]) != key("d", [("a/b", "c")]))
        #expect(key("d", [("k", "x y\n")]) == "envoy/d/second/k=x%20y%0A")
        #expect(key("d", [("k", "é")]) == "envoy/d/second/k=%C3%A9")
        let long = key("d", [("k", String(repeating: "v", count: 300))])
        #expect(long.hasPrefix("envoy#") && long.utf8.count == 49, "\(long)")
        #expect(long != key("d", [("k", String(repeating: "v", count: 301))]))
        #expect(DescriptorKey.make(domain: "d", unit: .minute, entries: [("k", "v")]) != DescriptorKey.make(domain: "d", unit: .hour, entries: [("k", "v")]))
    }

    @Test func theTwoExtensionsChooseTheAlgorithmAndBurst() throws {
        let domain = try parse("""
            domain: d
            descriptors:
              - key: user
                rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 20}
              - key: ip
                rate_limit: {unit: hour, requests_per_unit: 0}
              - key: ldap
                rate_limit: {unlimited: true}
            """)
        #expect(domain.match([("user", "1")])?.limit.limit == (try Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 1_000_000_000, burst: 20)))
        let blocked = try #require(domain.match([("ip", "1.2.3.4")]))
        #expect(blocked.limit.limit == nil && blocked.limit.requestsPerUnit == 0 && !blocked.limit.unlimited)
        #expect(domain.match([("ldap", "x")])?.limit.unlimited == true)
    }

    @Test func mistakesNameTheFileTheLineTheDescriptorAndTheField() {
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n")
            == "test.yaml:5: descriptor d.a: invalid rate limit unit 'fortnight' (one of second, minute, hour, day, week, month, year)")
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    ratelimit:\n      unit: second\n").hasPrefix(
            "test.yaml:4: descriptor d: unknown field 'ratelimit' in a descriptor (allowed: "))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    value: b\n    rate_limit: {unit: second, requests_per_unit: 1, algorithm: magic}\n")
            .hasPrefix("test.yaml:5: descriptor d.a_b: unknown algorithm 'magic' (one of token_bucket, "))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    unit: second\n").hasPrefix("test.yaml:4: descriptor d: unknown field 'unit'"))
        #expect(refusal("domain: \"\"\n").hasPrefix("test.yaml:1: 'domain' must be a non-empty string"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n  - key: a\n").contains("descriptor d.a: duplicate descriptor"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, unlimited: true}\n")
            .contains("an unlimited rate_limit takes no unit"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    value: b\n    share_threshold: true\n")
            .contains("'share_threshold' applies only to a value with a '*' wildcard"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, name: x, replaces: [{name: x}]}\n")
            .contains("cannot replace itself"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 2000000000}\n")
            .contains("'requests_per_unit' must be an integer from 1 to 1000000000"))
        #expect(refusal("domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1.5}\n")
            .contains("'requests_per_unit' must be an integer from 0 to 4294967295"))
        #expect(refusal("domain: d\n  bad: [") .hasPrefix("test.yaml: not valid YAML"))
    }
}

@Suite("Envoy rules: bytes, wildcards, bounds")
struct EnvoyRulesBytesTests {
    @Test func valuesCompareAsBytesAsEnvoyproxyRatelimitDoes() throws {
        let domain = try EnvoyRulesLoader.parse(yaml: """
            domain: d
            descriptors:
              - key: name
                value: "\u{E9}"
                rate_limit: {unit: day, requests_per_unit: 1, name: precomposed}
              - key: name
                value: "a*"
                rate_limit: {unit: day, requests_per_unit: 2, name: wild}
            """, file: "t.yaml")
        #expect(domain.match([("name", "\u{E9}")])?.ruleName == "precomposed")
        // The decomposed spelling is other bytes: not the exact node (which would give it a second quota
        // under its own state key).
        #expect(domain.match([("name", "e\u{301}")]) == nil)
        #expect(domain.match([("name", "a\u{301}")])?.ruleName == "wild")
    }

    @Test func wildcardsMatchAnyRunOfBytes() throws {
        func matches(_ pattern: String, _ value: String) -> Bool {
            WildcardPattern(pattern).matches(Array(value.utf8))
        }
        #expect(matches("a*", "a") && matches("a*", "abc") && !matches("a*", "ba"))
        #expect(matches("*b", "b") && matches("*b", "ab") && !matches("*b", "ba"))
        #expect(matches("a*b*c", "abc") && matches("a*b*c", "aXbYc") && !matches("a*b*c", "acb"))
        #expect(matches("*", "") && matches("**", "x"))
        #expect(!matches("ab*ba", "aba") && !matches("a*a", "a") && matches("a*b*b", "abb"))
    }

    @Test func anAliasBombIsRefused() {
        // Each level uses the one below twice, under different keys: 2^20 descriptors in 22 lines.
        var lines = ["domain: d", "descriptors:", "  - &a0 {key: k0}"]
        for level in 1...20 {
            let below = "*a\(level - 1)"
            lines.append("  - &a\(level) {key: k\(level), descriptors: [{key: x, descriptors: [\(below)]}, {key: y, descriptors: [\(below)]}]}")
        }
        do {
            _ = try EnvoyRulesLoader.parse(yaml: lines.joined(separator: "\n"), file: "bomb.yaml")
            Issue.record("accepted a file of 2^20 descriptors")
        } catch {
            #expect(error.message.contains("more than 100000 descriptors in one file"), "\(error)")
        }
    }
}
