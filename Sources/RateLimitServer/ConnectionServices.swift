import RateLimiting
import ShardStore
import Synchronization
import WireProtocol

/// What every connection shares: the rules, the shard workers and the limits that protect the server.
/// Immutable (but for the ID counter, an atomic), so connections on every event loop read it without locks.
struct ConnectionServices: Sendable {
    let rules: RuleSet
    let router: ShardRouter
    let workers: [ShardWorker]
    let framer: LineFramer
    let respLimits: RESPDecoder
    /// Replies a connection may owe before the server stops reading from it (a client that pipelines
    /// without reading cannot make the server buffer without bound).
    let maxPendingReplies: Int
    let connectionIDs: ConnectionIDs
}

/// Hands out the connection IDs `HELLO` reports, as Redis's `CLIENT ID` does.
final class ConnectionIDs: Sendable {
    private let last = Atomic<Int>(0)

    func next() -> Int {
        last.add(1, ordering: .relaxed).newValue
    }
}
