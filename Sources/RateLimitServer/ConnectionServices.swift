import RateLimiting
import ShardStore
import Synchronization
import WireProtocol

/// What every connection shares: the rules, the shards and the limits that protect the server. Immutable
/// (but for the ID counter, an atomic, and the shards, each behind its own lock).
struct ConnectionServices: Sendable {
    let rules: RuleSet
    let router: ShardRouter
    let shards: [LockedShard]
    let clock: any DecisionClock
    let framer: LineFramer
    let respLimits: RESPDecoder
    let connectionIDs: ConnectionIDs
}

/// Hands out the connection IDs `HELLO` reports, as Redis's `CLIENT ID` does.
final class ConnectionIDs: Sendable {
    private let last = Atomic<Int>(0)

    func next() -> Int {
        last.add(1, ordering: .relaxed).newValue
    }
}
