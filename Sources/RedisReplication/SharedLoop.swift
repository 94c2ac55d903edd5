import DaemonConfig
import Logging
import NIOCore
import RateLimiting
import ShardStore

/// Shared mode on one event loop: the requests of this loop's connections go to Redis over this loop's own
/// connections (`RedisLink`), and their answers come back on the same loop, so no request ever changes
/// thread. What the loop's connections ask during one turn of the loop is sent together at its end (one
/// `flush`): per node, runs of CHECKs as one `EVALSHA` (at most `SharedDecider.maxKeysPerCall` keys, all of
/// one slot in a cluster), a `DEL` per RESET, a call per Envoy request, pipelined.
///
/// Order: a key with a call out is not sent again until that call is answered (its later requests wait for
/// the next flush), so whatever happens to a call on the way, a key's requests reach Redis in order.
///
/// On the way a call may meet, and answer without the client seeing it:
/// - `NOSCRIPT` (Redis restarted, `SCRIPT FLUSH`, failed over): the script is loaded again on that
///   connection and the call repeated.
/// - `MOVED`: the slot map is patched, read again, and the call sent to the slot's new primary.
/// - `ASK` (a slot migrating): the call goes to the importing node once, after `ASKING`.
/// - `TRYAGAIN` (a call whose keys are split between the two nodes of a migrating slot): it is made again one
///   key per call, each then found on one node or the other; an Envoy request, which must stay one call, is
///   made again whole a millisecond later.
/// Anything else (a connection that fails or does not answer in time, an error reply, redirects without
/// end) is decided by `on_error`, as is a request that has waited `timeout` without being sent.
///
/// `@unchecked Sendable`: NIO's callbacks must be; every use is on `loop`.
final class SharedLoop: @unchecked Sendable {
    let loop: any EventLoop
    private let context: SharedContext
    private var queue = CircularBuffer<Work>()
    private var flushScheduled = false
    private var sweepArmed = false
    /// Keys (by `KeyHash`) with a call out, and how many.
    private var busy: [UInt64: Int] = [:]
    private var links: [RedisEndpoint: RedisLink] = [:]
    /// The script's SHA-1, once Redis has said it.
    private var sha: String?
    private var topology = Topology.unknown
    private var discovering = false
    private var loadingScript = false
    private var refreshing = false
    private var stopped = false

    enum Topology {
        case unknown
        case single
        case cluster(SlotMap)
    }

    /// Calls owed by one connection at most before new work waits for answers: enough to keep Redis busy,
    /// few enough that what waits is sent together.
    static let maxOwedPerLink = 4
    static let maxAttempts = 16

    init(loop: any EventLoop, context: SharedContext) {
        self.loop = loop
        self.context = context
    }

    // MARK: Work in

    func enqueue(_ work: Work) {
        guard !stopped else {
            fallBack(work)
            return
        }
        // Redis is down and not yet due for another try: waiting would only delay the answer. (Only with
        // nothing queued, which may hold this key's earlier requests.)
        if queue.isEmpty, links.isEmpty, !context.health.mayAttempt(context.seed, at: context.clock.nanosecondsNow()) {
            fallBack(work)
            return
        }
        queue.append(work)
        scheduleFlush()
        armSweep()
    }

    /// Connects to the url's node and learns the topology, before any request needs it.
    func start() {
        discoverIfNeeded()
    }

    /// Stops for good: what waits is decided by `on_error`, and calls out are abandoned to it too.
    func stop() {
        stopped = true
        while let work = queue.popFirst() { fallBack(work) }
        for link in links.values { link.close() }
        links = [:]
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        loop.execute { [self] in flush() }
    }

    // MARK: Sending

