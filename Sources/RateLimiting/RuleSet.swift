/// The configured rules, compiled for lookup: an exact-key table first, then prefixes longest first, so the
/// most specific rule wins (an exact key beats a prefix of the same length).
public struct RuleSet: Sendable {
    public let rules: [Rule]
    /// Exact-key rules by the hash of their key: (key bytes, index into `rules`). Keyed by hash so that a
    /// lookup needs no `String` or array made from the request's bytes.
    private let exact: [Int: [(key: [UInt8], rule: Int)]]
    /// Prefix rules as (UTF-8 prefix, index into `rules`), longest prefix first.
    private let prefixes: [(prefix: [UInt8], rule: Int)]

    /// Builds the set; two rules with one name, or with one pattern, are refused since which one applies
    /// would be a guess.
    public init(_ rules: [Rule]) throws(RuleSetError) {
        var names: [String: Int] = [:]
        var patterns: [KeyPattern: Int] = [:]
        var exact: [Int: [(key: [UInt8], rule: Int)]] = [:]
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
            case .exact(let key):
                let bytes = Array(key.utf8)
                exact[bytes.withUnsafeBytes(RuleSet.hash), default: []].append((bytes, index))
            case .prefix(let prefix): prefixes.append((Array(prefix.utf8), index))
            }
        }
        prefixes.sort { $0.prefix.count > $1.prefix.count }
        self.rules = rules
        self.exact = exact
        self.prefixes = prefixes
    }

    /// The rule for `key`, or nil when none matches (the caller answers `no_rule`).
    public func match(_ key: UnsafeRawBufferPointer) -> Rule? {
        ruleIndex(for: key).map { rules[$0] }
    }

    /// The limit of the rule for `key` and the rule's index in `rules`: the request path's form of `match`,
    /// which copies no `Rule` (and so retains none of its strings).
    public func indexedLimit(for key: UnsafeRawBufferPointer) -> (index: Int, limit: Limit)? {
        ruleIndex(for: key).map { ($0, rules[$0].limit) }
    }

    private func ruleIndex(for key: UnsafeRawBufferPointer) -> Int? {
        if !exact.isEmpty, let candidates = exact[RuleSet.hash(key)] {
            for candidate in candidates where candidate.key.elementsEqual(key) {
                return candidate.rule
            }
        }
        for candidate in prefixes where key.starts(with: candidate.prefix) {
            return candidate.rule
        }
        return nil
    }

    public func match(_ key: String) -> Rule? {
        var key = key
        return key.withUTF8 { match(UnsafeRawBufferPointer($0)) }
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: bytes)
        return hasher.finalize()
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
