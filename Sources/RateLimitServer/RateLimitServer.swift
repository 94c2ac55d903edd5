import Logging
import NIOCore
import NIOPosix
import RateLimiting
import ShardStore
import WireProtocol

/// The TCP server: one event loop per shard, each loop both serving connections and owning its shard.
public final class RateLimitServer: Sendable {
    public let configuration: ServerConfiguration
    private let group: MultiThreadedEventLoopGroup
    private let workers: [ShardWorker]
    private let logger: Logger

    public init(configuration: ServerConfiguration, logger: Logger) {
        precondition(configuration.shards >= 1, "at least one shard")
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.shards)
        var workers: [ShardWorker] = []
        for (index, loop) in group.makeIterator().enumerated() {
            workers.append(ShardWorker(index: index, eventLoop: loop, clock: configuration.clock))
        }
        self.workers = workers
    }

    /// Binds the listening socket and starts serving; returns the bound channel (its `localAddress` holds
    /// the port when 0 was asked for).
    public func start() async throws -> any Channel {
        let services = ConnectionServices(
            rules: configuration.rules,
            router: ShardRouter(shardCount: workers.count),
            workers: workers,
            framer: LineFramer(maxLineLength: configuration.maxLineLength),
            respLimits: RESPDecoder(),
            maxPendingReplies: configuration.maxPendingRepliesPerConnection,
            connectionIDs: ConnectionIDs()
        )
        let workers = self.workers
        let logger = self.logger
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let local = workers.firstIndex { $0.eventLoop === channel.eventLoop } ?? -1
                    let handler = ConnectionHandler(services: services, localShard: local, logger: logger)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        logger.info(
            "listening on \(channel.localAddress.map(Self.describe) ?? "?")",
            metadata: ["shards": "\(workers.count)", "rules": "\(configuration.rules.rules.count)"]
        )
        return channel
    }

    /// Closes the listener and stops every event loop.
    public func shutdown() async throws {
        try await group.shutdownGracefully()
    }

    /// Keys held per shard, for tests and statistics.
    public func keyCounts() async throws -> [Int] {
        var counts: [Int] = []
        for worker in workers {
            counts.append(try await worker.withShard { $0.keyCount }.get())
        }
        return counts
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6: "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}
