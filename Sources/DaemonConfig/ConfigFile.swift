#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import RateLimiting
import TOMLKit

/// Reads and validates a ratelimitd TOML file. Every mistake is reported with the file, the rule or section,
/// and the field; unknown settings are mistakes too, so a typo cannot silently leave a default in force.
public enum ConfigFile {
    static let topLevelKeys: Set<String> = ["server", "store", "redis", "metrics", "envoy", "http", "rules"]
    static let serverKeys: Set<String> = [
        "listen", "shards", "log_level", "shutdown_timeout", "max_connections", "idle_timeout",
        "request_timeout", "auth_token_file", "tls_cert", "tls_key", "tls_client_ca", "max_input_buffer",
        "unix_socket", "unix_socket_mode",
    ]
    static let storeKeys: Set<String> = ["snapshot_path", "snapshot_interval", "max_keys", "sweep_interval", "when_full", "max_memory"]
    static let redisKeys: Set<String> = ["url", "mode", "key_prefix", "flush_interval", "on_error", "timeout"]
    static let metricsKeys: Set<String> = ["listen"]
    static let envoyKeys: Set<String> = ["listen", "config"]
    static let httpKeys: Set<String> = ["listen", "deny_status"]
    static let ruleKeys: Set<String> = ["name", "match", "algorithm", "limit", "window", "burst"]

