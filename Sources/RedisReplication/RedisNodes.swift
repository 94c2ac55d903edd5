import DaemonConfig

/// The Redis that shared mode decides in: one server, or the primaries of a Redis Cluster, found from the
/// one `url` names. `open` asks that server for `CLUSTER SLOTS`: a server without cluster support is the
/// only node; a cluster node's answer is the slot map, each slot's primary, which `endpoint(forSlot:)`
/// routes by. A `MOVED` reply patches the map at once (`learn`), and `refresh` reads it again whole.
/// Connections are opened when first needed, each with the decision script loaded.
///
/// Not thread-safe: the shared decider's thread owns it.
final class RedisNodes {
    let seed: RedisEndpoint
    let timeoutMillis: Int
    /// The decision script's SHA-1, the same on every node.
    private(set) var sha = ""
    private var connections: [RedisEndpoint: RedisConnection] = [:]
    /// Each slot's primary, as an index into `primaries`; nil for a server without cluster support.
    private var owners: [UInt16]?
    private(set) var primaries: [RedisEndpoint] = []
    private(set) var isOpen = false

    init(seed: RedisEndpoint, timeoutMillis: Int) {
        self.seed = seed
        self.timeoutMillis = timeoutMillis
    }

    var isCluster: Bool { owners != nil }

    /// Connects to the seed, loads the script, and learns whether it is a cluster and its slot map.
    func open() throws(RedisError) {
        close()
        let connection = try connect(to: seed)
        connections[seed] = connection
        try learnSlots(from: connection, node: seed)
        isOpen = true
    }

    /// Forgets every connection and the slot map (after a failure: the next `open` starts afresh).
    func close() {
        connections = [:]
        owners = nil
        primaries = []
        isOpen = false
    }

    func endpoint(forSlot slot: Int) -> RedisEndpoint {
        guard let owners else { return seed }
        return primaries[Int(owners[slot])]
    }

    /// The connection to `endpoint`, opened (and the script loaded) if there is none yet.
    func connection(to endpoint: RedisEndpoint) throws(RedisError) -> RedisConnection {
        if let known = connections[endpoint] { return known }
        let opened = try connect(to: endpoint)
        connections[endpoint] = opened
        return opened
    }

    /// Forgets the connection to `endpoint` (it failed; its unread replies make it unusable).
    func drop(_ endpoint: RedisEndpoint) {
        connections[endpoint] = nil
    }

    /// Loads the script again on `endpoint` (it answered `NOSCRIPT`: restarted, flushed, failed over).
    func reloadScript(on endpoint: RedisEndpoint) throws(RedisError) {
        try loadScript(try connection(to: endpoint))
    }

    /// `MOVED`: `slot` is served by `endpoint` now.
    func learn(slot: Int, movedTo endpoint: RedisEndpoint) {
        guard owners != nil else { return }
        let index = primaries.firstIndex(of: endpoint) ?? {
            primaries.append(endpoint)
            return primaries.count - 1
        }()
        owners![slot] = UInt16(index)
    }

    /// Reads the slot map again, from the first primary that answers, and closes connections to nodes that
    /// are no longer primaries.
    func refresh() throws(RedisError) {
        guard isCluster else { return }
        var lastError = RedisError("no Redis Cluster node to ask for the slot map")
        for node in [seed] + primaries {
            do throws(RedisError) {
                try learnSlots(from: try connection(to: node), node: node)
                connections = connections.filter { primaries.contains($0.key) }
                return
            } catch {
                connections[node] = nil
                lastError = error
            }
        }
        throw lastError
    }

    private func connect(to endpoint: RedisEndpoint) throws(RedisError) -> RedisConnection {
        let connection = try RedisConnection.connect(to: endpoint, timeoutMillis: timeoutMillis)
        try loadScript(connection)
        return connection
    }

    private func loadScript(_ connection: RedisConnection) throws(RedisError) {
        guard case .string(let digest) = try connection.command(["SCRIPT", "LOAD", DecisionScript.source]) else {
            throw RedisError("Redis refused to load the decision script")
        }
        sha = String(decoding: digest, as: UTF8.self)
    }

