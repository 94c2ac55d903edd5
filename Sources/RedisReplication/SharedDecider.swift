import DaemonConfig
import Logging
import NIOConcurrencyHelpers
import NIOPosix
import RateLimiting
import ServiceLifecycle
import ShardStore
import Synchronization

/// Shared mode: every CHECK and RESET is decided in Redis, by `DecisionScript`, so daemons that share a
/// Redis enforce one limit together. Requests are handed to a thread of its own (hiredis blocks; no event
/// loop ever waits on Redis) and answered through each connection's waiter. What is queued while a round
/// trip is out goes together in the next one (`SharedRound`): as few `EVALSHA`s as there are runs of CHECKs
/// per node and slot, pipelined. The url names one server or any node of a Redis Cluster (`RedisNodes`).
///
/// When Redis cannot answer within `timeout` (down, frozen, refusing), or a request has already waited
/// that long, the request is decided by `onError`: from this daemon's own state (`local`), or allowed, or
/// denied; an outage is logged when it starts and when it ends, and Redis is tried again with capped
/// back-off. A script Redis has forgotten (`NOSCRIPT`: restarted, `SCRIPT FLUSH`, a failover) is loaded
/// again and the call repeated, unseen by clients.
///
/// `@unchecked Sendable`: `queue` and `stopping` are guarded by `wake`; everything else mutable belongs to
/// the thread.
public final class SharedDecider: Decider, @unchecked Sendable {
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

    struct Request {
        let operation: ShardOperation
        let key: [UInt8]
        let hash: UInt64
        let slot: Int
        let ticket: UInt64
        let waiter: any DecisionWaiter
        let queuedAt: Int64
    }

    /// Envoy's descriptors of one request, decided together.
    struct Batch {
        let items: [DecisionBatch.Item]
        let alwaysOver: Bool
        let later: @Sendable (BatchOutcome) -> Void
        let queuedAt: Int64
    }

    public let settings: Settings
    private let tally = SharedDecisionCounters()
    private let denials = DenyCache()
    private let local: LocalDecider
    private let clock: any DecisionClock
    private let logger: Logger
    private let keyPrefix: [UInt8]
    private let wake = ConditionLock(value: false)
    private var queue: [Request] = []
    private var batches: [Batch] = []
    /// Set under `wake`, so that no request is queued after the thread has taken its last.
    private var stopping = false
    private let thread = NIOThreadPool(numberOfThreads: 1)

    // The thread's own.
    private let nodes: RedisNodes
    private var retry = RedisRetry()

    public init(settings: Settings, shards: [LockedShard], clock: any DecisionClock, logger: Logger) {
        self.settings = settings
        self.local = LocalDecider(shards: shards)
        self.clock = clock
        self.logger = logger
        self.keyPrefix = Array(settings.keyPrefix.utf8)
        self.nodes = RedisNodes(seed: settings.endpoint, timeoutMillis: settings.timeoutMillis)
    }

    /// Starts the thread that talks to Redis; it connects at once, so the first requests need not wait.
    public func start() {
        thread.start()
        thread.submit { [self] _ in loop() }
    }

    /// Stops the thread once what is queued has been answered (call after every connection has closed).
    public func stop() async {
        wake.lock()
        stopping = true
        wake.unlock(withValue: true)
        try? await thread.shutdownGracefully()
    }

    public func run(
        _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
        ticket: UInt64, waiter: any DecisionWaiter
    ) -> ShardResult? {
        let bytes = Array(key)
        switch operation {
        case .check(let cost, let limit):
            if cost > 0, let denial = denials.denial(key: bytes, cost: cost, limit: limit, now: now) {
                local.count(denial, hash: hash, slot: slot)
                return .decision(denial)
            }
        case .reset:
            denials.forget(bytes)
        }
        let request = Request(
            operation: operation, key: bytes, hash: hash, slot: slot, ticket: ticket, waiter: waiter,
            queuedAt: clock.nanosecondsNow())
        wake.lock()
        // Stopped (the group is going down on an error): nothing would answer later, so decide now.
        guard !stopping else {
            wake.unlock()
            return local.run(operation, key: key, hash: hash, now: now, slot: slot, ticket: ticket, waiter: waiter)
        }
        queue.append(request)
        wake.unlock(withValue: true)
        return nil
    }

