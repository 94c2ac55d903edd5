import ArgumentParser
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DaemonConfig
import Logging
import NIOCore
import RateLimitServer
import RateLimiting
import ServiceLifecycle

@main
struct RateLimitDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ratelimitd",
        abstract: "A rate-limit decision daemon: clients ask CHECK <key> <cost>, it answers ALLOW or DENY.",
        discussion: """
            With no file it listens on 127.0.0.1:7283 with one rule, "default": token_bucket, 100 per 1m, \
            for every key. Flags override the file. See protocol.md for the protocol.
            """,
        version: RatelimitdVersion.string
    )

    @Option(name: .long, help: ArgumentHelp("TOML configuration file.", valueName: "path"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Address to listen on (default 127.0.0.1:7283).", valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("Shards and event loops; 0 means one per core (default 0).", valueName: "n"))
    var shards: Int?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default info).", valueName: "level"))
    var logLevel: String?

    @Option(name: .long, help: ArgumentHelp("Snapshot file: restored on start, saved periodically and on shutdown.", valueName: "path"))
    var snapshot: String?

    @Option(name: .long, help: ArgumentHelp("How often to save the snapshot (default 10s).", valueName: "duration"))
    var snapshotInterval: String?

    @Option(name: .long, help: ArgumentHelp("Longest graceful shutdown before stopping anyway (default 10s).", valueName: "duration"))
    var shutdownTimeout: String?

    @Option(name: .long, help: ArgumentHelp("Most keys held; past it new keys evict old ones (default 10000000).", valueName: "n"))
    var maxKeys: Int?

    @Option(name: .long, help: ArgumentHelp("How often every key is checked for freshness (default 10s).", valueName: "duration"))
    var sweepInterval: String?

    @Flag(name: .long, help: "If the snapshot cannot be read, rename it to <path>.bad-<time> and start empty.")
    var discardBadSnapshot = false

    @Flag(name: .long, help: "Validate the configuration, print what it resolves to, and exit: 0 valid, 1 invalid.")
    var checkConfig = false

    func run() throws {
        let settings: ResolvedSettings
        do {
            settings = try ResolvedSettings.resolve(self)
        } catch {
            printError("ratelimitd: invalid configuration: \(error)")
            throw ExitCode(1)
        }
        if checkConfig {
            print(settings.summary)
            return
        }
        MemoryTuning.apply()
        // Until the reload service takes SIGHUP over, a SIGHUP (from logrotate, say) must not kill the daemon
        // while it restores a large snapshot.
        signal(SIGHUP, SIG_IGN)
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "ratelimitd")
        let server = RateLimitServer(configuration: settings.server, logger: logger)
        var snapshotter: Snapshotter?
        if let path = settings.snapshotPath {
            try SnapshotRestore.restore(path: path, into: server, discardBad: discardBadSnapshot, logger: logger)
            snapshotter = server.snapshotter(path: path)
        }
        let services = Self.services(
            server: server, snapshotter: snapshotter, settings: settings, reload: self, logger: logger)
        do {
            try runBlocking {
                try await ServiceGroup(configuration: services).run()
            }
        } catch {
            logger.critical("stopped on error: \(error)")
            throw ExitCode(1)
        }
    }

    /// The server, SIGHUP reloads, and the periodic snapshot when there is a snapshot file, stopped gracefully
    /// by SIGTERM or SIGINT within the shutdown timeout.
    private static func services(
        server: RateLimitServer, snapshotter: Snapshotter?, settings: ResolvedSettings, reload flags: RateLimitDaemon,
        logger: Logger
    ) -> ServiceGroupConfiguration {
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: RateLimitService(server: server, snapshotter: snapshotter, logger: logger)),
            .init(service: ConfigReloadService(flags: flags, running: settings, server: server, logger: logger)),
            .init(service: server.sweeper(interval: .nanoseconds(settings.sweepIntervalNanos))),
        ]
        if let snapshotter {
            let interval = Duration.nanoseconds(settings.snapshotIntervalNanos)
            services.append(.init(service: SnapshotService(snapshotter: snapshotter, interval: interval, logger: logger)))
        }
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .nanoseconds(settings.shutdownTimeoutNanos)
        return configuration
    }
}
