import DaemonConfig
import EnvoyRules
import Logging
import NIOCore
import RateLimitServer
import RateLimiting
import RedisReplication
import ShardStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The settings the daemon runs with: the file's, overridden by flags, filled in by defaults.
struct ResolvedSettings {
    var listen: ListenAddress
    var shards: Int
    var logLevel: Logger.Level
    var rules: RuleSet
    var configPath: String?
    var shutdownTimeoutNanos: Int64
    var snapshotPath: String?
    var snapshotIntervalNanos: Int64
    var maxKeys: Int
    var whenFull = WhenFull.deny
    var maxMemory = DaemonSettings.defaultMaxMemory
    var maxConnections = ServerConfiguration.defaultMaxConnections
    /// 0: never.
    var idleTimeoutNanos = DaemonSettings.defaultIdleTimeoutNanos
    var requestTimeoutNanos = DaemonSettings.defaultRequestTimeoutNanos
    var maxInputBuffer = ServerConfiguration.defaultMaxInputBuffer
    var sweepIntervalNanos: Int64
    var redis: RedisEndpoint?
    var redisKeyPrefix: String
    var redisFlushIntervalNanos: Int64
    /// With `redis`: Redis decides (`shared`) rather than keeping a copy (`replicate`).
    var redisShared = false
    var redisOnError = SharedDecider.OnError.local
    var redisTimeoutNanos = DaemonSettings.defaultRedisTimeoutNanos
    /// nil: no metrics endpoint.
    var metricsListen: ListenAddress?
    /// nil: no Envoy rate limit service.
    var envoyListen: ListenAddress?
    var envoyConfigPath: String?
    /// nil: no unix socket.
    var unixSocket: String?
    var unixSocketMode = DaemonSettings.defaultUnixSocketMode
    /// nil: no HTTP check endpoint.
    var httpListen: ListenAddress?
    var httpDenyStatus = DaemonSettings.defaultHTTPDenyStatus
    /// `auth_token_file`, and the token read from it here, so `--check-config` and SIGHUP check it too.
    var authTokenFile: String?
    var authToken: [UInt8]?
    /// The token file can be read by users other than its owner.
    var authTokenExposed = false
    /// The client port's TLS files, checked here (parsed into a context) so `--check-config` and SIGHUP
    /// refuse ones that cannot be used.
    var tls: TLSCertificates?
    /// The Envoy rules, loaded and validated here, so `--check-config` and SIGHUP check them too.
    var envoyRules: EnvoyRuleSet = .empty

    var server: ServerConfiguration {
        ServerConfiguration(
            host: listen.host, port: listen.port, shards: shards, rules: rules, maxKeys: maxKeys, maxMemory: maxMemory, whenFull: whenFull,
            maxConnections: maxConnections,
            timeouts: ConnectionTimeouts(idleNanos: idleTimeoutNanos, requestNanos: requestTimeoutNanos),
            maxInputBuffer: maxInputBuffer,
            authToken: authToken, tls: tls, unixSocket: unixSocket.map { ($0, unixSocketMode) })
    }

