import DaemonConfig
import RateLimiting
import ShardStore

#if canImport(Glibc)
import Glibc
#endif

/// One round trip of shared decisions: requests (single CHECKs and RESETs) and parts (a group of keys
/// decided in one script call: Envoy's descriptors) in, a result for each out. They become script calls:
/// per node, runs of CHECKs (at most `maxKeysPerCall` keys, all of one slot in a cluster), a `DEL` per
/// RESET, a call per part. Every node gets its calls in one pipeline, and the replies are read node by node.
///
/// Order: a key's requests go to one node, and within a node calls keep request order for each key (a
/// cluster's calls are grouped by slot, stably), so a RESET lands between the CHECKs around it.
///
/// What a call may meet on the way, and answers without the client seeing it:
/// - `NOSCRIPT` (Redis restarted, `SCRIPT FLUSH`, failover): the script is loaded again and the calls made
///   again, in order (see `redoForgotten`).
/// - `MOVED`: the slot map is patched and the call sent to the slot's new primary; the decider reads the
///   whole map again after the round (`topologyChanged`).
/// - `ASK` (a slot migrating): the call goes to the importing node once, after `ASKING`.
/// - `TRYAGAIN` (a call whose keys are split between the two nodes of a migrating slot): it is made again
///   one key per call, each then found on one node or the other; a part, which must stay one call, is made
///   again whole, a millisecond later.
/// Anything else (an error reply, a broken connection, redirects past `maxRedirects` or the deadline) leaves
/// the rest of that node's requests undecided, for the decider to decide by `on_error`.
struct SharedRound {
    typealias Request = SharedDecider.Request

    /// Keys decided in one script call, all of one slot in a cluster.
    struct Part {
        enum Mode: String {
            /// All or nothing (`DecisionBatch.accepts`).
            case all
            /// Tried, never applied: allowed items answered as peeks.
            case none
            /// Each item on its own.
            case each
        }

        var items: [DecisionBatch.Item]
        var mode: Mode
    }

    struct Call {
        enum Kind {
            case checks([Int])
            case reset(Int)
            case part(Int)
        }

        var kind: Kind
        let slot: Int
        var target: RedisEndpoint
        var asking = false
    }

    static let maxRedirects = 16

    let requests: [Request]
    let stateKeys: [[UInt8]]
    let parts: [Part]
    let partKeys: [[[UInt8]]]
    let nodes: RedisNodes
    let deadline: Int64
    let clock: any DecisionClock
    private(set) var topologyChanged = false
    /// Redirects followed (`MOVED`, `ASK`, `TRYAGAIN`).
    private(set) var redirects = 0

    init(
        requests: [Request], parts: [Part] = [], keyPrefix: [UInt8], nodes: RedisNodes, deadline: Int64,
        clock: any DecisionClock
    ) {
        self.requests = requests
        self.stateKeys = requests.map { Self.stateKey($0.key, prefix: keyPrefix) }
        self.parts = parts
        self.partKeys = parts.map { $0.items.map { Self.stateKey($0.key, prefix: keyPrefix) } }
        self.nodes = nodes
        self.deadline = deadline
        self.clock = clock
    }

    /// `<prefix>{<key>}`: the braces make the key its own hash tag, so in Redis Cluster a key's state stays
    /// in one slot whatever the prefix.
    static func stateKey(_ key: [UInt8], prefix: [UInt8]) -> [UInt8] {
        prefix + [UInt8(ascii: "{")] + key + [UInt8(ascii: "}")]
    }

    /// Each request's result, or nil where Redis did not decide it (a node failed: `failure` says why, and
    /// that node's connection is dropped). What one node decided stands when another fails.
    mutating func run() -> (results: [ShardResult?], outcomes: [BatchOutcome?], failure: RedisError?) {
        var results = [ShardResult?](repeating: nil, count: requests.count)
        var outcomes = [BatchOutcome?](repeating: nil, count: parts.count)
        var failure: RedisError?
        // Every node gets its pipeline before any reply is read, so the nodes work at once.
        var sent: [(RedisEndpoint, [Call])] = []
        for (node, calls) in plan() {
            do throws(RedisError) {
                let connection = try nodes.connection(to: node)
                for call in calls { try connection.append(command(for: call)) }
                try connection.flush()
                sent.append((node, calls))
            } catch {
                failure = error
                nodes.drop(node)
            }
        }
        // Every pipeline is read before any redirect is followed: a redirected call may go to a node
        // whose own replies would otherwise still be waiting on its connection.
        var answered: [(RedisEndpoint, [Call], [RedisReply])] = []
        for (node, calls) in sent {
            do throws(RedisError) {
                let connection = try nodes.connection(to: node)
                var replies: [RedisReply] = []
                for _ in calls { replies.append(try connection.readReply()) }
                answered.append((node, calls, replies))
            } catch {
                failure = error
                nodes.drop(node)
            }
        }
        for (node, calls, replies) in answered {
            do throws(RedisError) {
                var replies = replies
                try redoForgotten(calls, &replies, on: node)
                for (call, reply) in zip(calls, replies) {
                    for (settled, final) in try settle(call, reply) {
                        switch settled.kind {
                        case .checks(let indices):
                            for (index, decision) in zip(indices, try decisions(of: final, count: indices.count)) {
                                results[index] = .decision(decision)
                            }
                        case .reset(let index):
                            guard case .integer = final else { throw RedisError("unexpected reply to DEL: \(final)") }
                            results[index] = .reset
                        case .part(let index):
                            let part = parts[index]
                            let decided = try decisions(of: final, count: part.items.count, applied: part.mode != .each)
                            outcomes[index] = BatchOutcome(
                                decisions: decided, applied: part.mode == .each ? true : try applied(final))
                        }
                    }
                }
            } catch {
                failure = error
                nodes.drop(node)
            }
        }
        return (results, outcomes, failure)
    }