    public static func load(path: String) throws(ConfigError) -> DaemonSettings {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(file: path, message: "cannot read the file (\(error.localizedDescription))")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> DaemonSettings {
        try rejectWhatTOMLKitAborts(text, file: file)
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                file: file, location: "line \(error.source.begin.line), column \(error.source.begin.column)",
                message: "not valid TOML: \(error.description)")
        } catch {
            throw ConfigError(file: file, message: "not valid TOML: \(error)")
        }
        try rejectUnknown(table, allowed: topLevelKeys, file: file, location: nil)
        var settings = DaemonSettings()
        if let server = try section("server", of: table, file: file) {
            try parseServer(server, into: &settings, file: file)
        }
        if let store = try section("store", of: table, file: file) {
            try parseStore(store, into: &settings, file: file)
        }
        if let redis = try section("redis", of: table, file: file) {
            try parseRedis(redis, into: &settings, file: file)
        }
        if let metrics = try section("metrics", of: table, file: file) {
            try parseMetrics(metrics, into: &settings, file: file)
        }
        if let envoy = try section("envoy", of: table, file: file) {
            try parseEnvoy(envoy, into: &settings, file: file)
        }
        if let http = try section("http", of: table, file: file) {
            try parseHTTP(http, into: &settings, file: file)
        }
        if let rules = table["rules"] {
            guard let rules = rules.array else {
                throw ConfigError(file: file, field: "rules", message: "must be an array of tables ([[rules]])")
            }
            settings.rules = try RuleParser.parse(rules, file: file)
        }
        return settings
    }

    /// What toml++ (under TOMLKit) checks with assertions, which abort the process, is refused here first,
    /// with its place (found by scripts/fuzz: `[\u{2}]`, `[é]` and `[:x]` each aborted the daemon, at start
    /// or on SIGHUP): a control character other than tab and line ends (TOML allows none), a non-ASCII
    /// character outside a string or comment (TOML's bare keys are ASCII; any other key must be quoted), and
    /// a table header whose name does not start with a bare key character or a quote, and a value missing
    /// where one is due (after `=`, in an array, `[[[[}` aborted it too).
    static func rejectWhatTOMLKitAborts(_ text: String, file: String) throws(ConfigError) {
        enum Place { case code, comment, basic, literal, multilineBasic, multilineLiteral }
        let bytes = Array(text.utf8)
        var place = Place.code
        // Open `[`/`{` of values (an array may span lines; a `[` at a line's start inside one is no header).
        var containers: [UInt8] = []
        var afterEquals = false
        enum Expect { case nothing, value, key }
        var expect = Expect.nothing
        var lineStart = true
        var headerKeyExpected = false
        var line = 1
        var column = 0
        var index = 0
        func starts(_ quote: UInt8, count: Int) -> Bool {
            index + count <= bytes.count && bytes[index..<index + count].allSatisfy { $0 == quote }
        }
        func fail(_ message: String) -> ConfigError {
            ConfigError(file: file, location: "line \(line), column \(column)", message: "not valid TOML: \(message)")
        }
        let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), backslash = UInt8(ascii: "\\")
        while index < bytes.count {
            let byte = bytes[index]
            column += 1
            if byte == UInt8(ascii: "\n") {
                if headerKeyExpected { throw fail("a table header ends before its name") }
                if place != .multilineBasic, place != .multilineLiteral, expect == .value, containers.isEmpty {
                    throw fail("a key with no value")
                }
                line += 1
                column = 0
                if place == .comment || place == .basic || place == .literal { place = .code }
                if containers.isEmpty { afterEquals = false }
                lineStart = true
                index += 1
                continue
            }
            if (byte < 0x20 && byte != UInt8(ascii: "\t") && byte != UInt8(ascii: "\r")) || byte == 0x7F {
                throw fail("control character 0x\(String(byte, radix: 16, uppercase: true)) (only tab and line ends may appear)")
            }
            switch place {
            case .code:
                if byte >= 0x80 { throw fail("a non-ASCII character outside a string or comment (quote such a key)") }
                let blank = byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t")
                // `[[` opens an array of tables: one `[` right after the first is no name.
                let secondBracket = byte == UInt8(ascii: "[") && index > 0 && bytes[index - 1] == UInt8(ascii: "[")
                    && (index < 2 || bytes[index - 2] != UInt8(ascii: "["))
                if headerKeyExpected, !blank, !secondBracket {
                    headerKeyExpected = false
                    let bare = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                        || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
                    guard bare || byte == quote || byte == apostrophe else {
                        throw fail("a table name must start with a letter, a digit, '_', '-' or a quote")
                    }
                }
                if byte == UInt8(ascii: "#") {
                    // A comment: where a value is due only inside an array, which may span lines.
                    if expect == .value, containers.isEmpty { throw fail("a key with no value") }
                } else if !blank, expect != .nothing {
                    let closes = (byte == UInt8(ascii: "]") && containers.last == UInt8(ascii: "["))
                        || (byte == UInt8(ascii: "}") && containers.last == UInt8(ascii: "{"))
                    if expect == .value, !closes, [UInt8(ascii: ","), UInt8(ascii: "]"), UInt8(ascii: "}"), UInt8(ascii: "=")].contains(byte) {
                        throw fail("a value is missing before '\(Character(Unicode.Scalar(byte)))'")
                    }
                    let keyStart = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                        || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == quote || byte == apostrophe
                    if expect == .key, !closes, !keyStart {
                        throw fail("an inline table's key must start with a letter, a digit, '_', '-' or a quote")
                    }
                    expect = .nothing
                }
                if byte == UInt8(ascii: "[") || byte == UInt8(ascii: "{") {
                    if afterEquals || !containers.isEmpty {
                        containers.append(byte)
                        expect = byte == UInt8(ascii: "[") ? .value : .key
                    } else if byte == UInt8(ascii: "["), lineStart {
                        headerKeyExpected = true
                    }
                } else if byte == UInt8(ascii: "]") || byte == UInt8(ascii: "}") {
                    if !containers.isEmpty { containers.removeLast() }
                } else if byte == UInt8(ascii: ",") {
                    if let open = containers.last { expect = open == UInt8(ascii: "[") ? .value : .key }
                } else if byte == UInt8(ascii: "=") {
                    if containers.isEmpty { afterEquals = true }
                    expect = .value
                }
                if !blank { lineStart = false }
                if byte == UInt8(ascii: "#") {
                    place = .comment
                } else if starts(quote, count: 3) {
                    place = .multilineBasic
                    index += 2
                } else if starts(apostrophe, count: 3) {
                    place = .multilineLiteral
                    index += 2
                } else if byte == quote {
                    place = .basic
                } else if byte == apostrophe {
                    place = .literal
                }
            case .comment:
                break
            case .basic, .multilineBasic:
                if byte == backslash, index + 1 < bytes.count, bytes[index + 1] != UInt8(ascii: "\n") {
                    // The escaped byte (a quote, a backslash) ends nothing.
                    index += 1
                    column += 1
                } else if place == .basic, byte == quote {
                    place = .code
                } else if place == .multilineBasic, starts(quote, count: 3) {
                    place = .code
                    index += 2
                }
            case .literal:
                if byte == apostrophe { place = .code }
            case .multilineLiteral:
                if starts(apostrophe, count: 3) {
                    place = .code
                    index += 2
                }
            }
            index += 1
        }
    }

    private static func parseServer(_ server: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[server]"
        try rejectUnknown(server, allowed: serverKeys, file: file, location: location)
        if let value = server["listen"] {
            guard let text = value.string, let address = ListenAddress(parsing: text) else {
                throw ConfigError(file: file, location: location, field: "listen",
                                  message: "must be \"HOST:PORT\" (IPv6 as \"[::1]:7283\"), got \(value.debugDescription)")
            }
            settings.listen = address
        }
        if let value = server["shards"] {
            guard let shards = value.int, shards >= 0, shards <= DaemonSettings.maxShards else {
                throw ConfigError(file: file, location: location, field: "shards",
                                  message: "must be an integer from 0 (one per core) to \(DaemonSettings.maxShards), got \(value.debugDescription)")
            }
            settings.shards = shards
        }
        if let value = server["shutdown_timeout"] {
            settings.shutdownTimeoutNanos = try duration(value, file: file, location: location, field: "shutdown_timeout")
        }
        if let value = server["idle_timeout"] {
            settings.idleTimeoutNanos = try timeout(value, file: file, location: location, field: "idle_timeout", example: "300s")
        }
        settings.authTokenFile = try path(server["auth_token_file"], file: file, location: location, field: "auth_token_file")
        if let value = server["unix_socket"] {
            guard let path = value.string, path.isEmpty || DaemonSettings.unixSocketProblem(path) == nil else {
                let problem = value.string.flatMap(DaemonSettings.unixSocketProblem) ?? "must be a path"
                throw ConfigError(file: file, location: location, field: "unix_socket",
                                  message: "\(problem), or \"\" for none, got \(value.debugDescription)")
            }
            settings.unixSocket = path
        }
        if let value = server["unix_socket_mode"] {
            guard let mode = value.string.flatMap(DaemonSettings.parseMode) else {
                throw ConfigError(file: file, location: location, field: "unix_socket_mode",
                                  message: "must be a string of octal permission bits such as \"0660\", got \(value.debugDescription)")
            }
            settings.unixSocketMode = mode
        }
        settings.tlsCert = try path(server["tls_cert"], file: file, location: location, field: "tls_cert")
        settings.tlsKey = try path(server["tls_key"], file: file, location: location, field: "tls_key")
        settings.tlsClientCA = try path(server["tls_client_ca"], file: file, location: location, field: "tls_client_ca")
        if let value = server["request_timeout"] {
            settings.requestTimeoutNanos = try timeout(value, file: file, location: location, field: "request_timeout", example: "10s")
        }
        if let value = server["max_input_buffer"] {
            settings.maxInputBuffer = try size(value, zeroAllowed: false, file: file, location: location, field: "max_input_buffer")
        }
        if let value = server["max_connections"] {
            let range = DaemonSettings.maxConnectionsRange
            guard let count = value.int, range.contains(count) else {
                throw ConfigError(file: file, location: location, field: "max_connections",
                                  message: "must be an integer from \(range.lowerBound) to \(range.upperBound), got \(value.debugDescription)")
            }
            settings.maxConnections = count
        }
        if let value = server["log_level"] {
            guard let text = value.string, let level = LogLevelName(rawValue: text) else {
                throw ConfigError(file: file, location: location, field: "log_level",
                                  message: "must be one of \(LogLevelName.namesList), got \(value.debugDescription)")
            }
            settings.logLevel = level
        }
    }

    /// A file path setting: a non-empty string; nil when absent.
    private static func path(
        _ value: (any TOMLValueConvertible)?, file: String, location: String, field: String
    ) throws(ConfigError) -> String? {
        guard let value else { return nil }
        guard let path = value.string, !path.isEmpty else {
            throw ConfigError(file: file, location: location, field: field, message: "must be a file path, got \(value.debugDescription)")
        }
        return path
    }

    /// A memory size: an integer of bytes, or a string as `DaemonSettings.parseMemory` reads it.
    private static func size(
        _ value: any TOMLValueConvertible, zeroAllowed: Bool, file: String, location: String, field: String
    ) throws(ConfigError) -> Int {
        let text = value.int.map(String.init) ?? value.string
        guard let text, let bytes = DaemonSettings.parseMemory(text), zeroAllowed || bytes > 0 else {
            throw ConfigError(file: file, location: location, field: field,
                              message: "must be \(DaemonSettings.sizeDescription(zeroAllowed: zeroAllowed)), got \(value.debugDescription)")
        }
        return bytes
    }

    /// A connection timeout: "0" (never) or a duration string.
    private static func timeout(
        _ value: any TOMLValueConvertible, file: String, location: String, field: String, example: String
    ) throws(ConfigError) -> Int64 {
        guard let text = value.string, let nanos = DaemonSettings.parseTimeout(text) else {
            throw ConfigError(file: file, location: location, field: field,
                              message: "must be \"0\" (never) or a duration string from \"1ms\" to \"365d\", such as \"\(example)\", got \(value.debugDescription)")
        }
        return nanos
    }

    private static func parseStore(_ store: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[store]"
        try rejectUnknown(store, allowed: storeKeys, file: file, location: location)
        if let value = store["snapshot_path"] {
            guard let path = value.string, !path.isEmpty else {
                throw ConfigError(file: file, location: location, field: "snapshot_path",
                                  message: "must be a file path, got \(value.debugDescription)")
            }
            settings.snapshotPath = path
        }
        if let value = store["snapshot_interval"] {
            settings.snapshotIntervalNanos = try duration(value, file: file, location: location, field: "snapshot_interval")
        }
        if let value = store["sweep_interval"] {
            settings.sweepIntervalNanos = try duration(value, file: file, location: location, field: "sweep_interval")
        }
        if let value = store["max_memory"] {
            settings.maxMemory = try size(value, zeroAllowed: true, file: file, location: location, field: "max_memory")
        }
        if let value = store["when_full"] {
            guard let text = value.string, DaemonSettings.whenFullChoices.contains(text) else {
                throw ConfigError(file: file, location: location, field: "when_full",
                                  message: "must be \"deny\" or \"allow\", got \(value.debugDescription)")
            }
            settings.whenFull = text
        }
        if let value = store["max_keys"] {
            guard let maxKeys = value.int, maxKeys >= 1 else {
                throw ConfigError(file: file, location: location, field: "max_keys",
                                  message: "must be a positive integer, got \(value.debugDescription)")
            }
            settings.maxKeys = maxKeys
        }
    }

    /// The table `[name]`, nil when the file has none, an error when `name` is there but not a table.
    private static func section(_ name: String, of table: TOMLTable, file: String) throws(ConfigError) -> TOMLTable? {
        guard let value = table[name] else { return nil }
        guard let section = value.table else {
            throw ConfigError(file: file, field: name, message: "must be a table ([\(name)])")
        }
        return section
    }

    private static func parseMetrics(_ metrics: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[metrics]"
        try rejectUnknown(metrics, allowed: metricsKeys, file: file, location: location)
        if let listen = try optionalListen(metrics, file: file, location: location, off: "no metrics", example: 9283) {
            settings.metricsListen = listen
        }
    }

    private static func parseEnvoy(_ envoy: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[envoy]"
        try rejectUnknown(envoy, allowed: envoyKeys, file: file, location: location)
        if let listen = try optionalListen(envoy, file: file, location: location, off: "none", example: 8081) {
            settings.envoyListen = listen
        }
        if let value = envoy["config"] {
            guard let path = value.string, !path.isEmpty else {
                throw ConfigError(file: file, location: location, field: "config",
                                  message: "must be the path of a YAML file or a directory of them, got \(value.debugDescription)")
            }
            settings.envoyConfigPath = path
        }
    }

    private static func parseHTTP(_ http: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[http]"
        try rejectUnknown(http, allowed: httpKeys, file: file, location: location)
        if let listen = try optionalListen(http, file: file, location: location, off: "none", example: 7284) {
            settings.httpListen = listen
        }
        if let value = http["deny_status"] {
            let range = DaemonSettings.httpDenyStatuses
            guard let status = value.int, range.contains(status) else {
                throw ConfigError(file: file, location: location, field: "deny_status",
                                  message: "must be an HTTP status from \(range.lowerBound) to \(range.upperBound) (429, or 403 for nginx's auth_request), got \(value.debugDescription)")
            }
            settings.httpDenyStatus = status
        }
    }

    /// A section's `listen` for a listener that "" turns off: nil when not given, `.some(nil)` for "".
    private static func optionalListen(
        _ section: TOMLTable, file: String, location: String, off: String, example: Int
    ) throws(ConfigError) -> ListenAddress?? {
        guard let value = section["listen"] else { return nil }
        guard let text = value.string else {
            throw ConfigError(file: file, location: location, field: "listen",
                              message: "must be \"HOST:PORT\", or \"\" for \(off), got \(value.debugDescription)")
        }
        if text.isEmpty { return .some(nil) }
        guard let address = ListenAddress(parsing: text) else {
            throw ConfigError(file: file, location: location, field: "listen",
                              message: "must be \"HOST:PORT\" (IPv6 as \"[::1]:\(example)\"), or \"\" for \(off), got \(value.debugDescription)")
        }
        return address
    }

    private static func parseRedis(_ redis: TOMLTable, into settings: inout DaemonSettings, file: String) throws(ConfigError) {
        let location = "[redis]"
        try rejectUnknown(redis, allowed: redisKeys, file: file, location: location)
        guard let value = redis["url"] else {
            throw ConfigError(file: file, location: location, field: "url",
                              message: "is required: redis://HOST:PORT or unix:///PATH")
        }
        guard let url = value.string else {
            throw ConfigError(file: file, location: location, field: "url",
                              message: "must be a string, got \(value.debugDescription)")
        }
        do {
            settings.redisEndpoint = try RedisEndpoint(parsing: url)
        } catch {
            throw ConfigError(file: file, location: location, field: "url", message: error.description)
        }
        if let value = redis["mode"] {
            guard let mode = value.string, DaemonSettings.redisModes.contains(mode) else {
                throw ConfigError(file: file, location: location, field: "mode",
                                  message: "must be \"replicate\" or \"shared\", got \(value.debugDescription)")
            }
            settings.redisMode = mode
        }
        if let value = redis["on_error"] {
            guard let choice = value.string, DaemonSettings.redisOnErrors.contains(choice) else {
                throw ConfigError(file: file, location: location, field: "on_error",
                                  message: "must be \"local\", \"allow\" or \"deny\", got \(value.debugDescription)")
            }
            settings.redisOnError = choice
        }
        if let value = redis["timeout"] {
            let nanos = try duration(value, file: file, location: location, field: "timeout")
            guard nanos <= DaemonSettings.maxRedisTimeoutNanos else {
                throw ConfigError(file: file, location: location, field: "timeout", message: "must be at most 10s")
            }
            settings.redisTimeoutNanos = nanos
        }
        if let value = redis["key_prefix"] {
            guard let prefix = value.string else {
                throw ConfigError(file: file, location: location, field: "key_prefix",
                                  message: "must be a string, got \(value.debugDescription)")
            }
            if let problem = DaemonSettings.redisKeyPrefixProblem(prefix) {
                throw ConfigError(file: file, location: location, field: "key_prefix", message: problem)
            }
            settings.redisKeyPrefix = prefix
        }
        if let value = redis["flush_interval"] {
            settings.redisFlushIntervalNanos = try duration(value, file: file, location: location, field: "flush_interval")
        }
    }

    /// A duration setting: a string such as "10s", from 1ms to 365d.
    static func duration(_ value: any TOMLValueConvertible, file: String, location: String, field: String) throws(ConfigError) -> Int64 {
        guard let text = value.string, let nanos = WindowDuration.parseSetting(text) else {
            throw ConfigError(file: file, location: location, field: field,
                              message: "must be a duration string from \"1ms\" to \"365d\", such as \"500ms\", \"10s\", \"1m\", got \(value.debugDescription)")
        }
        return nanos
    }

    static func rejectUnknown(_ table: TOMLTable, allowed: Set<String>, file: String, location: String?) throws(ConfigError) {
        for key in table.keys.sorted() where !allowed.contains(key) {
            throw ConfigError(file: file, location: location, field: key,
                              message: "unknown setting; expected one of \(allowed.sorted().joined(separator: ", "))")
        }
    }
}