    static func resolve(_ flags: RateLimitDaemon) throws -> ResolvedSettings {
        let configPath = flags.config
        let file = try configPath.map { path throws(ConfigError) in try ConfigFile.load(path: path) } ?? DaemonSettings()
        var resolved = ResolvedSettings(
            listen: file.listen ?? .default,
            shards: file.shards ?? 0,
            logLevel: Logger.Level(rawValue: (file.logLevel ?? .info).rawValue) ?? .info,
            rules: .defaults,
            configPath: configPath,
            shutdownTimeoutNanos: file.shutdownTimeoutNanos ?? DaemonSettings.defaultShutdownTimeoutNanos,
            snapshotPath: file.snapshotPath,
            snapshotIntervalNanos: file.snapshotIntervalNanos ?? DaemonSettings.defaultSnapshotIntervalNanos,
            maxKeys: file.maxKeys ?? ServerConfiguration.defaultMaxKeys,
            sweepIntervalNanos: file.sweepIntervalNanos ?? DaemonSettings.defaultSweepIntervalNanos,
            redis: file.redisEndpoint,
            redisKeyPrefix: file.redisKeyPrefix ?? DaemonSettings.defaultRedisKeyPrefix,
            redisFlushIntervalNanos: file.redisFlushIntervalNanos ?? DaemonSettings.defaultRedisFlushIntervalNanos,
            metricsListen: file.metricsListen ?? DaemonSettings.defaultMetricsListen
        )
        resolved.redisShared = file.redisMode == "shared"
        resolved.redisOnError = file.redisOnError.flatMap(SharedDecider.OnError.init(rawValue:)) ?? .local
        resolved.redisTimeoutNanos = file.redisTimeoutNanos ?? DaemonSettings.defaultRedisTimeoutNanos
        if let text = flags.metricsListen {
            resolved.metricsListen = try optionalListen(text, flag: "--metrics-listen", off: "no metrics")
        }
        try resolveEnvoy(flags, file: file, into: &resolved)
        try resolveHTTP(flags, file: file, into: &resolved)
        try resolveUnixSocket(flags, file: file, into: &resolved)
        if let path = flags.authTokenFile {
            guard !path.isEmpty else { throw FlagError("--auth-token-file needs a file path") }
            resolved.authTokenFile = path
        } else {
            resolved.authTokenFile = file.authTokenFile
        }
        if let path = resolved.authTokenFile {
            (resolved.authToken, resolved.authTokenExposed) = try readAuthToken(path)
        }
        resolved.tls = try resolveTLS(flags, file: file)
        try resolveRedis(flags, into: &resolved)
        resolved.idleTimeoutNanos = try flags.idleTimeout.map { text throws(FlagError) in
            try timeout(text, flag: "--idle-timeout", example: "300s")
        } ?? file.idleTimeoutNanos ?? DaemonSettings.defaultIdleTimeoutNanos
        resolved.requestTimeoutNanos = try flags.requestTimeout.map { text throws(FlagError) in
            try timeout(text, flag: "--request-timeout", example: "10s")
        } ?? file.requestTimeoutNanos ?? DaemonSettings.defaultRequestTimeoutNanos
        resolved.maxInputBuffer = file.maxInputBuffer ?? ServerConfiguration.defaultMaxInputBuffer
        if let text = flags.maxInputBuffer {
            resolved.maxInputBuffer = try size(text, flag: "--max-input-buffer", zeroAllowed: false)
        }
        resolved.maxConnections = file.maxConnections ?? ServerConfiguration.defaultMaxConnections
        if let count = flags.maxConnections {
            let range = DaemonSettings.maxConnectionsRange
            guard range.contains(count) else {
                throw FlagError("--max-connections must be from \(range.lowerBound) to \(range.upperBound), got \(count)")
            }
            resolved.maxConnections = count
        }
        resolved.whenFull = file.whenFull.flatMap(WhenFull.init(rawValue:)) ?? .deny
        resolved.maxMemory = file.maxMemory ?? DaemonSettings.defaultMaxMemory
        if let text = flags.maxMemory {
            resolved.maxMemory = try size(text, flag: "--max-memory", zeroAllowed: true)
        }
        if let text = flags.whenFull {
            guard let choice = WhenFull(rawValue: text) else {
                throw FlagError("--when-full must be deny or allow, got \"\(text)\"")
            }
            resolved.whenFull = choice
        }
        if let maxKeys = flags.maxKeys {
            guard maxKeys >= 1 else { throw FlagError("--max-keys must be a positive integer, got \(maxKeys)") }
            resolved.maxKeys = maxKeys
        }
        if let text = flags.sweepInterval {
            resolved.sweepIntervalNanos = try duration(text, flag: "--sweep-interval")
        }
        let (listen, shards, logLevel) = (flags.listen, flags.shards, flags.logLevel)
        if let path = flags.snapshot {
            guard !path.isEmpty else { throw FlagError("--snapshot needs a file path") }
            resolved.snapshotPath = path
        }
        if let text = flags.snapshotInterval {
            resolved.snapshotIntervalNanos = try duration(text, flag: "--snapshot-interval")
        }
        if let text = flags.shutdownTimeout {
            resolved.shutdownTimeoutNanos = try duration(text, flag: "--shutdown-timeout")
        }
        if let listen {
            guard let address = ListenAddress(parsing: listen) else {
                throw FlagError("--listen must be HOST:PORT (IPv6 as [::1]:7283), got \"\(listen)\"")
            }
            resolved.listen = address
        }
        if let shards {
            guard shards >= 0, shards <= DaemonSettings.maxShards else {
                throw FlagError("--shards must be from 0 (one per core) to \(DaemonSettings.maxShards), got \(shards)")
            }
            resolved.shards = shards
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else {
                throw FlagError("--log-level must be one of \(LogLevelName.namesList), got \"\(logLevel)\"")
            }
            resolved.logLevel = level
        }
        if resolved.shards == 0 {
            resolved.shards = System.coreCount
        }
        if let rules = file.rules {
            // ConfigFile already built this set once to validate it, so it cannot fail here.
            resolved.rules = try RuleSet(rules)
        }
        return resolved
    }