    public func decideAll(
        _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64,
        later: @escaping @Sendable (BatchOutcome) -> Void
    ) -> BatchOutcome? {
        // Nothing to ask Redis.
        guard !items.isEmpty else { return BatchOutcome(decisions: [], applied: !alwaysOver) }
        let batch = Batch(items: items, alwaysOver: alwaysOver, later: later, queuedAt: clock.nanosecondsNow())
        wake.lock()
        guard !stopping else {
            wake.unlock()
            return local.decideAll(items, alwaysOver: alwaysOver, now: now, later: later)
        }
        batches.append(batch)
        wake.unlock(withValue: true)
        return nil
    }

    public var counters: [DeciderCounter] {
        [
            DeciderCounter("shared_decided", Int64(tally.decided.load(ordering: .relaxed))),
            DeciderCounter("shared_fallbacks", Int64(tally.fellBack.load(ordering: .relaxed))),
            DeciderCounter("shared_errors", Int64(tally.errors.load(ordering: .relaxed))),
            DeciderCounter("shared_cluster_redirects", Int64(tally.redirects.load(ordering: .relaxed))),
            DeciderCounter("shared_redis_down", tally.outage.load(ordering: .relaxed) ? 1 : 0, gauge: true),
            DeciderCounter("shared_deny_cache_hits", Int64(denials.hits.load(ordering: .relaxed))),
            DeciderCounter("shared_deny_cache_keys", Int64(denials.count), gauge: true),
        ]
    }

    /// Requests per round trip at most: a burst larger than this goes over several, so each round trip stays
    /// short and a request's wait stays near its own round trip.
    public static let maxPerRoundTrip = 4 * maxKeysPerCall

    /// Envoy requests per round trip at most.
    public static let maxBatchesPerRoundTrip = maxKeysPerCall

    private func loop() {
        reconnectIfDue()
        while true {
            var requests: [Request] = []
            var taken: [Batch] = []
            var finished = false
            if wake.lock(whenValue: true, timeoutSeconds: 0.1) {
                let count = min(queue.count, Self.maxPerRoundTrip)
                requests = Array(queue.prefix(count))
                queue.removeFirst(count)
                let batchCount = min(batches.count, Self.maxBatchesPerRoundTrip)
                taken = Array(batches.prefix(batchCount))
                batches.removeFirst(batchCount)
                let empty = queue.isEmpty && batches.isEmpty
                finished = stopping && empty && requests.isEmpty && taken.isEmpty
                wake.unlock(withValue: !empty || stopping)
            }
            if finished { return }
            if !requests.isEmpty || !taken.isEmpty {
                decide(requests, taken)
            } else {
                reconnectIfDue()
            }
        }
    }

    /// How a batch became script calls: one call, all or nothing; or, its keys spread over slots of a
    /// cluster, a trial call per slot (see `decide`).
    private enum BatchPlan {
        case whole(part: Int)
        case split(groups: [[Int]], parts: [Int])
    }

