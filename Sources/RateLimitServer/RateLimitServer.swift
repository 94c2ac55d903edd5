import Logging
import NIOCore
import NIOPosix
import NIOSSL
import RateLimiting
import ShardStore
import WireProtocol

/// The TCP server: `shards` event loops serve connections, and `shards` locked shards hold the keys; any
/// loop decides any key under that key's shard lock.
public final class RateLimitServer: Sendable {
    public let configuration: ServerConfiguration
    private let group: MultiThreadedEventLoopGroup
    let shards: [LockedShard]
    private let logger: Logger
    let statistics: ServerStatistics
    /// The rules in force; `replaceRules` swaps them while connections keep running.
    public let ruleBook: RuleBook
    /// Open connections, so shutdown can ask each to finish.
    private let connections = OpenConnections()
    /// Latency and error counters, one set per event loop.
    let loopMetrics: LoopMetricsTable
    /// How every listener sets up the connections it accepts, counting those it cannot.
    public var connectionSetup: ConnectionSetup { statistics.connectionSetup }
    /// What Envoy's rate limit service counts its decisions in.
    public var envoyDecisions: EnvoyDecisionCounts { statistics.envoyDecisions }

    /// The token every listener asks for; nil when none is configured.
    public let auth: AuthToken?
    /// Where every protocol's requests are decided: this server's shards.
    public let decider: any Decider