    /// The calls per node, nodes in order of first use: each node's requests by slot (stably, so a key's
    /// requests keep their order), then its parts.
    private func plan() -> [(RedisEndpoint, [Call])] {
        let cluster = nodes.isCluster
        let slots = cluster ? stateKeys.map(ClusterSlot.of) : [Int](repeating: 0, count: requests.count)
        var order: [RedisEndpoint] = []
        var perNode: [RedisEndpoint: [Call]] = [:]
        func add(_ calls: [Call], to node: RedisEndpoint) {
            if perNode[node] == nil { order.append(node) }
            perNode[node, default: []] += calls
        }
        var requestsPerNode: [RedisEndpoint: [Int]] = [:]
        var requestNodes: [RedisEndpoint] = []
        for index in requests.indices {
            let node = nodes.endpoint(forSlot: slots[index])
            if requestsPerNode[node] == nil { requestNodes.append(node) }
            requestsPerNode[node, default: []].append(index)
        }
        for node in requestNodes {
            let indices = requestsPerNode[node]!.sorted { (slots[$0], $0) < (slots[$1], $1) }
            var calls: [Call] = []
            var run: [Int] = []
            func cut() {
                if !run.isEmpty { calls.append(Call(kind: .checks(run), slot: slots[run[0]], target: node)) }
                run = []
            }
            for index in indices {
                if let first = run.first, slots[first] != slots[index] || run.count == SharedDecider.maxKeysPerCall { cut() }
                if case .reset = requests[index].operation {
                    cut()
                    calls.append(Call(kind: .reset(index), slot: slots[index], target: node))
                } else {
                    run.append(index)
                }
            }
            cut()
            add(calls, to: node)
        }
        for (index, keys) in partKeys.enumerated() {
            let slot = cluster ? ClusterSlot.of(keys[0]) : 0
            let node = nodes.endpoint(forSlot: slot)
            add([Call(kind: .part(index), slot: slot, target: node)], to: node)
        }
        return order.map { ($0, perNode[$0]!) }
    }

    /// Calls Redis did not run because it had lost the script: once the pipeline is read to its end they
    /// are made again, with the script loaded back, in their order and with the RESETs that came after the
    /// first of them, so a RESET still lands between the CHECKs around it. (A call after it that did run,
    /// because another daemon loaded the script meanwhile, keeps its place, and then no RESET is repeated
    /// after it.)
    private func redoForgotten(_ calls: [Call], _ replies: inout [RedisReply], on node: RedisEndpoint) throws(RedisError) {
        guard let first = replies.firstIndex(where: Self.isNoScript) else { return }
        try nodes.reloadScript(on: node)
        let connection = try nodes.connection(to: node)
        let ranAfter = replies.indices.contains { $0 > first && !Self.isNoScript(replies[$0]) && !isReset(calls[$0]) }
        for index in replies.indices where index >= first {
            guard Self.isNoScript(replies[index]) || (!ranAfter && isReset(calls[index])) else { continue }
            replies[index] = try connection.command(command(for: calls[index]))
        }
    }

    /// Follows a call's redirects until it has a reply of its own; a call split on `TRYAGAIN` comes back as
    /// its single-key calls, in order.
    private mutating func settle(_ call: Call, _ reply: RedisReply) throws(RedisError) -> [(Call, RedisReply)] {
        var queue: [(Call, RedisReply?)] = [(call, reply)]
        var settled: [(Call, RedisReply)] = []
        var followed = 0
        while !queue.isEmpty {
            var (call, known) = queue.removeFirst()
            let reply: RedisReply
            if let known { reply = known } else { reply = try send(call) }
            guard let redirect = ClusterRedirect(reply, from: call.target) else {
                settled.append((call, reply))
                continue
            }
            followed += 1
            redirects += 1
            guard followed <= Self.maxRedirects, clock.nanosecondsNow() < deadline else {
                throw RedisError("Redis Cluster redirects without end (the last: \(reply))")
            }
            switch redirect {
            case .moved(let slot, let node):
                nodes.learn(slot: slot, movedTo: node)
                topologyChanged = true
                call.target = node
                call.asking = false
            case .ask(let node):
                call.target = node
                call.asking = true
            case .tryAgain:
                call.target = nodes.endpoint(forSlot: call.slot)
                call.asking = false
                if case .checks(let indices) = call.kind, indices.count > 1 {
                    let singles = indices.map { index in
                        (Call(kind: .checks([index]), slot: call.slot, target: call.target), RedisReply?.none)
                    }
                    queue.insert(contentsOf: singles, at: 0)
                    continue
                }
                // One key cannot be split between nodes, and a part must stay one call: the migration is
                // between two steps.
                usleep(1_000)
            }
            queue.insert((call, nil), at: 0)
        }
        return settled
    }

