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
    public var sweepIntervalNanos: Int64?

    public init(listen: ListenAddress? = nil, shards: Int? = nil, logLevel: LogLevelName? = nil, rules: [Rule]? = nil) {
        self.listen = listen
        self.shards = shards
        self.logLevel = logLevel
        self.rules = rules
    }

    public static let defaultShutdownTimeoutNanos: Int64 = 10_000_000_000
    public static let defaultSnapshotIntervalNanos: Int64 = 10_000_000_000
    public static let defaultSweepIntervalNanos: Int64 = 10_000_000_000

    /// The most shards accepted; far more than cores only adds threads and lock stripes nobody needs.
    public static let maxShards = 1024
}

/// Log levels by the names swift-log uses.
public enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical

    public static let namesList = allCases.map(\.rawValue).joined(separator: ", ")
}