    private static func resolveUnixSocket(
        _ flags: RateLimitDaemon, file: DaemonSettings, into resolved: inout ResolvedSettings
    ) throws {
        resolved.unixSocket = file.unixSocket
        if let path = flags.unixSocket {
            if let problem = path.isEmpty ? nil : DaemonSettings.unixSocketProblem(path) {
                throw FlagError("--unix-socket \(problem), got \"\(path)\"")
            }
            resolved.unixSocket = path
        }
        if resolved.unixSocket == "" { resolved.unixSocket = nil }
        resolved.unixSocketMode = file.unixSocketMode ?? DaemonSettings.defaultUnixSocketMode
        if let text = flags.unixSocketMode {
            guard let mode = DaemonSettings.parseMode(text) else {
                throw FlagError("--unix-socket-mode must be octal permission bits such as 0660, got \"\(text)\"")
            }
            resolved.unixSocketMode = mode
        }
    }

    private static func resolveHTTP(_ flags: RateLimitDaemon, file: DaemonSettings, into resolved: inout ResolvedSettings) throws {
        resolved.httpListen = file.httpListen ?? nil
        if let text = flags.httpListen {
            resolved.httpListen = try optionalListen(text, flag: "--http-listen", off: "none")
        }
        resolved.httpDenyStatus = file.httpDenyStatus ?? DaemonSettings.defaultHTTPDenyStatus
        if let status = flags.httpDenyStatus {
            let range = DaemonSettings.httpDenyStatuses
            guard range.contains(status) else {
                throw FlagError("--http-deny-status must be an HTTP status from \(range.lowerBound) to \(range.upperBound), got \(status)")
            }
            resolved.httpDenyStatus = status
        }
    }

    private static func resolveEnvoy(_ flags: RateLimitDaemon, file: DaemonSettings, into resolved: inout ResolvedSettings) throws {
        resolved.envoyListen = file.envoyListen ?? nil
        resolved.envoyConfigPath = file.envoyConfigPath
        if let text = flags.envoyListen {
            resolved.envoyListen = try optionalListen(text, flag: "--envoy-listen", off: "none")
        }
        if let path = flags.envoyConfig {
            guard !path.isEmpty else { throw FlagError("--envoy-config needs a YAML file or directory") }
            resolved.envoyConfigPath = path
        }
        switch (resolved.envoyListen, resolved.envoyConfigPath) {
        case (nil, nil):
            return
        case (.some, nil):
            throw FlagError("the Envoy rate limit service needs its rules: [envoy] config or --envoy-config")
        case (nil, .some):
            throw FlagError("Envoy rules are configured but not served: set [envoy] listen or --envoy-listen")
        case (.some, .some(let path)):
            resolved.envoyRules = try EnvoyRulesLoader.load(path: path)
        }
    }

    private static func resolveRedis(_ flags: RateLimitDaemon, into resolved: inout ResolvedSettings) throws {
        if let url = flags.redis {
            // An empty URL turns off the file's replication, as --redis "" is the usual way to say "none".
            if url.isEmpty {
                resolved.redis = nil
            } else {
                do {
                    resolved.redis = try RedisEndpoint(parsing: url)
                } catch {
                    throw FlagError("--redis: \(error)")
                }
            }
        }
        if let mode = flags.redisMode {
            guard DaemonSettings.redisModes.contains(mode) else {
                throw FlagError("--redis-mode must be \"replicate\" or \"shared\", got \"\(mode)\"")
            }
            resolved.redisShared = mode == "shared"
        }
        if let choice = flags.redisOnError {
            guard let onError = SharedDecider.OnError(rawValue: choice) else {
                throw FlagError("--redis-on-error must be \"local\", \"allow\" or \"deny\", got \"\(choice)\"")
            }
            resolved.redisOnError = onError
        }
        if let text = flags.redisTimeout {
            let nanos = try duration(text, flag: "--redis-timeout")
            guard nanos <= DaemonSettings.maxRedisTimeoutNanos else { throw FlagError("--redis-timeout must be at most 10s") }
            resolved.redisTimeoutNanos = nanos
        }
        if resolved.redisShared, resolved.redis == nil {
            throw FlagError("shared mode needs Redis: set [redis] url or --redis")
        }
        if let prefix = flags.redisKeyPrefix {
            if let problem = DaemonSettings.redisKeyPrefixProblem(prefix) {
                throw FlagError("--redis-key-prefix \(problem), got \"\(prefix)\"")
            }
            resolved.redisKeyPrefix = prefix
        }
        if let text = flags.redisFlushInterval {
            resolved.redisFlushIntervalNanos = try duration(text, flag: "--redis-flush-interval")
        }
    }