    /// Sends what waits, as few calls as it makes.
    private func flush() {
        flushScheduled = false
        guard !stopped, !queue.isEmpty else { return }
        discoverIfNeeded()
        guard let sha else {
            if !loadingScript, let link = link(to: context.seed) { loadScript(on: link) }
            return
        }
        let map: SlotMap?
        switch topology {
        case .unknown: return
        case .single: map = nil
        case .cluster(let slots): map = slots
        }

        var held = CircularBuffer<Work>()
        // Keys of held work (later work on them waits too) and of this round, with whether it RESETs them.
        var blocked = Set<UInt64>()
        var inRound: [UInt64: Bool] = [:]
        // Each request with its slot (0 on a single server), found once.
        var requestsPerNode: [RedisEndpoint: [(slot: Int, request: Request)]] = [:]
        var nodeOrder: [RedisEndpoint] = []
        var batchesPerNode: [RedisEndpoint: [BatchJob]] = [:]
        while let work = queue.popFirst() {
            let conflicts: Bool
            let slot: Int
            switch work {
            case .request(let request):
                let isReset = work.isReset
                conflicts = busy[request.hash] != nil || blocked.contains(request.hash)
                    || inRound[request.hash].map { $0 || isReset } ?? false
                slot = map == nil ? 0 : ClusterSlot.of(request.stateKey)
            case .batch(let job):
                conflicts = job.hashes.contains { busy[$0] != nil || blocked.contains($0) || inRound[$0] != nil }
                slot = map == nil ? 0 : ClusterSlot.of(job.stateKeys[0])
            }
            let node = map?.endpoint(forSlot: slot) ?? context.seed
            if conflicts || (links[node]?.owed ?? 0) >= Self.maxOwedPerLink {
                switch work {
                case .request(let request): blocked.insert(request.hash)
                case .batch(let job): blocked.formUnion(job.hashes)
                }
                held.append(work)
                continue
            }
            if requestsPerNode[node] == nil, batchesPerNode[node] == nil { nodeOrder.append(node) }
            switch work {
            case .request(let request):
                inRound[request.hash] = (inRound[request.hash] ?? false) || work.isReset
                requestsPerNode[node, default: []].append((slot, request))
            case .batch(let job):
                for hash in job.hashes { inRound[hash] = true }
                batchesPerNode[node, default: []].append(job)
            }
        }
        queue = held

        for node in nodeOrder {
            for call in Self.calls(for: requestsPerNode[node] ?? [], cluster: map != nil) {
                mark(call.hashes)
                send(call, to: node, sha: sha)
            }
            for job in batchesPerNode[node] ?? [] {
                mark(job.hashes)
                start(job, map: map, sha: sha)
            }
        }
    }

    /// A node's requests as calls: by slot (stably, so a key's requests keep their order), runs of CHECKs
    /// of at most `maxKeysPerCall` keys, a call per RESET.
    private static func calls(for requests: [(slot: Int, request: Request)], cluster: Bool) -> [Call] {
        guard !requests.isEmpty else { return [] }
        // Stable: by slot, then arrival. On a single server every slot is 0 and arrival order is the order.
        let ordered = cluster
            ? requests.enumerated().sorted { ($0.element.slot, $0.offset) < ($1.element.slot, $1.offset) }.map(\.element)
            : requests
        var calls: [Call] = []
        var run: [Request] = []
        var runSlot = -1
        func cut() {
            if !run.isEmpty { calls.append(Call(kind: .checks(run), slot: runSlot)) }
            run = []
        }
        for (slot, request) in ordered {
            if !run.isEmpty, slot != runSlot || run.count == SharedDecider.maxKeysPerCall { cut() }
            if case .reset = request.operation {
                cut()
                calls.append(Call(kind: .reset(request), slot: slot))
            } else {
                runSlot = slot
                run.append(request)
            }
        }
        cut()
        return calls
    }

    private func send(_ call: Call, to node: RedisEndpoint, sha: String, asking: Bool = false) {
        guard let link = link(to: node) else {
            finish(call, failure: RedisError("Redis is down; next try after the back-off"))
            return
        }
        // The request's own deadline: no client waits past the timeout, however the call went. A call
        // already past it is not sent (Redis would consume for an answer given by on_error).
        let left = call.queuedAt + context.timeoutNanos - context.clock.nanosecondsNow()
        guard left > 0 else {
            finish(call, failure: RedisError("no answer from Redis within the timeout"))
            return
        }
        let deadline = NIODeadline.now() + .nanoseconds(left)
        if asking {
            var command = ByteBufferAllocator().buffer(capacity: 24)
            command.writeRedisCommand(["ASKING"])
            link.send(command, deadline: deadline) { _ in }
        }
        link.send(call.command(sha: sha), deadline: deadline) { [self] result in
            answered(call, from: node, result)
        }
    }

    // MARK: Answers

