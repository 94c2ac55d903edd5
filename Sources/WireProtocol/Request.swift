import RateLimiting

/// One parsed request, from either protocol. Keys are not copied out of the request: `key` is the range of
/// the parsed bytes that holds it (already validated), so the request path makes no `String` per request.
public enum Request: Sendable, Hashable {
    /// `CHECK <key> [<cost>]` (limit from the rules, `limit` nil) or
    /// `CHECK <key> <cost> <limit>/<window> [<algorithm>]` (limit given by the caller).
    case check(key: Range<Int>, cost: Int64, limit: Limit?)
    case reset(key: Range<Int>)
    /// `PING` or `PING <message>`; the message is echoed as given (binary-safe over RESP).
    case ping(message: [UInt8]?)
    case quit
    /// `STATS`: the server's counters.
    case stats
    /// `HELLO [2|3] [AUTH <user> <token>]`: nil keeps the connection's current protocol version.
    case hello(version: Int?, credentials: Credentials?)
    /// `AUTH <token>` or `AUTH <user> <token>` (Redis's two forms).
    case auth(Credentials)
    case echo([UInt8])
    /// `CLIENT SETNAME` / `CLIENT SETINFO`: acknowledged, nothing to remember.
    case clientAcknowledged
    /// `SELECT 0`: the only database.
    case select
    /// `COMMAND …`: answered with an empty array.
    case emptyListing
    /// `CONFIG GET <parameter> …`: the parameters ratelimitd can answer for, as Redis would report them.
    case configGet([ConfigParameter])
}

/// What `AUTH` or `HELLO … AUTH` gave: where the user name (nil for `AUTH <token>`) and the token are in
/// the parsed bytes, so neither is copied (nor kept) beyond the request.
public struct Credentials: Sendable, Hashable {
    public let user: Range<Int>?
    public let token: Range<Int>

    public init(user: Range<Int>?, token: Range<Int>) {
        self.user = user
        self.token = token
    }
}

/// Which protocol a request came in, and so which form its reply takes.
public enum WireDialect: Sendable, Hashable {
    case line
    case resp
}

/// The Redis configuration parameters `CONFIG GET` answers, because load generators ask for them:
/// `redis-benchmark` reads `save` and `appendonly` on start and warns if it cannot. ratelimitd never writes
/// RDB or AOF files, so the honest answers are "" and "no".
public enum ConfigParameter: String, Sendable, Hashable, CaseIterable {
    case save
    case appendonly

    public var value: String {
        switch self {
        case .save: ""
        case .appendonly: "no"
        }
    }
}