    /// A listen flag for a listener that "" turns off (nil).
    private static func optionalListen(_ text: String, flag: String, off: String) throws -> ListenAddress? {
        if text.isEmpty { return nil }
        guard let address = ListenAddress(parsing: text) else {
            throw FlagError("\(flag) must be HOST:PORT, or \"\" for \(off), got \"\(text)\"")
        }
        return address
    }

    /// A duration flag, with the bounds the configuration file has for the same settings.
    private static func duration(_ text: String, flag: String) throws -> Int64 {
        guard let nanos = WindowDuration.parseSetting(text) else {
            throw FlagError("\(flag) must be a duration from 1ms to 365d, such as 10s or 500ms, got \"\(text)\"")
        }
        return nanos
    }

    /// The TLS files from flags over the file's: a certificate and a key together, or neither (then no CA).
    private static func resolveTLS(_ flags: RateLimitDaemon, file: DaemonSettings) throws -> TLSCertificates? {
        let pick = { (flag: String?, setting: String?) -> String? in flag.map { $0.isEmpty ? nil : $0 } ?? setting }
        let certificate = pick(flags.tlsCert, file.tlsCert)
        let key = pick(flags.tlsKey, file.tlsKey)
        let clientCA = pick(flags.tlsClientCA, file.tlsClientCA)
        switch (certificate, key) {
        case (nil, nil):
            guard clientCA == nil else { throw FlagError("tls_client_ca needs tls_cert and tls_key: client certificates are asked for over TLS") }
            return nil
        case (.some, nil): throw FlagError("tls_cert needs tls_key (--tls-key), the certificate's private key")
        case (nil, .some): throw FlagError("tls_key needs tls_cert (--tls-cert), the certificate it belongs to")
        case (.some(let certificate), .some(let key)):
            do {
                return try TLSCertificates(TLSFiles(certificate: certificate, key: key, clientCA: clientCA))
            } catch {
                throw FlagError(error.description)
            }
        }
    }

    /// The token in `path`, and whether others than its owner can read the file.
    static func readAuthToken(_ path: String) throws(FlagError) -> (token: [UInt8], exposed: Bool) {
        let contents: (bytes: [UInt8], mode: UInt32)?
        do {
            contents = try SnapshotFile.readRegularFile(path)
        } catch {
            throw FlagError("auth_token_file: \(error)")
        }
        guard let contents else { throw FlagError("auth_token_file: \(path) does not exist") }
        switch AuthTokenRules.token(in: contents.bytes) {
        case .success(let token): return (token, DaemonSettings.readableByOthers(mode: contents.mode))
        case .failure(let problem): throw FlagError("auth_token_file: \(path) \(problem)")
        }
    }

    /// A size flag, read as the configuration file reads the same setting.
    private static func size(_ text: String, flag: String, zeroAllowed: Bool) throws(FlagError) -> Int {
        guard let bytes = DaemonSettings.parseMemory(text), zeroAllowed || bytes > 0 else {
            throw FlagError("\(flag) must be \(DaemonSettings.sizeDescription(zeroAllowed: zeroAllowed)), got \"\(text)\"")
        }
        return bytes
    }

    /// A connection timeout flag: 0 (never) or a duration.
    private static func timeout(_ text: String, flag: String, example: String) throws(FlagError) -> Int64 {
        guard let nanos = DaemonSettings.parseTimeout(text) else {
            throw FlagError("\(flag) must be 0 (never) or a duration from 1ms to 365d, such as \(example), got \"\(text)\"")
        }
        return nanos
    }