    private func learnSlots(from connection: RedisConnection, node: RedisEndpoint) throws(RedisError) {
        let reply = try connection.command(["CLUSTER", "SLOTS"])
        guard case .array(let ranges) = reply else {
            // "ERR This instance has cluster support disabled": a single server (or one behind Sentinel).
            guard case .error = reply, owners == nil else { throw RedisError("unexpected reply to CLUSTER SLOTS: \(reply)") }
            primaries = [seed]
            return
        }
        guard seed.database == 0 else {
            throw RedisError("Redis Cluster has only database 0, and the url names database \(seed.database)")
        }
        var found: [RedisEndpoint] = []
        var map = [UInt16](repeating: UInt16.max, count: ClusterSlot.count)
        for range in ranges {
            guard case .array(let fields) = range, fields.count >= 3, case .integer(let first) = fields[0],
                case .integer(let last) = fields[1], 0 <= first, first <= last, last < ClusterSlot.count,
                let primary = Self.endpoint(fields[2], like: node)
            else { throw RedisError("unexpected entry in CLUSTER SLOTS: \(range)") }
            let index = found.firstIndex(of: primary) ?? {
                found.append(primary)
                return found.count - 1
            }()
            for slot in Int(first)...Int(last) { map[slot] = UInt16(index) }
        }
        guard !found.isEmpty, !map.contains(UInt16.max) else {
            throw RedisError("the Redis Cluster does not cover all 16384 slots (CLUSTER SLOTS from \(node))")
        }
        primaries = found
        owners = map
    }

    /// A node in `CLUSTER SLOTS` (`[ip, port, id, …]`), reached with the seed's credentials; an empty ip
    /// means the host of the node that answered.
    private static func endpoint(_ reply: RedisReply, like node: RedisEndpoint) -> RedisEndpoint? {
        guard case .array(let fields) = reply, fields.count >= 2, case .string(let ip) = fields[0],
            case .integer(let port) = fields[1], 0 < port, port < 65_536
        else { return nil }
        return node.at(host: String(decoding: ip, as: UTF8.self), port: Int(port))
    }
}

/// Where a cluster node sends a command that is not its to run.
enum ClusterRedirect: Equatable {
    /// `MOVED <slot> <host>:<port>`: the slot is that node's now.
    case moved(slot: Int, to: RedisEndpoint)
    /// `ASK <slot> <host>:<port>`: the slot is migrating; ask that node, once, after `ASKING`.
    case ask(to: RedisEndpoint)
    /// `TRYAGAIN`: a multi-key call whose keys are split between the two nodes of a migrating slot.
    case tryAgain

    /// The redirect in `reply`, or nil if it is none; `node` is the node that answered (an empty host in
    /// the reply means its host).
    init?(_ reply: RedisReply, from node: RedisEndpoint) {
        guard case .error(let message) = reply else { return nil }
        if message.hasPrefix("TRYAGAIN") {
            self = .tryAgain
            return
        }
        let words = message.split(separator: " ")
        guard words.count == 3, words[0] == "MOVED" || words[0] == "ASK", let slot = Int(words[1]),
            0 <= slot, slot < ClusterSlot.count, let colon = words[2].lastIndex(of: ":"),
            let port = Int(words[2][words[2].index(after: colon)...]), 0 < port, port < 65_536
        else { return nil }
        var host = String(words[2][..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let target = node.at(host: host, port: port)
        self = words[0] == "MOVED" ? .moved(slot: slot, to: target) : .ask(to: target)
    }
}

extension RedisEndpoint {
    /// The same credentials at another node of the cluster; an empty host keeps this one's.
    func at(host: String, port: Int) -> RedisEndpoint {
        var other = self
        var host = host
        if host.isEmpty {
            if case .tcp(let known, _) = address { host = known } else { host = "127.0.0.1" }
        }
        other.address = .tcp(host: host, port: port)
        other.database = 0
        return other
    }
}