    private func answered(_ call: Call, from node: RedisEndpoint, _ result: Result<RedisReply, RedisError>) {
        defer { if !queue.isEmpty { scheduleFlush() } }
        let reply: RedisReply
        switch result {
        case .failure(let error):
            finish(call, failure: error)
            return
        case .success(let answer):
            reply = answer
        }
        var call = call
        if case .error(let message) = reply {
            call.attempts += 1
            guard call.attempts <= Self.maxAttempts, let sha else {
                finish(call, failure: RedisError("Redis kept answering \(message)"))
                return
            }
            if message.hasPrefix("NOSCRIPT") {
                if let link = links[node] { loadScript(on: link) }
                send(call, to: node, sha: sha)
                return
            }
            if let redirect = ClusterRedirect(reply, from: node) {
                context.tally.redirects.add(1, ordering: .relaxed)
                follow(redirect, call, sha: sha)
                return
            }
            finish(call, failure: RedisError("Redis answered \(message)"))
            context.health.failed(node, RedisError(message), at: context.clock.nanosecondsNow())
            return
        }
        do throws(RedisError) {
            try complete(call, reply)
            context.health.succeeded(node, at: context.clock.nanosecondsNow())
        } catch {
            finish(call, failure: error)
        }
    }

    private func follow(_ redirect: ClusterRedirect, _ call: Call, sha: String) {
        switch redirect {
        case .moved(let slot, let node):
            if case .cluster(var map) = topology {
                map.learn(slot: slot, movedTo: node)
                topology = .cluster(map)
            }
            refreshTopology()
            send(call, to: node, sha: sha)
        case .ask(let node):
            send(call, to: node, sha: sha, asking: true)
        case .tryAgain:
            if case .checks(let requests) = call.kind, requests.count > 1 {
                let node = owner(ofSlot: call.slot)
                for request in requests {
                    var single = Call(kind: .checks([request]), slot: call.slot)
                    single.attempts = call.attempts
                    send(single, to: node, sha: sha)
                }
                return
            }
            // One key cannot be split between nodes, and an Envoy request must stay one call: the migration
            // is between two steps.
            loop.scheduleTask(in: .milliseconds(1)) { [self] in
                guard !stopped else { return finish(call, failure: RedisError("stopped")) }
                send(call, to: owner(ofSlot: call.slot), sha: sha)
            }
        }
    }

    private func owner(ofSlot slot: Int) -> RedisEndpoint {
        if case .cluster(let map) = topology { return map.endpoint(forSlot: slot) }
        return context.seed
    }

    /// A call's reply: its requests answered, its keys free.
    private func complete(_ call: Call, _ reply: RedisReply) throws(RedisError) {
        switch call.kind {
        case .reset(let request):
            guard case .integer = reply else { throw RedisError("unexpected reply to DEL: \(reply)") }
            // A CHECK answered since the RESET was asked may have remembered a denial from before it.
            context.denials.forget(hash: request.hash)
            unmark([request.hash])
            context.tally.decided.add(1, ordering: .relaxed)
            request.waiter.resolve(ticket: request.ticket, result: .reset)
        case .checks(let requests):
            let decisions = try Self.decisions(of: reply, count: requests.count, applied: false)
            unmark(requests.map(\.hash))
            context.tally.decided.add(requests.count, ordering: .relaxed)
            let now = context.clock.nanosecondsNow()
            for (request, decision) in zip(requests, decisions) {
                context.local.count(decision, hash: request.hash, slot: request.ruleSlot)
                if case .check(let cost, let limit) = request.operation, cost > 0 {
                    context.denials.remember(
                        key: request.key, hash: request.hash, cost: cost, limit: limit, decision: decision, now: now)
                }
                request.waiter.resolve(ticket: request.ticket, result: .decision(decision))
            }
        case .part(let job, let group):
            let mode = job.mode
            let decisions = try Self.decisions(of: reply, count: job.groups[group].count, applied: mode != .each)
            let applied = mode == .each ? true : try Self.number(Self.last(reply)) == 1
            partDone(job, group: group, decisions: decisions, applied: applied)
        }
    }

    /// A call Redis did not decide: its requests decided by `on_error`, its keys free.
    private func finish(_ call: Call, failure: RedisError) {
        switch call.kind {
        case .reset(let request):
            unmark([request.hash])
            context.fallBack(request)
        case .checks(let requests):
            unmark(requests.map(\.hash))
            for request in requests { context.fallBack(request) }
        case .part(let job, _):
            partFailed(job)
        }
    }

    // MARK: Envoy's requests

    /// One call, all or nothing; or, its keys in several slots of a cluster, a trial call per slot, and
    /// when the trial accepts, each slot's keys applied (each on its own: README, what holds across slots).
    private func start(_ job: BatchJob, map: SlotMap?, sha: String) {
        var groups: [[Int]] = []
        if map != nil {
            var groupOfSlot: [Int: Int] = [:]
            for (index, key) in job.stateKeys.enumerated() {
                let slot = ClusterSlot.of(key)
                if let group = groupOfSlot[slot] {
                    groups[group].append(index)
                } else {
                    groupOfSlot[slot] = groups.count
                    groups.append([index])
                }
            }
        } else {
            groups = [Array(job.items.indices)]
        }
        job.groups = groups
        job.mode = groups.count == 1 ? (job.alwaysOver ? .none : .all) : .none
        sendParts(of: job, sha: sha)
    }

