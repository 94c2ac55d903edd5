import RateLimiting
import ShardStore
import WireProtocol

/// Everything the server needs to run, already validated.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Shard workers, each on its own event loop; connections are spread over the same loops.
    public var shards: Int
    public var rules: RuleSet
    public var maxLineLength: Int
    public var maxPendingRepliesPerConnection: Int
    public var clock: any DecisionClock

    public init(
        host: String = "127.0.0.1",
        port: Int = 7283,
        shards: Int,
        rules: RuleSet = .defaults,
        maxLineLength: Int = LineFramer.defaultMaxLineLength,
        maxPendingRepliesPerConnection: Int = 65_536,
        clock: any DecisionClock = SystemDecisionClock()
    ) {
        self.host = host
        self.port = port
        self.shards = shards
        self.rules = rules
        self.maxLineLength = maxLineLength
        self.maxPendingRepliesPerConnection = maxPendingRepliesPerConnection
        self.clock = clock
    }
}