    /// `decider` makes where requests are decided, given the shards (by default from them alone) and the
    /// event loops that will serve the connections.
    public init(
        configuration: ServerConfiguration, logger: Logger,
        decider makeDecider: (_ shards: [LockedShard], _ loops: MultiThreadedEventLoopGroup) -> any Decider = { shards, _ in
            LocalDecider(shards: shards)
        }
    ) {
        precondition(configuration.shards >= 1, "at least one shard")
        self.configuration = configuration
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.shards)
        self.loopMetrics = LoopMetricsTable(loops: Array(group.makeIterator()))
        self.shards = (0..<configuration.shards).map { _ in LockedShard() }
        self.decider = makeDecider(shards, group)
        // Rounded down, so the shards together never hold more than max_keys (but each at least one key).
        let perShard = max(1, configuration.maxKeys / configuration.shards)
        // Each shard gets its share of max_memory too, at least 64 KiB (a table's smallest useful size).
        let memoryPerShard = configuration.maxMemory == 0 ? Int.max : max(65_536, configuration.maxMemory / configuration.shards)
        for shard in shards {
            shard.setMaxKeys(perShard, maxMemory: memoryPerShard, whenFull: configuration.whenFull)
        }
        self.ruleBook = RuleBook(configuration.rules)
        let clock = configuration.clock
        self.auth = configuration.authToken.map { AuthToken($0, logger: logger, now: { clock.nanosecondsNow() }) }
        self.statistics = ServerStatistics(
            startedAt: clock.nanosecondsNow(), snapshot: SnapshotStatus(),
            connectionSetup: ConnectionSetup(
                logger: logger, now: { clock.nanosecondsNow() }, maxConnections: configuration.maxConnections,
                timeouts: configuration.timeouts, maxInputBuffer: configuration.maxInputBuffer))
    }

    /// Binds the listening socket (and the unix socket, when configured) and starts serving; returns the TCP
    /// listener (its `localAddress` holds the port when 0 was asked for). Closing it closes the unix socket
    /// too, and removes its file.
    public func start() async throws -> any Channel {
        decider.start()
        let services = ConnectionServices(
            ruleBook: ruleBook,
            decider: decider,
            shards: shards,
            clock: configuration.clock,
            framer: LineFramer(maxLineLength: configuration.maxLineLength),
            respLimits: RESPDecoder(),
            statistics: statistics,
            auth: auth
        )
        let channel = try await bootstrap(services).bind(host: configuration.host, port: configuration.port).get()
        var unix = ""
        if let socket = configuration.unixSocket {
            let listener: any Channel
            do {
                listener = try await UnixSocketFile.bind(path: socket.path, mode: socket.mode, bootstrap(services))
            } catch {
                try? await channel.close()
                throw error
            }
            channel.closeFuture.whenComplete { _ in listener.close(promise: nil) }
            unix = " and \(socket.path)"
        }
        logger.info(
            "listening on \(channel.localAddress.map(Self.describe) ?? "?")\(unix)",
            metadata: ["shards": "\(shards.count)", "rules": "\(ruleBook.current.rules.rules.count)"]
        )
        return channel
    }

    /// How every client listener (TCP, unix socket) sets up what it accepts.
    private func bootstrap(_ services: ConnectionServices) -> ServerBootstrap {
        let logger = self.logger
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { [connectionSetup] channel in connectionSetup.setUpListener(channel, listener: .client) }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [connections, loopMetrics, connectionSetup, tls = configuration.tls] channel in
                connectionSetup.setUp(channel, listener: .client) { channel in
                    if let tls {
                        try channel.pipeline.syncOperations.addHandlers([
                            PlaintextRefusal(), NIOSSLServerHandler(context: tls.context),
                        ])
                    }
                    let handler = ConnectionHandler(
                        services: services, allocator: channel.allocator,
                        loopMetrics: loopMetrics.metrics(for: channel.eventLoop), eventLoop: channel.eventLoop,
                        logger: logger, timeouts: connectionSetup.timeouts, timeoutCounts: connectionSetup.timeoutCounts,
                        tlsFailures: tls == nil ? nil : connectionSetup.tlsFailureCount,
                        inputBudget: connectionSetup.inputBudget)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    connections.register(channel)
                }
            }
    }

    /// Asks every open connection to answer what it has read and close, and waits until they have. Call
    /// after closing the listener; a client that never reads its replies holds this up until the shutdown
    /// timeout cancels it.
    public func quiesce() async {
        await connections.quiesce()
    }

    /// Records that graceful shutdown has begun, so that what runs after the server (the final replication
    /// flush) knows how much of the shutdown timeout is left.
    public func noteShutdownBegan() {
        _ = statistics.shutdownStartedAt.compareExchange(
            expected: 0, desired: configuration.clock.nanosecondsNow(), ordering: .relaxed)
    }

    /// Asks every event loop to run a task; the probe tells later whether all did: what the watchdog
    /// pings for.
    public func probeEventLoops() -> EventLoopProbe {
        let probe = EventLoopProbe(expected: shards.count)
        for loop in group.makeIterator() { loop.execute { probe.ran() } }
        return probe
    }

    /// The event loops that serve connections; the Envoy listener runs on them too.
    public var eventLoops: MultiThreadedEventLoopGroup { group }

    /// Stops the decider's own work, then every event loop (closing any connection still open).
    public func shutdown() async throws {
        await decider.stop()
        try await group.shutdownGracefully()
    }

    /// The snapshot writer for `path`, sharing this server's shards.
    public func snapshotter(path: String) -> Snapshotter {
        Snapshotter(path: path, shards: shards, clock: configuration.clock, status: statistics.snapshot)
    }

    /// The sweeper for this server's shards: a full pass over every table per `interval`.
    public func sweeper(interval: Duration) -> SweepService {
        let memory = MemoryReturn(statistics: statistics)
        return SweepService(
            shards: shards, clock: configuration.clock, interval: interval, logger: logger, afterPass: memory.afterPass)
    }

    /// Turns on change logging in every shard and returns what a replicator takes the changes from. Call
    /// before `restore` and `start`, so that nothing changes unlogged.
    public func replicationFeed() -> ReplicationFeed {
        ReplicationFeed(shards: shards, clock: configuration.clock, status: statistics.replication) { [statistics] in
            let began = statistics.shutdownStartedAt.load(ordering: .relaxed)
            return began == 0 ? nil : began
        }
    }

    /// Puts every key of a decoded snapshot into its shard; call before `start`.
    public func restore(_ contents: SnapshotCodec.Contents) {
        statistics.snapshot.record(savedAt: contents.savedAt, keys: contents.entries.count)
        let router = ShardRouter(shardCount: shards.count)
        let now = configuration.clock.nanosecondsNow()
        for entry in contents.entries {
            entry.key.withUnsafeBytes { key in
                let hash = KeyHash.hash(key)
                shards[router.shard(forHash: hash)].restore(
                    key: key, hash: hash, state: entry.state, windowNanos: entry.windowNanos, now: now)
            }
        }
    }

    /// Keys held per shard, for tests and statistics.
    public func keyCounts() -> [Int] {
        shards.map { $0.withShard { $0.keyCount } }
    }

    public static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v6: "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
        default: "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
        }
    }
}
