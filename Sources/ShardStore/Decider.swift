import RateLimiting

/// Where requests are decided: the one seam every protocol goes through (the line protocol and RESP one
/// key at a time, Envoy's descriptors several at once). `LocalDecider` decides from this daemon's shards;
/// a decider backed by shared state elsewhere is another implementation of this, not a branch in the
/// request path.
public protocol Decider: Sendable {
    /// Runs one operation on one key (`hash` is `KeyHash.hash(key)`), counting a decision under `slot`.
    /// Returns the result, or nil when the decider takes the request to answer later (it asks another
    /// process): it then calls `waiter.resolve(ticket:result:)` exactly once, from any thread. The key's
    /// bytes are only valid during the call.
    func run(
        _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
        ticket: UInt64, waiter: any DecisionWaiter
    ) -> ShardResult?

    /// Decides every item as one, all or nothing by `DecisionBatch.accepts` (never applied when
    /// `alwaysOver`: something outside the items is over already); when not applied, nothing is consumed
    /// and allowed items are answered as peeks. Returns the outcome, or nil when the decider takes the batch
    /// to answer later: it then calls `later` exactly once, from any thread.
    func decideAll(
        _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64,
        later: @escaping @Sendable (BatchOutcome) -> Void
    ) -> BatchOutcome?

    /// The decider's own counters, for STATS (none for local decisions).
    var counters: [DeciderCounter] { get }

    /// Starts what the decider runs of its own (connections elsewhere), as the server starts listening.
    func start()

    /// Stops what the decider runs of its own, once the server's connections have closed and before its
    /// event loops stop; later requests are decided at once.
    func stop() async
}

extension Decider {
    public func start() {}
    public func stop() async {}
}

/// A batch's decisions, one per item, and whether they were applied.
public struct BatchOutcome: Sendable {
    public var decisions: [Decision]
    public var applied: Bool

    public init(decisions: [Decision], applied: Bool) {
        self.decisions = decisions
        self.applied = applied
    }
}

/// One of a decider's counters: its STATS name and value; /metrics publishes it as `ratelimitd_<name>`, a
/// counter (`_total`) or a gauge.
public struct DeciderCounter: Sendable {
    public let name: StaticString
    public let value: Int64
    public let isGauge: Bool

    public init(_ name: StaticString, _ value: Int64, gauge: Bool = false) {
        self.name = name
        self.value = value
        self.isGauge = gauge
    }
}

/// Where a deferred answer goes: one per connection, which gets its answers back onto its event loop.
public protocol DecisionWaiter: AnyObject, Sendable {
    func resolve(ticket: UInt64, result: ShardResult)
}

/// Decides from this daemon's shards, each key under its shard's lock, always at once.
public struct LocalDecider: Decider {
    let shards: [LockedShard]
    let router: ShardRouter
    let batch: DecisionBatch

    public init(shards: [LockedShard]) {
        self.shards = shards
        self.router = ShardRouter(shardCount: shards.count)
        self.batch = DecisionBatch(shards: shards, router: router)
    }

    @inline(__always)
    public func run(
        _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
        ticket: UInt64, waiter: any DecisionWaiter
    ) -> ShardResult? {
        shards[router.shard(forHash: hash)].run(operation, key: key, hash: hash, now: now, slot: slot)
    }

    public func decideAll(
        _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64,
        later: @escaping @Sendable (BatchOutcome) -> Void
    ) -> BatchOutcome? {
        let (decisions, applied) = batch.decide(items, now: now) { !alwaysOver && DecisionBatch.accepts(items, $0) }
        return BatchOutcome(decisions: decisions, applied: applied)
    }

    public var counters: [DeciderCounter] { [] }

    /// Counts a decision made elsewhere for the key of `hash`, as if made here (STATS `allowed`/`denied`,
    /// /metrics by rule).
    public func count(_ decision: Decision, hash: UInt64, slot: Int) {
        shards[router.shard(forHash: hash)].count(decision, slot: slot)
    }
}
