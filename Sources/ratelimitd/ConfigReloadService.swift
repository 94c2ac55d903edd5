#if canImport(Glibc)
import Glibc
#endif
import DaemonConfig
import EnvoyService
import Logging
import RateLimitServer
import RateLimiting
import ServiceLifecycle
import ShardStore
import UnixSignals

/// SIGHUP: read the configuration file again (with the same command-line flags over it), and the Envoy YAML
/// rules, and put new and changed rules in force at once, keeping every key's state and every connection.
/// A file that does not validate is refused with a logged message, and the rules in force stay (all of
/// them: TOML and YAML are taken together or not at all). Settings that only take effect at start-up are
/// reported as needing a restart. The auth token is read again from the same file (connections already
/// authenticated stay so); naming another file, or none, takes a restart.
struct ConfigReloadService: Service {
    let flags: RateLimitDaemon
    let running: ResolvedSettings
    let server: RateLimitServer
    /// The Envoy rules in force, when the Envoy service runs.
    let envoyRules: EnvoyRulesBox?
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            reload()
        }
    }

    func reload() {
        notifier.notify("RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())")
        defer { notifier.notify("READY=1\nSTATUS=serving") }
        guard flags.config != nil || running.envoyConfigPath != nil || running.authTokenFile != nil || running.tls != nil else {
            logger.notice("SIGHUP: there is no configuration file to reload; nothing changed")
            return
        }
        let next: ResolvedSettings
        do {
            next = try ResolvedSettings.resolve(flags)
        } catch {
            logger.error("SIGHUP: configuration not reloaded, the previous rules stay in force: \(error)")
            return
        }
        server.ruleBook.replace(with: next.rules)
        if let path = flags.config {
            logger.info("reloaded configuration", metadata: ["path": "\(path)", "rules": "\(next.rules.rules.count)"])
        }
        if let envoyRules, let path = next.envoyConfigPath {
            envoyRules.replace(with: next.envoyRules)
            logger.info("reloaded Envoy rules", metadata: ["path": "\(path)", "domains": "\(next.envoyRules.domains.count)"])
        }
        if let auth = server.auth, let token = next.authToken, next.authTokenFile == running.authTokenFile {
            auth.replace(with: token)
            logger.info("reloaded the auth token", metadata: ["path": "\(next.authTokenFile ?? "")"])
        }
        if let tls = server.configuration.tls, next.tls?.files == tls.files {
            do {
                try tls.reload()
                logger.info("reloaded the TLS certificate", metadata: ["tls_cert": "\(tls.files.certificate)"])
            } catch {
                logger.error("SIGHUP: TLS certificate not reloaded, the one in force stays: \(error)")
            }
        }
        let restartOnly: [(String, String, String)] = [
            ("tls", server.configuration.tls.map { "\($0.files)" } ?? "none", next.tls.map { "\($0.files)" } ?? "none"),
            ("auth_token_file", running.authTokenFile ?? "none", next.authTokenFile ?? "none"),
            ("listen", "\(running.listen)", "\(next.listen)"),
            ("shards", "\(running.shards)", "\(next.shards)"),
            ("log_level", running.logLevel.rawValue, next.logLevel.rawValue),
            ("snapshot_path", running.snapshotPath ?? "none", next.snapshotPath ?? "none"),
            ("snapshot_interval", "\(running.snapshotIntervalNanos)", "\(next.snapshotIntervalNanos)"),
            ("shutdown_timeout", "\(running.shutdownTimeoutNanos)", "\(next.shutdownTimeoutNanos)"),
            ("max_keys", "\(running.maxKeys)", "\(next.maxKeys)"),
            ("when_full", running.whenFull.rawValue, next.whenFull.rawValue),
            ("max_memory", "\(running.maxMemory)", "\(next.maxMemory)"),
            ("max_connections", "\(running.maxConnections)", "\(next.maxConnections)"),
            ("max_input_buffer", "\(running.maxInputBuffer)", "\(next.maxInputBuffer)"),
            ("idle_timeout", "\(running.idleTimeoutNanos)", "\(next.idleTimeoutNanos)"),
            ("request_timeout", "\(running.requestTimeoutNanos)", "\(next.requestTimeoutNanos)"),
            ("sweep_interval", "\(running.sweepIntervalNanos)", "\(next.sweepIntervalNanos)"),
            ("metrics listen", running.metricsListen.map { "\($0)" } ?? "none", next.metricsListen.map { "\($0)" } ?? "none"),
            ("redis url", running.redis.map { "\($0)" } ?? "none", next.redis.map { "\($0)" } ?? "none"),
            ("redis key_prefix", running.redisKeyPrefix, next.redisKeyPrefix),
            ("redis flush_interval", "\(running.redisFlushIntervalNanos)", "\(next.redisFlushIntervalNanos)"),
            ("redis mode", running.redisShared ? "shared" : "replicate", next.redisShared ? "shared" : "replicate"),
            ("redis on_error", running.redisOnError.rawValue, next.redisOnError.rawValue),
            ("redis timeout", "\(running.redisTimeoutNanos)", "\(next.redisTimeoutNanos)"),
            ("unix_socket", running.unixSocket ?? "none", next.unixSocket ?? "none"),
            ("unix_socket_mode", String(running.unixSocketMode, radix: 8), String(next.unixSocketMode, radix: 8)),
            ("http listen", running.httpListen.map { "\($0)" } ?? "none", next.httpListen.map { "\($0)" } ?? "none"),
            ("http deny_status", "\(running.httpDenyStatus)", "\(next.httpDenyStatus)"),
            ("envoy listen", running.envoyListen.map { "\($0)" } ?? "none", next.envoyListen.map { "\($0)" } ?? "none"),
        ]
        for (name, old, new) in restartOnly where old != new {
            logger.warning("\(name) changed from \(old) to \(new); it takes effect at the next restart")
        }
    }

    /// CLOCK_MONOTONIC in microseconds, which systemd wants with RELOADING=1 to tell reloads apart.
    static func monotonicMicroseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1_000
    }
}
