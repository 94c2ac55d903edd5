import RateLimiting

/// What a configuration file says; nil where it says nothing, so command-line flags and defaults can fill in.
public struct DaemonSettings: Sendable {
    public var listen: ListenAddress?
    /// 0 means one shard per core.
    public var shards: Int?
    public var logLevel: LogLevelName?
    /// nil when the file has no `[[rules]]`; the built-in `default` rule then applies.
    public var rules: [Rule]?
    /// How long a graceful shutdown may take before the daemon stops anyway.
    public var shutdownTimeoutNanos: Int64?
    /// Where snapshots are written and read; nil keeps state in memory only.
    public var snapshotPath: String?
    public var snapshotIntervalNanos: Int64?
    /// The most keys held; past it, new keys evict old ones.
    public var maxKeys: Int?
    /// `[store] max_memory`: bytes the key tables may hold (0: no bound but `max_keys`).
    public var maxMemory: Int?
    /// `[store] when_full`: `deny` or `allow`.
    public var whenFull: String?
    /// `[server] max_connections`: connections open at once over every listener.
    public var maxConnections: Int?
    /// `[server] idle_timeout`: a connection that sends nothing for this long is closed; 0: never.
    public var idleTimeoutNanos: Int64?
    /// `[server] auth_token_file`: the file holding the token clients must give (`AUTH`, gRPC `Bearer`).
    public var authTokenFile: String?
    /// `[server] tls_cert`, `tls_key`, `tls_client_ca`: PEM files; with the first two the client port speaks TLS.
    public var tlsCert: String?
    public var tlsKey: String?
    public var tlsClientCA: String?
    /// `[server] unix_socket`: a unix socket the client protocols are served on too; `""` for none.
    public var unixSocket: String?
    /// `[server] unix_socket_mode`: its permission bits.
    public var unixSocketMode: UInt32?
    /// `[server] max_input_buffer`: unparsed input all client connections may hold together.
    public var maxInputBuffer: Int?
    /// `[server] request_timeout`: a request incomplete, or replies unread, this long: closed; 0: never.
    public var requestTimeoutNanos: Int64?
    public var sweepIntervalNanos: Int64?
    /// `[redis]`: where changes are replicated; nil for no replication.
    public var redisEndpoint: RedisEndpoint?
    public var redisKeyPrefix: String?
    public var redisFlushIntervalNanos: Int64?
    /// `replicate` or `shared`.
    public var redisMode: String?
    /// Shared mode, when Redis cannot answer: `local`, `allow` or `deny`.
    public var redisOnError: String?
    /// Shared mode: how long a request may wait for Redis.
    public var redisTimeoutNanos: Int64?
    /// `[metrics] listen`: where `GET /metrics` is served; `.some(nil)` when the file turns it off with "".
    public var metricsListen: ListenAddress??
    /// `[envoy] listen`: where Envoy's gRPC rate limit service is served; `.some(nil)` for "" (off).
    public var envoyListen: ListenAddress??
    /// `[envoy] config`: envoyproxy/ratelimit's YAML, a file or a directory of them.
    public var envoyConfigPath: String?
    /// `[http] listen`: where `GET /check` is served; `.some(nil)` for "" (off).
    public var httpListen: ListenAddress??
    /// `[http] deny_status`: the status of a denied check (429 unless set).
    public var httpDenyStatus: Int?

    public init(listen: ListenAddress? = nil, shards: Int? = nil, logLevel: LogLevelName? = nil, rules: [Rule]? = nil) {
        self.listen = listen
        self.shards = shards
        self.logLevel = logLevel
        self.rules = rules
    }

    public static let defaultShutdownTimeoutNanos: Int64 = 10_000_000_000
    public static let defaultSnapshotIntervalNanos: Int64 = 10_000_000_000
    public static let defaultSweepIntervalNanos: Int64 = 10_000_000_000

    public static let defaultMetricsListen = ListenAddress(host: "127.0.0.1", port: 9283)
    public static let defaultHTTPDenyStatus = 429
    /// What `deny_status` may be: a client error, which forward-auth gateways pass on as a refusal (nginx's
    /// `auth_request` only 401 and 403).
    public static let httpDenyStatuses = 400...499
    public static let defaultRedisKeyPrefix = "ratelimitd:"
    public static let defaultIdleTimeoutNanos: Int64 = 300_000_000_000
    public static let defaultRequestTimeoutNanos: Int64 = 10_000_000_000

    /// A connection timeout: "0" (never) or a duration from 1ms to 365d.
    public static func parseTimeout(_ text: String) -> Int64? {
        text == "0" ? 0 : WindowDuration.parseSetting(text)
    }