    private func sendParts(of job: BatchJob, sha: String) {
        job.outstanding = job.groups.count
        for group in job.groups.indices {
            let slot = ClusterSlot.of(job.stateKeys[job.groups[group][0]])
            send(Call(kind: .part(job, group), slot: slot, queuedAt: job.queuedAt), to: owner(ofSlot: slot), sha: sha)
        }
    }

    private func partDone(_ job: BatchJob, group: Int, decisions: [Decision], applied: Bool) {
        for (index, decision) in zip(job.groups[group], decisions) { job.decisions[index] = decision }
        job.applied = job.applied && applied
        job.outstanding -= 1
        guard job.outstanding == 0 else { return }
        if job.failed {
            unmark(job.hashes)
            return
        }
        let decisions = job.decisions.map { $0! }
        switch job.mode {
        case .all, .each:
            unmark(job.hashes)
            context.tally.decided.add(1, ordering: .relaxed)
            let outcome = job.mode == .each ? DecisionBatch.accepts(job.items, decisions) : job.applied
            job.later(BatchOutcome(decisions: decisions, applied: outcome && !job.alwaysOver))
        case .none:
            guard job.groups.count > 1, !job.alwaysOver, DecisionBatch.accepts(job.items, decisions), let sha else {
                unmark(job.hashes)
                context.tally.decided.add(1, ordering: .relaxed)
                job.later(BatchOutcome(decisions: decisions, applied: false))
                return
            }
            // The trial accepts: apply, slot by slot.
            job.mode = .each
            job.applied = true
            sendParts(of: job, sha: sha)
        }
    }

    private func partFailed(_ job: BatchJob) {
        job.outstanding -= 1
        if !job.failed {
            job.failed = true
            context.fallBack(job)
        }
        if job.outstanding == 0 { unmark(job.hashes) }
    }

    // MARK: Connections and topology

    /// The link to `node`, opened (with the script loaded first) when there is none, or nil when Redis is
    /// down and the back-off does not allow a try yet.
    private func link(to node: RedisEndpoint) -> RedisLink? {
        if let link = links[node], !link.isClosed { return link }
        guard context.health.mayAttempt(node, at: context.clock.nanosecondsNow()) else { return nil }
        let link = RedisLink(endpoint: node, loop: loop, timeoutMillis: context.timeoutMillis)
        link.onFailure = { [self] error in
            if links[node] === link { links[node] = nil }
            context.health.failed(node, error, at: context.clock.nanosecondsNow())
            if case .cluster = topology { refreshTopology() }
        }
        link.onLateReply = { [self] in
            if !queue.isEmpty { scheduleFlush() }
        }
        links[node] = link
        loadScript(on: link)
        link.connect()
        // A connect can fail at once (a unix socket that is not there): onFailure has run.
        return link.isClosed ? nil : link
    }

    private func loadScript(on link: RedisLink) {
        var command = ByteBufferAllocator().buffer(capacity: DecisionScript.source.utf8.count + 64)
        command.writeRedisCommand(["SCRIPT", "LOAD", DecisionScript.source])
        if sha == nil { loadingScript = true }
        link.send(command, deadline: .now() + .milliseconds(Int64(context.timeoutMillis))) { [self] result in
            guard case .success(let reply) = result else {
                // Given up or the link failed: the next flush loads it again.
                if sha == nil {
                    loadingScript = false
                    if !queue.isEmpty { scheduleFlush() }
                }
                return
            }
            guard case .string(let digest) = reply else {
                loadingScript = false
                context.health.failed(
                    link.endpoint, RedisError("Redis refused to load the decision script: \(reply)"),
                    at: context.clock.nanosecondsNow())
                link.close()
                if links[link.endpoint] === link { links[link.endpoint] = nil }
                return
            }
            let known = sha != nil
            sha = String(decoding: digest, as: UTF8.self)
            loadingScript = false
            if !known { scheduleFlush() }
        }
    }