    private func decide(_ requests: [Request], _ batches: [Batch]) {
        let now = clock.nanosecondsNow()
        let timeout = Int64(settings.timeoutMillis) * 1_000_000
        // A CHECK that has already waited the whole timeout gets its answer now, whatever Redis does. A
        // RESET still goes to Redis: answering it locally would leave the shared count as it was.
        let (late, fresh) = requests.reduce(into: ([Request](), [Request]())) { parts, request in
            let isCheck = if case .check = request.operation { true } else { false }
            if isCheck, now - request.queuedAt >= timeout { parts.0.append(request) } else { parts.1.append(request) }
        }
        fallBack(late, now: now)
        let freshBatches = batches.filter { now - $0.queuedAt < timeout }
        fallBack(batches.filter { now - $0.queuedAt >= timeout }, now: now)
        guard !fresh.isEmpty || !freshBatches.isEmpty else { return }
        reconnectIfDue()
        guard nodes.isOpen else {
            fallBack(fresh, now: now)
            fallBack(freshBatches, now: now)
            return
        }

        var parts: [SharedRound.Part] = []
        let plans = freshBatches.map { batch -> BatchPlan in
            let slots = nodes.isCluster
                ? batch.items.map { ClusterSlot.of(SharedRound.stateKey($0.key, prefix: keyPrefix)) } : [0]
            guard Set(slots).count > 1 else {
                parts.append(.init(items: batch.items, mode: batch.alwaysOver ? .none : .all))
                return .whole(part: parts.count - 1)
            }
            var groups: [[Int]] = []
            var groupOfSlot: [Int: Int] = [:]
            for (index, slot) in slots.enumerated() {
                let group = groupOfSlot[slot] ?? {
                    groups.append([])
                    groupOfSlot[slot] = groups.count - 1
                    return groups.count - 1
                }()
                groups[group].append(index)
            }
            let first = parts.count
            parts += groups.map { .init(items: $0.map { batch.items[$0] }, mode: .none) }
            return .split(groups: groups, parts: Array(first..<parts.count))
        }

        var round = SharedRound(
            requests: fresh, parts: parts, keyPrefix: keyPrefix, nodes: nodes, deadline: now + timeout, clock: clock)
        let (results, outcomes, failure) = round.run()
        var redirects = round.redirects
        var topologyChanged = round.topologyChanged
        let answeredAt = clock.nanosecondsNow()
        var undecided: [Request] = []
        for (request, result) in zip(fresh, results) {
            guard let result else {
                undecided.append(request)
                continue
            }
            if case .decision(let decision) = result {
                local.count(decision, hash: request.hash, slot: request.slot)
                if case .check(let cost, let limit) = request.operation, cost > 0 {
                    denials.remember(key: request.key, cost: cost, limit: limit, decision: decision, now: answeredAt)
                }
            }
            request.waiter.resolve(ticket: request.ticket, result: result)
        }

        // Batches over several slots of a cluster, tried without consuming: those the trial accepts are now
        // applied slot by slot, each key on its own (README: what holds across slots).
        var undecidedBatches: [Batch] = []
        var applying: [(batch: Batch, groups: [[Int]], parts: [Int])] = []
        var applyParts: [SharedRound.Part] = []
        for (batch, plan) in zip(freshBatches, plans) {
            switch plan {
            case .whole(let part):
                guard let outcome = outcomes[part] else {
                    undecidedBatches.append(batch)
                    continue
                }
                batch.later(outcome)
            case .split(let groups, let trialParts):
                guard let trial = Self.assemble(trialParts.map { outcomes[$0] }, groups, count: batch.items.count) else {
                    undecidedBatches.append(batch)
                    continue
                }
                guard !batch.alwaysOver, DecisionBatch.accepts(batch.items, trial) else {
                    batch.later(BatchOutcome(decisions: trial, applied: false))
                    continue
                }
                let first = applyParts.count
                applyParts += groups.map { .init(items: $0.map { batch.items[$0] }, mode: .each) }
                applying.append((batch, groups, Array(first..<applyParts.count)))
            }
        }
        var failures = failure.map { [$0] } ?? []
        if !applying.isEmpty {
            var second = SharedRound(
                requests: [], parts: applyParts, keyPrefix: keyPrefix, nodes: nodes, deadline: now + timeout, clock: clock)
            let (_, applied, failure) = second.run()
            redirects += second.redirects
            topologyChanged = topologyChanged || second.topologyChanged
            if let failure { failures.append(failure) }
            for (batch, groups, parts) in applying {
                guard let decisions = Self.assemble(parts.map { applied[$0] }, groups, count: batch.items.count) else {
                    undecidedBatches.append(batch)
                    continue
                }
                batch.later(BatchOutcome(decisions: decisions, applied: DecisionBatch.accepts(batch.items, decisions)))
            }
        }

        tally.decided.add(fresh.count - undecided.count + freshBatches.count - undecidedBatches.count, ordering: .relaxed)
        tally.redirects.add(redirects, ordering: .relaxed)
        if let failure = failures.first {
            failed(failure)
            fallBack(undecided, now: answeredAt)
            fallBack(undecidedBatches, now: answeredAt)
            return
        }
        recovered()
        if topologyChanged {
            do throws(RedisError) {
                try nodes.refresh()
                logger.info("Redis Cluster slot map read again", metadata: ["primaries": "\(nodes.primaries.count)"])
            } catch {
                // The map patched from each MOVED keeps working; the next MOVED tries again.
                logger.info("cannot read the Redis Cluster slot map again", metadata: ["error": "\(error)"])
            }
        }
    }

    /// A batch's decisions in item order, from its groups' outcomes; nil if any group went undecided.
    private static func assemble(_ outcomes: [BatchOutcome?], _ groups: [[Int]], count: Int) -> [Decision]? {
        var decisions = [Decision](repeating: Decision(allowed: false, remaining: 0, resetMillis: 0), count: count)
        for (outcome, group) in zip(outcomes, groups) {
            guard let outcome else { return nil }
            for (index, decision) in zip(group, outcome.decisions) { decisions[index] = decision }
        }
        return decisions
    }

