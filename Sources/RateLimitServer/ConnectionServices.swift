import RateLimiting
import ShardStore
import WireProtocol

/// What every connection shares: the rules, the shard workers and the limits that protect the server.
/// Immutable, so connections on every event loop read it without synchronisation.
struct ConnectionServices: Sendable {
    let rules: RuleSet
    let router: ShardRouter
    let workers: [ShardWorker]
    let framer: LineFramer
    /// Replies a connection may owe before the server stops reading from it (a client that pipelines
    /// without reading cannot make the server buffer without bound).
    let maxPendingReplies: Int
}
