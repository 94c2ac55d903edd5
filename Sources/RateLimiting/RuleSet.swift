/// The configured rules, compiled for lookup: an exact-key table first, then prefixes longest first, so the
/// most specific rule wins (an exact key beats a prefix of the same length).
public struct RuleSet: Sendable {
    public let rules: [Rule]
    private let exact: [String: Int]
    /// Prefix rules as (UTF-8 prefix, index into `rules`), longest prefix first.
    private let prefixes: [(prefix: [UInt8], rule: Int)]

    /// Builds the set; two rules with one name, or with one pattern, are refused since which one applies
    /// would be a guess.
    public init(_ rules: [Rule]) throws(RuleSetError) {
        var names: [String: Int] = [:]
        var patterns: [KeyPattern: Int] = [:]
        var exact: [String: Int] = [:]
        var prefixes: [(prefix: [UInt8], rule: Int)] = []
        for (index, rule) in rules.enumerated() {
            if let first = names[rule.name] {
                throw RuleSetError(ruleIndex: index, ruleName: rule.name, field: "name",
                                   message: "duplicate rule name (also rule \(first + 1))")
            }
            if let first = patterns[rule.pattern] {
                throw RuleSetError(ruleIndex: index, ruleName: rule.name, field: "match",
                                   message: "\"\(rule.pattern.text)\" is already matched by rule \"\(rules[first].name)\"")
            }
            names[rule.name] = index
            patterns[rule.pattern] = index
            switch rule.pattern {
            case .exact(let key): exact[key] = index
            case .prefix(let prefix): prefixes.append((Array(prefix.utf8), index))
            }
        }
        prefixes.sort { $0.prefix.count > $1.prefix.count }
        self.rules = rules
        self.exact = exact
        self.prefixes = prefixes
    }

    /// The rule for `key`, or nil when none matches (the caller answers `no_rule`).
    public func match(_ key: String) -> Rule? {
        if let index = exact[key] { return rules[index] }
        var key = key
        return key.withUTF8 { bytes in
            for candidate in prefixes where bytes.starts(with: candidate.prefix) {
                return rules[candidate.rule]
            }
            return nil
        }
    }

    /// The documented defaults: the single rule `default`.
    // One rule cannot collide with itself.
    public static let defaults: RuleSet = try! RuleSet([Rule.defaultRule])
}

/// A rule set that cannot be built, naming the rule (1-based, as a user counts `[[rules]]` tables) and field.
public struct RuleSetError: Error, Sendable, Hashable {
    public let ruleIndex: Int
    public let ruleName: String
    public let field: String
    public let message: String
}
