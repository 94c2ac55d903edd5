import DaemonConfig

/// A Redis Cluster's slot map: each slot's primary, from `CLUSTER SLOTS`, patched by `MOVED` replies.
struct SlotMap {
    private(set) var primaries: [RedisEndpoint]
    /// Each slot's primary, as an index into `primaries`.
    private var owners: [UInt16]

    /// The map in a `CLUSTER SLOTS` reply from `node`; nodes are reached with `node`'s credentials, and an
    /// empty address means `node`'s host.
    init(clusterSlots reply: RedisReply, from node: RedisEndpoint) throws(RedisError) {
        guard case .array(let ranges) = reply else { throw RedisError("unexpected reply to CLUSTER SLOTS: \(reply)") }
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

    func endpoint(forSlot slot: Int) -> RedisEndpoint {
        primaries[Int(owners[slot])]
    }

    /// `MOVED`: `slot` is served by `endpoint` now.
    mutating func learn(slot: Int, movedTo endpoint: RedisEndpoint) {
        let index = primaries.firstIndex(of: endpoint) ?? {
            primaries.append(endpoint)
            return primaries.count - 1
        }()
        owners[slot] = UInt16(index)
    }

    /// A node in `CLUSTER SLOTS` (`[ip, port, id, …]`).
    private static func endpoint(_ reply: RedisReply, like node: RedisEndpoint) -> RedisEndpoint? {
        guard case .array(let fields) = reply, fields.count >= 2, case .string(let ip) = fields[0],
            case .integer(let port) = fields[1], 0 < port, port < 65_536
        else { return nil }
        return node.at(host: String(decoding: ip, as: UTF8.self), port: Int(port))
    }
}