    /// Learns, once, whether `url` names a cluster (`CLUSTER SLOTS` answers a map) or a single server.
    private func discoverIfNeeded() {
        guard case .unknown = topology, !discovering, let link = link(to: context.seed) else { return }
        discovering = true
        var command = ByteBufferAllocator().buffer(capacity: 32)
        command.writeRedisCommand(["CLUSTER", "SLOTS"])
        link.send(command, deadline: .now() + .milliseconds(Int64(context.timeoutMillis))) { [self] result in
            discovering = false
            switch result {
            case .success(.error):
                // "ERR This instance has cluster support disabled": a single server (or one behind Sentinel).
                topology = .single
            case .success(let reply):
                do throws(RedisError) {
                    guard context.seed.database == 0 else {
                        throw RedisError("Redis Cluster has only database 0, and the url names database \(context.seed.database)")
                    }
                    let map = try SlotMap(clusterSlots: reply, from: context.seed)
                    topology = .cluster(map)
                    context.clusterFound(primaries: map.primaries.count)
                } catch {
                    context.health.failed(link.endpoint, error, at: context.clock.nanosecondsNow())
                    link.close()
                    if links[link.endpoint] === link { links[link.endpoint] = nil }
                    return
                }
            case .failure:
                return
            }
            scheduleFlush()
        }
    }

    /// Reads the slot map again (after `MOVED`, or a node lost), from any connected primary.
    private func refreshTopology() {
        guard case .cluster = topology, !refreshing, let link = links.values.first(where: { !$0.isClosed }) else { return }
        refreshing = true
        var command = ByteBufferAllocator().buffer(capacity: 32)
        command.writeRedisCommand(["CLUSTER", "SLOTS"])
        link.send(command, deadline: .now() + .milliseconds(Int64(context.timeoutMillis))) { [self] result in
            refreshing = false
            guard case .success(let reply) = result, let map = try? SlotMap(clusterSlots: reply, from: link.endpoint) else {
                // The map patched from each MOVED keeps working; the next MOVED tries again.
                return
            }
            topology = .cluster(map)
            for (node, stale) in links where !map.primaries.contains(node) && stale.owed == 0 {
                stale.close()
                links[node] = nil
            }
            context.logger.info("Redis Cluster slot map read again", metadata: ["primaries": "\(map.primaries.count)"])
        }
    }

    // MARK: Waiting too long

    /// A timer for the oldest work waiting unsent (for a connection, the slot map, or a busy key): once it
    /// has waited `timeout`, it is decided by `on_error`.
    private func armSweep() {
        guard !sweepArmed, let oldest = queue.first else { return }
        sweepArmed = true
        let wait = max(0, oldest.queuedAt + context.timeoutNanos - context.clock.nanosecondsNow())
        loop.scheduleTask(in: .nanoseconds(wait)) { [self] in
            sweepArmed = false
            let now = context.clock.nanosecondsNow()
            while let first = queue.first, first.queuedAt + context.timeoutNanos <= now {
                fallBack(queue.removeFirst())
            }
            armSweep()
        }
    }

    private func fallBack(_ work: Work) {
        switch work {
        case .request(let request): context.fallBack(request)
        case .batch(let job): context.fallBack(job)
        }
    }

    private func mark(_ hashes: [UInt64]) {
        for hash in hashes { busy[hash, default: 0] += 1 }
    }

    /// Frees keys; work held behind them goes in the next flush.
    private func unmark(_ hashes: [UInt64]) {
        for hash in hashes {
            if let count = busy[hash], count > 1 { busy[hash] = count - 1 } else { busy[hash] = nil }
        }
        if !queue.isEmpty { scheduleFlush() }
    }

    // MARK: Replies

    /// The script's decisions for `count` items (followed, when `applied`, by the applied flag).
    static func decisions(of reply: RedisReply, count: Int, applied: Bool) throws(RedisError) -> [Decision] {
        guard case .array(let values) = reply, values.count == count * 3 + (applied ? 1 : 0) else {
            throw RedisError("unexpected reply from the decision script: \(reply)")
        }
        var decisions: [Decision] = []
        decisions.reserveCapacity(count)
        for item in 0..<count {
            let at = item * 3
            decisions.append(Decision(
                allowed: try number(values[at]) == 1, remaining: try number(values[at + 1]),
                resetMillis: try number(values[at + 2])))
        }
        return decisions
    }

    private static func last(_ reply: RedisReply) throws(RedisError) -> RedisReply {
        guard case .array(let values) = reply, let last = values.last else {
            throw RedisError("unexpected reply from the decision script: \(reply)")
        }
        return last
    }

    static func number(_ value: RedisReply) throws(RedisError) -> Int64 {
        switch value {
        case .integer(let number): return number
        case .string(let text):
            guard let number = Int64(String(decoding: text, as: UTF8.self)) else { break }
            return number
        default: break
        }
        throw RedisError("unexpected value from the decision script: \(value)")
    }
}