    /// Decides `requests` as `onError` says, at once.
    private func fallBack(_ requests: [Request], now: Int64) {
        guard !requests.isEmpty else { return }
        tally.fellBack.add(requests.count, ordering: .relaxed)
        for request in requests {
            let result: ShardResult
            switch (settings.onError, request.operation) {
            case (.local, _), (_, .reset):
                // A RESET while Redis is away resets this daemon's own state (README: shared mode).
                result = request.key.withUnsafeBytes {
                    local.run(request.operation, key: $0, hash: request.hash, now: now, slot: request.slot,
                              ticket: request.ticket, waiter: request.waiter)!
                }
            case (.allow, .check(_, let limit)):
                let decision = Decision(allowed: true, remaining: limit.capacity, resetMillis: 0)
                local.count(decision, hash: request.hash, slot: request.slot)
                result = .decision(decision)
            case (.deny, .check):
                let decision = Decision(allowed: false, remaining: 0, resetMillis: Int64(settings.timeoutMillis))
                local.count(decision, hash: request.hash, slot: request.slot)
                result = .decision(decision)
            }
            request.waiter.resolve(ticket: request.ticket, result: result)
        }
    }

    /// Decides Envoy's `batches` as `onError` says, at once.
    private func fallBack(_ batches: [Batch], now: Int64) {
        guard !batches.isEmpty else { return }
        tally.fellBack.add(batches.count, ordering: .relaxed)
        for batch in batches {
            let outcome: BatchOutcome
            switch settings.onError {
            case .local:
                outcome = local.decideAll(batch.items, alwaysOver: batch.alwaysOver, now: now, later: batch.later)!
            case .allow:
                outcome = BatchOutcome(
                    decisions: batch.items.map { Decision(allowed: true, remaining: $0.limit.capacity, resetMillis: 0) },
                    applied: !batch.alwaysOver)
            case .deny:
                let denial = Decision(allowed: false, remaining: 0, resetMillis: Int64(settings.timeoutMillis))
                outcome = BatchOutcome(decisions: batch.items.map { _ in denial }, applied: false)
            }
            batch.later(outcome)
        }
    }

    /// Connects (and loads the script) when not connected and the back-off allows. Redis counts as back
    /// only once a round trip has succeeded: one that accepts connections but refuses every call (out of
    /// memory, read-only after a failover) stays down, with the back-off growing.
    private func reconnectIfDue() {
        guard !nodes.isOpen, retry.mayAttempt(at: clock.nanosecondsNow()) else { return }
        do throws(RedisError) {
            try nodes.open()
            if nodes.isCluster {
                logger.notice(
                    "Redis Cluster found: deciding on its primaries by slot",
                    metadata: ["redis": "\(settings.endpoint)", "primaries": "\(nodes.primaries.count)"])
            }
        } catch {
            failed(error)
        }
    }

    private func failed(_ error: RedisError) {
        nodes.close()
        tally.errors.add(1, ordering: .relaxed)
        guard retry.failed(at: clock.nanosecondsNow()) else { return }
        tally.outage.store(true, ordering: .relaxed)
        logger.warning(
            "Redis unavailable for shared decisions; deciding by on_error until it answers",
            metadata: ["redis": "\(settings.endpoint)", "error": "\(error)", "on_error": "\(settings.onError.rawValue)"])
    }

    private func recovered() {
        if let outage = retry.succeeded(at: clock.nanosecondsNow()) {
            tally.outage.store(false, ordering: .relaxed)
            logger.notice(
                "Redis answers shared decisions again",
                metadata: ["redis": "\(settings.endpoint)", "outage_ms": "\(outage / 1_000_000)"])
        }
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

/// The shared decider's thread as a service of the daemon's group: list it before the server, so that it
/// stops after the server has answered every connection (their owed answers come through it).
public struct SharedDecisionService: Service {
    let decider: SharedDecider

    public init(decider: SharedDecider) {
        self.decider = decider
    }

    public func run() async throws {
        decider.start()
        try? await gracefulShutdown()
        // Cancelled or shut down: the server service, listed after this one, has finished by now.
        await decider.stop()
    }
}
