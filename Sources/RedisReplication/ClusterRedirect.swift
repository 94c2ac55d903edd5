import DaemonConfig

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
