import RateLimiting
import ShardStore
import WireProtocol

/// Everything the server needs to run, already validated.
public struct ServerConfiguration: Sendable {
    /// Ten million keys: about a gigabyte at the measured 100 bytes per key.
    public static let defaultMaxKeys = 10_000_000
    /// Connections open at once over every listener; past it one more is refused (`ConnectionSetup`).
    public static let defaultMaxConnections = 10_000
    /// 64 MiB of unparsed input over every client connection.
    public static let defaultMaxInputBuffer = 64 << 20

    public var host: String
    public var port: Int
    /// Shards, and event loops serving connections: one of each per core by default.
    public var shards: Int
    public var rules: RuleSet
    /// The most keys held over all shards; past it, new keys evict old ones.
    public var maxKeys: Int
    /// The most memory the key tables hold over all shards (0: no bound but `maxKeys`).
    public var maxMemory: Int
    /// What a new key gets when its shard is full of limited keys.
    public var whenFull: WhenFull
    public var maxLineLength: Int
    public var maxConnections: Int
    public var timeouts: ConnectionTimeouts
    /// The most unparsed input all client connections hold together (`InputBudget`).
    public var maxInputBuffer: Int
    /// What `AUTH` and gRPC's `authorization: Bearer` must give; nil: no authentication.
    public var authToken: [UInt8]?
    /// The client port speaks TLS with these; nil: plaintext.
    public var tls: TLSCertificates?
    public var clock: any DecisionClock
    /// A unix socket the client protocols are served on too, and the permission bits it gets.
    public var unixSocket: (path: String, mode: UInt32)?

    public init(
        host: String = "127.0.0.1",
        port: Int = 7283,
        shards: Int,
        rules: RuleSet = .defaults,
        maxKeys: Int = ServerConfiguration.defaultMaxKeys,
        maxMemory: Int = 0,
        whenFull: WhenFull = .deny,
        maxLineLength: Int = LineFramer.defaultMaxLineLength,
        maxConnections: Int = ServerConfiguration.defaultMaxConnections,
        timeouts: ConnectionTimeouts = .never,
        maxInputBuffer: Int = ServerConfiguration.defaultMaxInputBuffer,
        authToken: [UInt8]? = nil,
        tls: TLSCertificates? = nil,
        unixSocket: (path: String, mode: UInt32)? = nil,
        clock: any DecisionClock = SystemDecisionClock()
    ) {
        self.unixSocket = unixSocket
        self.host = host
        self.port = port
        self.shards = shards
        self.rules = rules
        self.maxKeys = maxKeys
        self.whenFull = whenFull
        self.maxMemory = maxMemory
        self.maxLineLength = maxLineLength
        self.maxConnections = maxConnections
        self.timeouts = timeouts
        self.maxInputBuffer = maxInputBuffer
        self.authToken = authToken
        self.tls = tls
        self.clock = clock
    }
}
