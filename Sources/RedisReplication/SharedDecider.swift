import DaemonConfig
import Logging
import NIOCore
import NIOPosix
import RateLimiting
import ShardStore
import Synchronization

/// Shared mode: every CHECK and RESET is decided in Redis, by `DecisionScript`, so daemons that share a
/// Redis enforce one limit together. Each event loop talks to Redis itself (`SharedLoop`): a request is
/// sent, with whatever else its loop's connections asked in the same turn, on the loop's own connection to
/// the key's node, and answered on the same loop when Redis replies. The url names one server or any node
/// of a Redis Cluster.
///
/// When Redis cannot answer within `timeout` (down, frozen, refusing), a request is decided by `onError`:
/// from this daemon's own state (`local`), or allowed, or denied; an outage is logged when it starts and
/// when it ends, and Redis is tried again with capped back-off. A script Redis has forgotten (`NOSCRIPT`:
/// restarted, `SCRIPT FLUSH`, a failover) is loaded again and the call repeated, unseen by clients.
public final class SharedDecider: Decider {
    public enum OnError: String, Sendable, CaseIterable {
        case local, allow, deny
    }

    public struct Settings: Sendable {
        public var endpoint: RedisEndpoint
        public var keyPrefix: String
        public var timeoutMillis: Int
        public var onError: OnError

        public init(endpoint: RedisEndpoint, keyPrefix: String, timeoutMillis: Int, onError: OnError) {
            self.endpoint = endpoint
            self.keyPrefix = keyPrefix
            self.timeoutMillis = timeoutMillis
            self.onError = onError
        }
    }

    /// Keys per script call: enough to amortise a call, few enough that Redis is never held long by one.
    public static let maxKeysPerCall = 256

    public let settings: Settings
    private let context: SharedContext
    /// One per event loop of the server, found by the loop a request arrives on.
    private let loops: [ObjectIdentifier: SharedLoop]
    private let firstLoop: SharedLoop
    private let stopping = Atomic<Bool>(false)

    public init(
        settings: Settings, shards: [LockedShard], loops group: MultiThreadedEventLoopGroup, clock: any DecisionClock,
        logger: Logger
    ) {
        self.settings = settings
        let context = SharedContext(settings: settings, local: LocalDecider(shards: shards), clock: clock, logger: logger)
        self.context = context
        let shared = group.makeIterator().map { SharedLoop(loop: $0, context: context) }
        loops = Dictionary(uniqueKeysWithValues: shared.map { (ObjectIdentifier($0.loop), $0) })
        firstLoop = shared[0]
    }

    /// Connects every loop to Redis (and learns whether it is a cluster), so that the first requests need
    /// not wait for it.
    public func start() {
        for shared in loops.values {
            shared.loop.execute { shared.start() }
        }
    }

    /// Stops every loop's Redis work (the server calls it once its connections have gone, before its event
    /// loops stop): what still waits is decided by `on_error`, and the connections to Redis close.
    public func stop() async {
        stopping.store(true, ordering: .relaxed)
        for shared in loops.values {
            try? await shared.loop.submit { shared.stop() }.get()
        }
    }

    public func run(
        _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
        ticket: UInt64, waiter: any DecisionWaiter
    ) -> ShardResult? {
        switch operation {
        case .check(let cost, let limit):
            if cost > 0, let denial = context.denials.denial(key: key, hash: hash, cost: cost, limit: limit, now: now) {
                context.local.count(denial, hash: hash, slot: slot)
                return .decision(denial)
            }
        case .reset:
            context.denials.forget(hash: hash)
        }
        // Stopped (the group is going down): nothing would answer later, so decide now.
        guard !stopping.load(ordering: .relaxed) else {
            return context.local.run(operation, key: key, hash: hash, now: now, slot: slot, ticket: ticket, waiter: waiter)
        }
        let request = Request(
            operation: operation, stateKey: Request.stateKey(key, prefix: context.keyPrefix),
            prefixLength: context.keyPrefix.count, hash: hash, ruleSlot: slot, ticket: ticket, waiter: waiter,
            queuedAt: context.clock.nanosecondsNow())
        enqueue(.request(request))
        return nil
    }

    public func decideAll(
        _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64,
        later: @escaping @Sendable (BatchOutcome) -> Void
    ) -> BatchOutcome? {
        // Nothing to ask Redis.
        guard !items.isEmpty else { return BatchOutcome(decisions: [], applied: !alwaysOver) }
        guard !stopping.load(ordering: .relaxed) else {
            return context.local.decideAll(items, alwaysOver: alwaysOver, now: now, later: later)
        }
        enqueue(.batch(BatchJob(
            items: items, prefix: context.keyPrefix, alwaysOver: alwaysOver, later: later,
            queuedAt: context.clock.nanosecondsNow())))
        return nil
    }

    /// On the loop the request arrived on (always one of the server's); from anywhere else, on the first.
    private func enqueue(_ work: Work) {
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, let shared = loops[ObjectIdentifier(current)] {
            shared.enqueue(work)
        } else {
            let shared = firstLoop
            shared.loop.execute { shared.enqueue(work) }
        }
    }

    public var counters: [DeciderCounter] {
        let tally = context.tally
        return [
            DeciderCounter("shared_decided", Int64(tally.decided.load(ordering: .relaxed))),
            DeciderCounter("shared_fallbacks", Int64(tally.fellBack.load(ordering: .relaxed))),
            DeciderCounter("shared_errors", Int64(tally.errors.load(ordering: .relaxed))),
            DeciderCounter("shared_cluster_redirects", Int64(tally.redirects.load(ordering: .relaxed))),
            DeciderCounter("shared_redis_down", tally.outage.load(ordering: .relaxed) ? 1 : 0, gauge: true),
            DeciderCounter("shared_deny_cache_hits", Int64(context.denials.hits.load(ordering: .relaxed))),
            DeciderCounter("shared_deny_cache_keys", Int64(context.denials.count), gauge: true),
        ]
    }
}

/// What shared mode counts, for STATS and /metrics (published through `SharedDecider.counters`).
final class SharedDecisionCounters: Sendable {
    /// Requests Redis decided.
    let decided = Atomic<Int>(0)
    /// Requests decided by `on_error` (Redis unreachable, slow, or the request waited too long).
    let fellBack = Atomic<Int>(0)
    /// Failed attempts to reach Redis.
    let errors = Atomic<Int>(0)
    /// Redis Cluster redirects followed (`MOVED`, `ASK`, `TRYAGAIN`).
    let redirects = Atomic<Int>(0)
    /// Whether Redis is unavailable now.
    let outage = Atomic<Bool>(false)
}
