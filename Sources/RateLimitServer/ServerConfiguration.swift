import RateLimiting
import ShardStore
import WireProtocol

/// Everything the server needs to run, already validated.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Shards, and event loops serving connections: one of each per core by default.
    public var shards: Int
    public var rules: RuleSet
    public var maxLineLength: Int
    public var clock: any DecisionClock

    public init(
        host: String = "127.0.0.1",
        port: Int = 7283,
        shards: Int,
        rules: RuleSet = .defaults,
        maxLineLength: Int = LineFramer.defaultMaxLineLength,
        clock: any DecisionClock = SystemDecisionClock()
    ) {
        self.host = host
        self.port = port
        self.shards = shards
        self.rules = rules
        self.maxLineLength = maxLineLength
        self.clock = clock
    }
}