    /// Makes one call on its own (after `ASKING` when asked to), loading the script again if the node has
    /// lost it.
    private func send(_ call: Call) throws(RedisError) -> RedisReply {
        do throws(RedisError) {
            let connection = try nodes.connection(to: call.target)
            for attempt in 0..<2 {
                if call.asking { try connection.append([Array("ASKING".utf8)]) }
                try connection.append(command(for: call))
                if call.asking { _ = try connection.readReply() }
                let reply = try connection.readReply()
                guard Self.isNoScript(reply), attempt == 0 else { return reply }
                try nodes.reloadScript(on: call.target)
            }
            preconditionFailure("unreachable: the loop returns on its second attempt")
        } catch {
            nodes.drop(call.target)
            throw error
        }
    }

    private static func isNoScript(_ reply: RedisReply) -> Bool {
        if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") { return true }
        return false
    }

    private func isReset(_ call: Call) -> Bool {
        if case .reset = call.kind { return true }
        return false
    }

    private func command(for call: Call) -> [[UInt8]] {
        switch call.kind {
        case .reset(let index):
            return [Array("DEL".utf8), stateKeys[index]]
        case .checks(let indices):
            let items = indices.map { index -> (cost: Int64, limit: Limit, role: DecisionBatch.Role) in
                guard case .check(let cost, let limit) = requests[index].operation else {
                    preconditionFailure("a RESET is a call of its own")
                }
                return (cost, limit, .denies)
            }
            return Self.scriptCall(sha: nodes.sha, keys: indices.map { stateKeys[$0] }, mode: .each, items: items)
        case .part(let index):
            let part = parts[index]
            return Self.scriptCall(
                sha: nodes.sha, keys: partKeys[index], mode: part.mode, items: part.items.map { ($0.cost, $0.limit, $0.role) })
        }
    }

    /// `EVALSHA` of the decision script (its arguments: `DecisionScript`'s header), Redis's clock.
    static func scriptCall(
        sha: String, keys: [[UInt8]], mode: Part.Mode, items: [(cost: Int64, limit: Limit, role: DecisionBatch.Role)]
    ) -> [[UInt8]] {
        var limits: [Limit] = []
        var itemWords: [[UInt8]] = []
        for item in items {
            let number: Int
            if let known = limits.firstIndex(of: item.limit) {
                number = known
            } else {
                number = limits.count
                limits.append(item.limit)
            }
            itemWords += [Array("\(number + 1)".utf8), Array("\(item.cost)".utf8), Array("\(item.role.rawValue)".utf8)]
        }
        var words: [[UInt8]] = [Array("EVALSHA".utf8), Array(sha.utf8), Array("\(keys.count)".utf8)]
        words += keys
        words += [[], Array(mode.rawValue.utf8), Array("\(limits.count)".utf8)]
        for limit in limits {
            words += [
                Array(DecisionScript.code(limit.algorithm).utf8), Array("\(limit.limit)".utf8),
                Array("\(limit.windowNanos)".utf8), Array("\(limit.burst)".utf8),
                Array("\(DecisionScript.reduction(limit))".utf8),
            ]
        }
        return words + itemWords
    }

    /// The script's decisions for `count` items (and, when `applied`, the applied flag after them).
    private func decisions(of reply: RedisReply, count: Int, applied: Bool = false) throws(RedisError) -> [Decision] {
        guard case .array(let values) = reply, values.count == count * 3 + (applied ? 1 : 0) else {
            throw RedisError("unexpected reply from the decision script: \(reply)")
        }
        var decisions: [Decision] = []
        decisions.reserveCapacity(count)
        for item in 0..<count {
            let at = item * 3
            decisions.append(Decision(
                allowed: try Self.number(values[at]) == 1, remaining: try Self.number(values[at + 1]),
                resetMillis: try Self.number(values[at + 2])))
        }
        return decisions
    }

    private func applied(_ reply: RedisReply) throws(RedisError) -> Bool {
        guard case .array(let values) = reply, let last = values.last else {
            throw RedisError("unexpected reply from the decision script: \(reply)")
        }
        return try Self.number(last) == 1
    }

    private static func number(_ value: RedisReply) throws(RedisError) -> Int64 {
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
