/// A named limit for the keys a pattern matches, as configured in a `[[rules]]` table.
public struct Rule: Sendable, Hashable {
    public let name: String
    public let pattern: KeyPattern
    public let limit: Limit

    public init(name: String, pattern: KeyPattern, limit: Limit) {
        self.name = name
        self.pattern = pattern
        self.limit = limit
    }

    /// The documented default when there is no configuration file: every key, 100 per minute, burst 100.
    public static let defaultRule: Rule = {
        // 100/1m with the default burst is within every bound Limit checks.
        let limit = try! Limit(algorithm: .tokenBucket, limit: 100, windowNanos: 60_000_000_000)
        return Rule(name: "default", pattern: .prefix(""), limit: limit)
    }()
}
