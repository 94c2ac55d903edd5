import RateLimiting

/// One parsed request of the line protocol.
public enum Request: Sendable, Hashable {
    /// `CHECK <key> [<cost>]` (limit from the rules, `limit` nil) or
    /// `CHECK <key> <cost> <limit>/<window> [<algorithm>]` (limit given by the caller).
    case check(key: String, cost: Int64, limit: Limit?)
    case reset(key: String)
    case ping
    case quit
}
