import ArgumentParser
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DaemonConfig
import EnvoyService
import HTTPCheck
import Logging
import NIOCore
import RateLimitServer
import RateLimiting
import MetricsExporter
import RedisReplication
import ShardStore
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

    @Option(name: .long, help: ArgumentHelp(
        "Most memory the key table holds, as Redis writes maxmemory (2gb, 512mb, bytes); 0 for no bound (default 2gb).",
        valueName: "size"))
    var maxMemory: String?

    @Option(name: .long, help: ArgumentHelp(
        "A new key when max_keys are held and every key that could make room is out of quota: deny (default) or allow.",
        valueName: "choice"))
    var whenFull: String?

    @Option(name: .long, help: ArgumentHelp(
        "Most connections open at once over every listener; one more is told ERR busy and closed (default 10000).",
        valueName: "n"))
    var maxConnections: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Most unparsed input all client connections hold together; past it the largest holders are closed (default 64mb).",
        valueName: "size"))
    var maxInputBuffer: String?

    @Option(name: .long, help: ArgumentHelp(
        "Close a connection that sends nothing for this long; 0 for never (default 300s).", valueName: "duration"))
    var idleTimeout: String?

    @Option(name: .long, help: ArgumentHelp(
        "PEM certificate (chain) of the client port; with --tls-key it speaks TLS, for both protocols; reloaded on SIGHUP.",
        valueName: "path"))
    var tlsCert: String?

    @Option(name: .long, help: ArgumentHelp("PEM private key of --tls-cert.", valueName: "path"))
    var tlsKey: String?

    @Option(name: .long, help: ArgumentHelp(
        "PEM CA certificate(s): clients must present a certificate one of them issued.", valueName: "path"))
    var tlsClientCA: String?

    @Option(name: .long, help: ArgumentHelp(
        "Serve the client protocols on this unix socket too (an absolute path); \"\" for none (default none).",
        valueName: "path"))
    var unixSocket: String?

    @Option(name: .long, help: ArgumentHelp(
        "The unix socket's permission bits, in octal (default 0666: anyone on the machine, as loopback).",
        valueName: "mode"))
    var unixSocketMode: String?

    @Option(name: .long, help: ArgumentHelp(
        "File holding the token clients must give (AUTH <token>; gRPC authorization: Bearer <token>); reloaded on SIGHUP.",
        valueName: "path"))
    var authTokenFile: String?

    @Option(name: .long, help: ArgumentHelp(
        "Close a connection whose request is still incomplete this long after its first byte, or whose replies wait unread this long; 0 for never (default 10s).",
        valueName: "duration"))
    var requestTimeout: String?

    @Option(name: .long, help: ArgumentHelp("How often every key is checked for freshness (default 10s).", valueName: "duration"))
    var sweepInterval: String?

    @Option(name: .long, help: ArgumentHelp(
        "Replicate to Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH; \"\" for none.",
        valueName: "url"))
    var redis: String?

    @Option(name: .long, help: ArgumentHelp(
        "replicate (this daemon decides, Redis keeps a copy) or shared (Redis decides: one limit for every daemon on it); default replicate.",
        valueName: "mode"))
    var redisMode: String?

    @Option(name: .long, help: ArgumentHelp(
        "Shared mode, when Redis cannot answer in time: local (decide from this daemon's state), allow or deny (default local).",
        valueName: "choice"))
    var redisOnError: String?

    @Option(name: .long, help: ArgumentHelp("Shared mode: longest wait for Redis, at most 10s (default 100ms).", valueName: "duration"))
    var redisTimeout: String?

    @Option(name: .long, help: ArgumentHelp("Prefix of every key written to Redis (default ratelimitd:).", valueName: "prefix"))
    var redisKeyPrefix: String?

    @Option(name: .long, help: ArgumentHelp("How often changes are written to Redis (default 50ms).", valueName: "duration"))
    var redisFlushInterval: String?

    @Option(name: .long, help: ArgumentHelp(
        "Serve GET /metrics (Prometheus) on this address; \"\" for none (default 127.0.0.1:9283).", valueName: "host:port"))
    var metricsListen: String?

    @Option(name: .long, help: ArgumentHelp(
        "Serve Envoy's gRPC rate limit service (HTTP/2 cleartext) on this address; \"\" for none (default none).",
        valueName: "host:port"))
    var envoyListen: String?

    @Option(name: .long, help: ArgumentHelp(
        "envoyproxy/ratelimit's YAML rules for it: a file, or a directory of .yaml/.yml files.", valueName: "path"))
    var envoyConfig: String?

    @Option(name: .long, help: ArgumentHelp(
        "Serve GET /check (forward-auth gateways: Caddy, Traefik, nginx auth_request) on this address; \"\" for none (default none).",
        valueName: "host:port"))
    var httpListen: String?

    @Option(name: .long, help: ArgumentHelp(
        "The status of a denied GET /check: 400 to 499 (default 429; 403 for nginx's auth_request).", valueName: "status"))
    var httpDenyStatus: Int?

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
        // hiredis writes with write(2): a Redis that went away must be an error to retry, not a SIGPIPE that
        // kills the daemon. (NIO ignores it too, but only once it opens its first socket, after the restore.)
        signal(SIGPIPE, SIG_IGN)
        // Their default action ends the process; the daemon gives them no meaning, so a stray signal (a
        // script meant for another service) must not stop the rate limiter.
        signal(SIGUSR1, SIG_IGN)
        signal(SIGUSR2, SIG_IGN)
        let journal = KeyValueLogHandler.standardErrorIsJournal
        LoggingSystem.bootstrap { _ in
            var handler = KeyValueLogHandler(journal: journal)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "ratelimitd")
        for warning in settings.exposureWarnings {
            logger.warning("\(warning.dropFirst("warning: ".count))")
        }
        let server = RateLimitServer(configuration: settings.server, logger: logger) { shards, loops in
            guard let endpoint = settings.redis, settings.redisShared else { return LocalDecider(shards: shards) }
            return SharedDecider(
                settings: .init(
                    endpoint: endpoint, keyPrefix: settings.redisKeyPrefix,
                    timeoutMillis: Int(settings.redisTimeoutNanos / 1_000_000), onError: settings.redisOnError),
                shards: shards, loops: loops, clock: settings.server.clock, logger: logger)
        }
        // Before anything is restored, so that a snapshot newer than Redis is written back to it. Shared
        // mode keeps no copy: Redis holds the state.
        let feed = settings.redis.flatMap { _ in settings.redisShared ? nil : server.replicationFeed() }
        var snapshotter: Snapshotter?
        var snapshotSavedAt: Int64?
        if let path = settings.snapshotPath {
            snapshotSavedAt = try SnapshotRestore.restore(
                path: path, into: server, discardBad: discardBadSnapshot, logger: logger)
            snapshotter = server.snapshotter(path: path)
        }
        var replicator: Replicator?
        if let endpoint = settings.redis, let feed {
            let replication = Replicator.Settings(endpoint: endpoint, keyPrefix: settings.redisKeyPrefix)
            replicator = Replicator(settings: replication, feed: feed, logger: logger)
            replicator?.restoreAtStart(snapshotSavedAt: snapshotSavedAt)
        }
        // Constants for the closure below, which may not capture variables.
        let (finalSnapshotter, finalReplicator) = (snapshotter, replicator)
        do {
            try runBlocking {
                var metrics: MetricsEndpoint?
                if let address = settings.metricsListen {
                    metrics = try await MetricsEndpoint.bind(
                        host: address.host, port: address.port, server: server, logger: logger)
                }
                var envoy: (server: SideListener, rules: EnvoyRulesBox)?
                if let address = settings.envoyListen {
                    let rules = EnvoyRulesBox(settings.envoyRules)
                    let bound = try await EnvoyServer.bind(
                        host: address.host, port: address.port, rules: rules, server: server, logger: logger)
                    envoy = (bound, rules)
                }
                var http: SideListener?
                if let address = settings.httpListen {
                    http = try await HTTPCheckServer.bind(
                        host: address.host, port: address.port, denyStatus: settings.httpDenyStatus, server: server,
                        logger: logger)
                }
                let services = Self.services(
                    server: server, snapshotter: finalSnapshotter, replicator: finalReplicator,
                    metrics: metrics, envoy: envoy, http: http, settings: settings, reload: self, logger: logger)
                try await ServiceGroup(configuration: services).run()
            }
        } catch {
            logger.critical("stopped on error: \(error)")
            throw ExitCode(1)
        }
    }

    /// The server, SIGHUP reloads, the periodic snapshot when there is a snapshot file and the replicator when
    /// there is Redis, stopped gracefully by SIGTERM or SIGINT within the shutdown timeout. A group stops its
    /// services in reverse order, so the replicator, listed first, makes its final flush last.
    private static func services(
        server: RateLimitServer, snapshotter: Snapshotter?, replicator: Replicator?,
        metrics: MetricsEndpoint?,
        envoy: (server: SideListener, rules: EnvoyRulesBox)?, http: SideListener?, settings: ResolvedSettings,
        reload flags: RateLimitDaemon,
        logger: Logger
    ) -> ServiceGroupConfiguration {
        let notifier = SystemdNotifier.fromEnvironment()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let replicator {
            let interval = Duration.nanoseconds(settings.redisFlushIntervalNanos)
            services.append(.init(service: ReplicationService(
                replicator: replicator, interval: interval, shutdownTimeoutNanos: settings.shutdownTimeoutNanos,
                logger: logger)))
        }
        services += [
            .init(service: RateLimitService(
                server: server, snapshotter: snapshotter, notifier: notifier, logger: logger)),
            .init(service: ConfigReloadService(
                flags: flags, running: settings, server: server, envoyRules: envoy?.rules, notifier: notifier,
                logger: logger)),
            .init(service: server.sweeper(interval: .nanoseconds(settings.sweepIntervalNanos))),
        ]
        if let snapshotter {
            let interval = Duration.nanoseconds(settings.snapshotIntervalNanos)
            services.append(.init(service: SnapshotService(snapshotter: snapshotter, interval: interval, logger: logger)))
        }
        if let metrics { services.append(.init(service: MetricsService(endpoint: metrics))) }
        if let envoy { services.append(.init(service: SideListenerService(envoy.server))) }
        if let http { services.append(.init(service: SideListenerService(http))) }
        services.append(.init(service: WatchdogService(server: server, notifier: notifier)))
        services.append(.init(service: ShutdownClockService(server: server, notifier: notifier)))
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = .nanoseconds(settings.shutdownTimeoutNanos)
        // A service that failed cancels the rest; none may keep the process up for long after that.
        configuration.maximumCancellationDuration = .nanoseconds(settings.shutdownTimeoutNanos)
        return configuration
    }
}