    /// What `max_connections` may be.
    public static let maxConnectionsRange = 1...1_000_000
    public static let defaultRedisFlushIntervalNanos: Int64 = 50_000_000
    /// `replicate`: this daemon decides, Redis keeps a copy for failover. `shared`: Redis decides, so every
    /// daemon on it enforces one limit.
    public static let redisModes = ["replicate", "shared"]
    public static let redisOnErrors = ["local", "allow", "deny"]
    public static let whenFullChoices = ["deny", "allow"]
    /// Two gibibytes: twice what the default `max_keys` takes at ~100 bytes a key, so the bound bites where
    /// long keys or sliding logs would take memory past it.
    public static let defaultMaxMemory = 2 << 30
    /// At least a mebibyte (0 turns the bound off).
    public static let minMaxMemory = 1 << 20

    /// What a size setting may be, for error messages: `zeroAllowed` when 0 turns the bound off.
    public static func sizeDescription(zeroAllowed: Bool) -> String {
        (zeroAllowed ? "0 (no bound) or " : "") + "a size from 1mb to 1024tb, such as 64mb, 2gb or 1073741824"
    }

    /// A memory size as Redis writes `maxmemory`: bytes, or a number with `k`/`m`/`g` (powers of 1000) or
    /// `kb`/`mb`/`gb` (powers of 1024), any letter case; "0" for no bound. nil when malformed, below
    /// `minMaxMemory` or past 2^50.
    public static func parseMemory(_ text: String) -> Int? {
        let lower = text.lowercased()
        let units: [(String, Int)] = [("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("k", 1_000), ("m", 1_000_000), ("g", 1_000_000_000), ("", 1)]
        for (suffix, scale) in units where lower.hasSuffix(suffix) {
            let digits = lower.dropLast(suffix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), digits.count <= 16,
                let value = Int(digits)
            else { return nil }
            let (bytes, overflow) = value.multipliedReportingOverflow(by: scale)
            guard !overflow, bytes == 0 || (bytes >= minMaxMemory && bytes <= 1 << 50) else { return nil }
            return bytes
        }
        return nil
    }
    public static let defaultRedisTimeoutNanos: Int64 = 100_000_000
    /// A shared decision waits for Redis at most this long, however it is configured.
    public static let maxRedisTimeoutNanos: Int64 = 10_000_000_000

    /// Why `prefix` cannot be a Redis key prefix, or nil if it can: 1 to 64 printable ASCII bytes without
    /// spaces, so that ratelimitd's keys are told apart from others in a shared database.
    public static func redisKeyPrefixProblem(_ prefix: String) -> String? {
        guard !prefix.isEmpty, prefix.utf8.count <= 64 else { return "must be 1 to 64 bytes long" }
        guard prefix.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return "must be printable ASCII without spaces"
        }
        return nil
    }

    /// Whether a secret file (the auth token, a TLS key) of these permission bits can be read by users other
    /// than its owner.
    public static func readableByOthers(mode: UInt32) -> Bool {
        mode & 0o044 != 0
    }

    /// Anyone on the machine may connect, as anyone may to a loopback port.
    public static let defaultUnixSocketMode: UInt32 = 0o666

    /// Why `path` cannot be a unix socket path, or nil if it can: absolute, and short enough for
    /// `sockaddr_un` (107 bytes and the terminating zero).
    public static func unixSocketProblem(_ path: String) -> String? {
        guard path.hasPrefix("/") else { return "must be an absolute path" }
        guard path.utf8.count <= 107 else { return "must be at most 107 bytes (the limit of a unix socket address)" }
        return nil
    }

    /// Permission bits written as `chmod` takes them: three or four octal digits, such as "0660"; nil when
    /// malformed.
    public static func parseMode(_ text: String) -> UInt32? {
        guard (3...4).contains(text.utf8.count), text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x37 }),
            let mode = UInt32(text, radix: 8), mode <= 0o777
        else { return nil }
        return mode
    }

    /// The most shards accepted; far more than cores only adds threads and lock stripes nobody needs.
    public static let maxShards = 1024
}

/// Log levels by the names swift-log uses.
public enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    public static let namesList = allCases.map(\.rawValue).joined(separator: ", ")
}

/// The auth token file's rules: what its contents may be, and when its permissions deserve a warning.
public enum AuthTokenRules {
    public static let maxLength = 512

    /// Why a token file's contents are not a token.
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    /// The token in a file's bytes (one trailing newline, `\n` or `\r\n`, is not part of it), or why there
    /// is none: 1 to 512 printable ASCII bytes without spaces, so it is one word of `AUTH <token>`.
    public static func token(in bytes: [UInt8]) -> Result<[UInt8], Problem> {
        var token = bytes[...]
        if token.last == UInt8(ascii: "\n") { token = token.dropLast() }
        if token.last == UInt8(ascii: "\r") { token = token.dropLast() }
        guard (1...maxLength).contains(token.count), token.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .failure(Problem(description:
                "must hold one token of 1 to \(maxLength) printable ASCII bytes without spaces (a trailing newline is ignored); it holds \(bytes.count) bytes"))
        }
        return .success(Array(token))
    }
}
