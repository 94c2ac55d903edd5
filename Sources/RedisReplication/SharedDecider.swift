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

    public let settings: Settings
    private let tally = SharedDecisionCounters()
    private let denials = DenyCache()
    private let local: LocalDecider
    private let clock: any DecisionClock
    private let logger: Logger
    private let keyPrefix: [UInt8]
    private let wake = ConditionLock(value: false)
    private var queue: [Request] = []
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

    /// Envoy's descriptors are decided locally: shared mode does not serve Envoy yet (start-up refuses the
    /// combination), so this is never called for it.
    public func decideAll(
        _ items: [DecisionBatch.Item], now: Int64, accept: ([Decision]) -> Bool
    ) -> (decisions: [Decision], applied: Bool) {
        local.decideAll(items, now: now, accept: accept)
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

    private func loop() {
        reconnectIfDue()
        while true {
            var batch: [Request] = []
            var finished = false
            if wake.lock(whenValue: true, timeoutSeconds: 0.1) {
                let taken = min(queue.count, Self.maxPerRoundTrip)
                batch = Array(queue.prefix(taken))
                queue.removeFirst(taken)
                finished = stopping && queue.isEmpty && batch.isEmpty
                wake.unlock(withValue: !queue.isEmpty || stopping)
            }
            if finished { return }
            if !batch.isEmpty {
                decide(batch)
            } else {
                reconnectIfDue()
            }
        }
    }

    private func decide(_ batch: [Request]) {
        let now = clock.nanosecondsNow()
        let timeout = Int64(settings.timeoutMillis) * 1_000_000
        // A CHECK that has already waited the whole timeout gets its answer now, whatever Redis does. A
        // RESET still goes to Redis: answering it locally would leave the shared count as it was.
        let (late, fresh) = batch.reduce(into: ([Request](), [Request]())) { parts, request in
            let isCheck = if case .check = request.operation { true } else { false }
            if isCheck, now - request.queuedAt >= timeout { parts.0.append(request) } else { parts.1.append(request) }
        }
        fallBack(late, now: now)
        guard !fresh.isEmpty else { return }
        reconnectIfDue()
        guard nodes.isOpen else {
            fallBack(fresh, now: now)
            return
        }
        var round = SharedRound(requests: fresh, keyPrefix: keyPrefix, nodes: nodes, deadline: now + timeout, clock: clock)
        let (results, failure) = round.run()
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
        tally.decided.add(fresh.count - undecided.count, ordering: .relaxed)
        tally.redirects.add(round.redirects, ordering: .relaxed)
        if let failure {
            failed(failure)
            fallBack(undecided, now: answeredAt)
            return
        }
        recovered()
        if round.topologyChanged {
            do throws(RedisError) {
                try nodes.refresh()
                logger.info("Redis Cluster slot map read again", metadata: ["primaries": "\(nodes.primaries.count)"])
            } catch {
                // The map patched from each MOVED keeps working; the next MOVED tries again.
                logger.info("cannot read the Redis Cluster slot map again", metadata: ["error": "\(error)"])
            }
        }
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
