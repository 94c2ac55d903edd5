import RateLimiting

/// Envoy rate limit rules in envoyproxy/ratelimit's YAML format: one tree of descriptors per domain.
public struct EnvoyRuleSet: Sendable {
    public let domains: [String: EnvoyDomain]

    public init(domains: [String: EnvoyDomain]) {
        self.domains = domains
    }

    public static let empty = EnvoyRuleSet(domains: [:])
}

/// One domain's descriptor tree.
public struct EnvoyDomain: Sendable {
    public let name: String
    public let descriptors: EnvoyDescriptorLevel
    /// Where it was loaded from, for messages.
    public let file: String
}

/// A `rate_limit` as configured.
public struct EnvoyLimit: Sendable, Hashable {
    /// `name`, returned in `current_limit.name` and what `replaces` refers to.
    public var name: String?
    public var requestsPerUnit: UInt32
    public var unit: EnvoyUnit
    public var unlimited: Bool
    /// Names of limits this one replaces when both apply to one request.
    public var replaces: [String]
    /// What decides: nil when `unlimited`, or when `requests_per_unit` is 0 (every request is over).
    public var limit: Limit?

    public init(
        name: String? = nil, requestsPerUnit: UInt32, unit: EnvoyUnit, unlimited: Bool = false,
        replaces: [String] = [], limit: Limit?
    ) {
        self.name = name
        self.requestsPerUnit = requestsPerUnit
        self.unit = unit
        self.unlimited = unlimited
        self.replaces = replaces
        self.limit = limit
    }

    /// A request's own `limit` override: `requests_per_unit` per `unit` in a fixed window, as
    /// envoyproxy/ratelimit counts it; nil when the numbers cannot make a limit (over 1,000,000,000).
    public static func override(requestsPerUnit: UInt32, unit: EnvoyUnit) -> EnvoyLimit? {
        guard requestsPerUnit > 0 else {
            return EnvoyLimit(requestsPerUnit: 0, unit: unit, limit: nil)
        }
        guard let limit = try? Limit(algorithm: .fixedWindow, limit: Int64(requestsPerUnit), windowNanos: unit.windowNanos)
        else { return nil }
        return EnvoyLimit(requestsPerUnit: requestsPerUnit, unit: unit, limit: limit)
    }
}

/// A descriptor entry of the configuration: `key`, optionally `value`, optionally a limit, and children.
public struct EnvoyDescriptorNode: Sendable {
    public let key: String
    /// "" for a node that matches any value of `key`.
    public let value: String
    public let rateLimit: EnvoyLimit?
    public let shadowMode: Bool
    public let quotaMode: Bool
    public let detailedMetric: Bool
    public let valueToMetric: Bool
    public let shareThreshold: Bool
    public let children: EnvoyDescriptorLevel
    /// The path from the domain, `domain.key_value.key`: the rule's name in metrics when it has no `name`.
    public let path: String
}

/// The nodes at one depth: exact `key`+`value` nodes, wildcard-value nodes in file order, and key-only
/// nodes.
public struct EnvoyDescriptorLevel: Sendable {
    struct KeyValue: Hashable, Sendable {
        let key: String
        let value: String
    }

    var exact: [KeyValue: EnvoyDescriptorNode] = [:]
    var wildcards: [(pattern: WildcardPattern, node: EnvoyDescriptorNode)] = []
    var keyOnly: [String: EnvoyDescriptorNode] = [:]

    public var isEmpty: Bool { exact.isEmpty && wildcards.isEmpty && keyOnly.isEmpty }

    /// envoyproxy/ratelimit's order: the exact value, then the first wildcard that matches, then the key
    /// alone. `viaWildcard` says which pattern matched, for `share_threshold`.
    func lookup(key: String, value: String) -> (node: EnvoyDescriptorNode, viaWildcard: String?)? {
        if let node = exact[KeyValue(key: key, value: value)] { return (node, nil) }
        for (pattern, node) in wildcards where node.key == key && pattern.matches(value) {
            return (node, node.value)
        }
        if let node = keyOnly[key] { return (node, nil) }
        return nil
    }
}

/// A value with `*`s, each matching any run of characters (none included).
struct WildcardPattern: Sendable {
    let segments: [Substring]

    init(_ value: String) {
        segments = value.split(separator: "*", omittingEmptySubsequences: false)
    }

    static func isWildcard(_ value: String) -> Bool { value.contains("*") }

    func matches(_ value: String) -> Bool {
        var rest = Substring(value)
        guard let first = segments.first, rest.hasPrefix(first) else { return false }
        rest = rest.dropFirst(first.count)
        let last = segments.count > 1 ? segments[segments.count - 1] : ""
        for segment in segments.dropFirst().dropLast() where !segment.isEmpty {
            guard let range = rest.range(of: segment) else { return false }
            rest = rest[range.upperBound...]
        }
        return segments.count > 1 ? rest.hasSuffix(last) : rest.isEmpty
    }
}

/// What a descriptor matched: the limit that applies to it, and how.
public struct EnvoyMatch: Sendable {
    public let limit: EnvoyLimit
    public let shadowMode: Bool
    public let quotaMode: Bool
    /// Entry positions whose value is replaced by the wildcard pattern in the state key
    /// (`share_threshold`: every value the pattern matches shares one counter).
    public let sharedPatterns: [Int: String]
    /// The name metrics count it under: the limit's `name`, else the node's path. Never a request's value.
    public let ruleName: String
}

extension EnvoyDomain {
    /// Walks the tree entry by entry, as envoyproxy/ratelimit does: a limit applies when every entry
    /// matched a node along one path and the node the last entry matched has a `rate_limit`. No
    /// backtracking: a level's choice is final.
    public func match(_ entries: [(key: String, value: String)]) -> EnvoyMatch? {
        var level = descriptors
        var shared: [Int: String] = [:]
        for (index, entry) in entries.enumerated() {
            guard let (node, pattern) = level.lookup(key: entry.key, value: entry.value) else { return nil }
            if let pattern, node.shareThreshold { shared[index] = pattern }
            if index == entries.count - 1 {
                guard let limit = node.rateLimit else { return nil }
                return EnvoyMatch(
                    limit: limit, shadowMode: node.shadowMode, quotaMode: node.quotaMode, sharedPatterns: shared,
                    ruleName: limit.name ?? node.path)
            }
            level = node.children
        }
        return nil
    }
}
