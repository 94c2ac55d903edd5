import Foundation

/// A throwaway Redis Cluster for a test: `primaries` `redis-server --cluster-enabled yes` processes on free
/// loopback ports, joined by `redis-cli --cluster create` (no replicas), ready once every node says
/// `cluster_state:ok`. Each node is stopped (by pid) with the cluster.
public final class RedisClusterProcess: @unchecked Sendable {
    // @unchecked: one test drives it from one task.
    public let nodes: [RedisServerProcess]

    public static var isAvailable: Bool { ExternalTool.available("redis-server", "redis-cli") }

    public init(primaries: Int = 3) throws {
        nodes = try (0..<primaries).map { _ in
            try RedisServerProcess(arguments: [
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
            ], clusterPort: true)
        }
        let created = try ExternalTool.run(
            "redis-cli", ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + ["--cluster-replicas", "0", "--cluster-yes"])
        guard created.status == 0 else {
            throw LineClient.Failure(description: "redis-cli --cluster create failed: \(created.output)")
        }
        try waitUntilSettled()
    }

    /// A URL naming one node, as a user would give it.
    public var url: String { nodes[0].url }

    /// Each node's `CLUSTER INFO` says `cluster_state:ok` and `redis-cli --cluster check` finds the nodes
    /// agreeing on every slot, with none open (after `create` or a resharding).
    public func waitUntilSettled() throws {
        let deadline = Date().addingTimeInterval(30)
        var last = ""
        while Date() < deadline {
            let states = try nodes.map { try ExternalTool.run("redis-cli", ["-p", "\($0.port)", "CLUSTER", "INFO"]).output }
            if states.allSatisfy({ $0.contains("cluster_state:ok") }) {
                let check = try ExternalTool.run("redis-cli", ["--cluster", "check", "127.0.0.1:\(nodes[0].port)"])
                if check.status == 0, !check.output.contains("[WARNING]") { return }
                last = check.output
            } else {
                last = states.joined(separator: "\n")
            }
            usleep(50_000)
        }
        throw LineClient.Failure(description: "the Redis Cluster did not settle: \(last)")
    }

    /// Each node's cluster ID, in `nodes` order.
    public func nodeIDs() throws -> [String] {
        try nodes.map { node in
            let reply = try ExternalTool.run("redis-cli", ["-p", "\(node.port)", "CLUSTER", "MYID"]).output
            return reply.trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// Moves `slots` slots from node `from` to node `to` with `redis-cli --cluster reshard`, keys and all;
    /// returns its status and output.
    public func reshard(slots: Int, from: Int, to: Int) throws -> (status: Int32, output: String) {
        let ids = try nodeIDs()
        return try ExternalTool.run(
            "redis-cli",
            [
                "--cluster", "reshard", "127.0.0.1:\(nodes[0].port)", "--cluster-from", ids[from], "--cluster-to", ids[to],
                "--cluster-slots", "\(slots)", "--cluster-yes", "--cluster-pipeline", "10",
            ], timeoutSeconds: 120)
    }

    /// Keys on each node (`DBSIZE`), in `nodes` order.
    public func keyCounts() throws -> [Int] {
        try nodes.map { try $0.integer("DBSIZE") }
    }
}