    /// Listeners other machines may reach while nothing authenticates clients: anyone who reaches them can
    /// `RESET` any key or check it under any limit. Logged at start and printed by `--check-config`.
    var exposureWarnings: [String] {
        var warnings: [String] = []
        if let authTokenFile, authTokenExposed {
            warnings.append(
                "warning: auth_token_file \(authTokenFile) can be read by its group or by everyone; chmod 600 it (or 640 for the service's group)")
        }
        if let authToken, authToken.count < 16 {
            warnings.append(
                "warning: the auth token is \(authToken.count) bytes; one of 32 random bytes or more (openssl rand -hex 32) cannot be guessed")
        }
        if let tls, DaemonSettings.readableByOthers(mode: tls.keyMode) {
            warnings.append("warning: tls_key \(tls.files.key) can be read by its group or by everyone; chmod 600 it")
        }
        guard authToken == nil else { return warnings }
        var exposed = [("client port", listen)]
        if let envoyListen { exposed.append(("Envoy gRPC port", envoyListen)) }
        if let httpListen { exposed.append(("HTTP check port", httpListen)) }
        return warnings + exposed.filter { !$0.1.isLoopback }.map { name, address in
            "warning: the \(name) listens on \(address), beyond loopback, and nothing authenticates clients: anyone who reaches it can reset any key or check it under any limit; set auth_token_file, or listen on loopback or a private network"
        }
    }

    /// What `--check-config` prints.
    var summary: String {
        var lines = ["configuration OK" + (configPath.map { " (\($0))" } ?? " (built-in defaults)")]
        lines += exposureWarnings
        lines.append("listen = \(listen)")
        if let unixSocket {
            lines.append("unix_socket = \(unixSocket), mode \(String(unixSocketMode, radix: 8))")
        }
        lines.append("shards = \(shards)")
        lines.append("log_level = \(logLevel.rawValue)")
        lines.append("shutdown_timeout = \(WindowDuration.format(shutdownTimeoutNanos))")
        lines.append("max_connections = \(maxConnections)")
        lines.append("max_input_buffer = \(maxInputBuffer) bytes")
        lines.append("idle_timeout = \(idleTimeoutNanos == 0 ? "never" : WindowDuration.format(idleTimeoutNanos))")
        lines.append(tls.map { "TLS on the client port: \($0.files)" } ?? "no TLS: the client port speaks plaintext")
        lines.append(authTokenFile.map { "auth_token_file = \($0): clients must AUTH" } ?? "no auth_token_file: clients need no token")
        lines.append("request_timeout = \(requestTimeoutNanos == 0 ? "never" : WindowDuration.format(requestTimeoutNanos))")
        lines.append("max_memory = \(maxMemory == 0 ? "none" : "\(maxMemory) bytes")")
        lines.append("max_keys = \(maxKeys), when_full = \(whenFull.rawValue), swept every \(WindowDuration.format(sweepIntervalNanos))")
        if let snapshotPath {
            lines.append("snapshot_path = \(snapshotPath), every \(WindowDuration.format(snapshotIntervalNanos))")
        } else {
            lines.append("no snapshot_path: state is kept in memory only")
        }
        lines.append(metricsListen.map { "metrics on http://\($0)/metrics" } ?? "no metrics endpoint")
        if let envoyListen, let envoyConfigPath {
            let domains = envoyRules.domains.keys.sorted()
            lines.append("envoy rate limit service (gRPC) on \(envoyListen), rules from \(envoyConfigPath): "
                + "\(domains.count) domain\(domains.count == 1 ? "" : "s") (\(domains.joined(separator: ", ")))")
        } else {
            lines.append("no Envoy rate limit service")
        }
        lines.append(httpListen.map { "http checks on http://\($0)/check, denials answer \(httpDenyStatus)" } ?? "no HTTP check endpoint")
        if let redis, redisShared {
            lines.append("redis = \(redis), mode shared, key_prefix \"\(redisKeyPrefix)\", "
                + "timeout \(WindowDuration.format(redisTimeoutNanos)), on_error \(redisOnError.rawValue)")
        } else if let redis {
            lines.append("redis = \(redis), mode replicate, key_prefix \"\(redisKeyPrefix)\", "
                + "flushed every \(WindowDuration.format(redisFlushIntervalNanos))")
        } else {
            lines.append("no [redis]: nothing is replicated")
        }
        if rules.rules.isEmpty {
            lines.append("no rules: every CHECK must give its own <limit>/<window>")
        }
        for rule in rules.rules {
            lines.append("rule \"\(rule.name)\": match \"\(rule.pattern.text)\" \(rule.limit)")
        }
        return lines.joined(separator: "\n")
    }
}

struct FlagError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func printError(_ message: String) {
    var line = message + "\n"
    // write(2) on descriptor 2 rather than the C `stderr` global, which Swift 6 treats as shared mutable state.
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
