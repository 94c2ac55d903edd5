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
    /// Keys and values compare as bytes, as envoyproxy/ratelimit compares them: Swift's `String` equality
    /// would take canonically equivalent spellings ("é" and "e" + U+0301) as equal, while the state key
    /// keeps the bytes, so alternating spellings would get one quota each.
    struct KeyValue: Hashable, Sendable {
        let key: [UInt8]
        let value: [UInt8]
    }

    var exact: [KeyValue: EnvoyDescriptorNode] = [:]
    var wildcards: [(key: [UInt8], pattern: WildcardPattern, node: EnvoyDescriptorNode)] = []
    var keyOnly: [[UInt8]: EnvoyDescriptorNode] = [:]

    public var isEmpty: Bool { exact.isEmpty && wildcards.isEmpty && keyOnly.isEmpty }

    /// envoyproxy/ratelimit's order: the exact value, then the first wildcard that matches, then the key
    /// alone. `viaWildcard` says which pattern matched, for `share_threshold`.
    func lookup(key: String, value: String) -> (node: EnvoyDescriptorNode, viaWildcard: String?)? {
        let keyBytes = Array(key.utf8)
        let valueBytes = Array(value.utf8)
        if let node = exact[KeyValue(key: keyBytes, value: valueBytes)] { return (node, nil) }
        for (wildcardKey, pattern, node) in wildcards where wildcardKey == keyBytes && pattern.matches(valueBytes) {
            return (node, node.value)
        }
        if let node = keyOnly[keyBytes] { return (node, nil) }
        return nil
    }
}

/// A value with `*`s, each matching any run of bytes (none included).
struct WildcardPattern: Sendable {
    let segments: [[UInt8]]

    init(_ value: String) {
        segments = Array(value.utf8).split(separator: UInt8(ascii: "*"), omittingEmptySubsequences: false).map(Array.init)
    }

    static func isWildcard(_ value: String) -> Bool { value.utf8.contains(UInt8(ascii: "*")) }

    /// The leftmost match of each middle piece, then the last piece at the very end of what is left.
    func matches(_ value: [UInt8]) -> Bool {
        guard let first = segments.first, value.starts(with: first) else { return false }
        var start = first.count
        for segment in segments.dropFirst().dropLast() where !segment.isEmpty {
            guard let found = Self.find(segment, in: value, from: start) else { return false }
            start = found + segment.count
        }
        guard segments.count > 1 else { return start == value.count }
        let last = segments[segments.count - 1]
        return value.count - start >= last.count && value[(value.count - last.count)...].elementsEqual(last)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count - start >= needle.count else { return nil }
        for position in start...(haystack.count - needle.count)
        where haystack[position..<(position + needle.count)].elementsEqual(needle) {
            return position
        }
        return nil
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
