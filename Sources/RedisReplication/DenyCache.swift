import RateLimiting
import Synchronization

/// Shared mode's local memory of denials: once Redis has denied a key's request until a time, the same
/// request (same cost, same limit) is denied here until then without asking Redis. A key that is denied
/// stays denied however often it is asked, so a client hammering a spent key costs Redis nothing.
///
/// What it costs in accuracy: a denial lasts until the time Redis gave, counted from when its answer
/// arrived here, in whole milliseconds rounded up, so at most one round trip plus a millisecond past the
/// moment Redis would allow the request again; and neither a RESET made through another daemon nor a check
/// of the key under another algorithm (whose state replaces this one) is seen here before that time.
/// Otherwise nothing, whichever the algorithm: a denial consumes nothing, and what other requests consume
/// can only make the wait longer; another cost or limit is always asked of Redis.
final class DenyCache: Sendable {
    struct Entry {
        let cost: Int64
        let limit: Limit
        let until: Int64
        let remaining: Int64
    }

    /// Keys remembered at most; past it, expired entries are dropped, and if none has expired nothing new
    /// is remembered until some do.
    static let capacity = 65_536

    private let entries = Mutex<[[UInt8]: Entry]>([:])
    let hits = Atomic<Int>(0)

    /// The denial to answer `cost` of `limit` on `key` at `now` with, if one is remembered and still holds.
    func denial(key: [UInt8], cost: Int64, limit: Limit, now: Int64) -> Decision? {
        let entry = entries.withLock { $0[key] }
        guard let entry, entry.cost == cost, entry.limit == limit, now < entry.until else { return nil }
        hits.add(1, ordering: .relaxed)
        let left = entry.until - now
        return Decision(allowed: false, remaining: entry.remaining, resetMillis: (left + 999_999) / 1_000_000)
    }

    /// Remembers Redis's `decision` on `cost` of `limit` for `key`, answered at `now`: a denial that waiting
    /// ends; an allowed request forgets the key.
    func remember(key: [UInt8], cost: Int64, limit: Limit, decision: Decision, now: Int64) {
        guard !decision.allowed else {
            forget(key)
            return
        }
        guard decision.resetMillis > 0 else { return }
        let entry = Entry(cost: cost, limit: limit, until: now + decision.resetMillis * 1_000_000, remaining: decision.remaining)
        entries.withLock { entries in
            if entries.count >= Self.capacity, entries[key] == nil {
                entries = entries.filter { $0.value.until > now }
                guard entries.count < Self.capacity else { return }
            }
            entries[key] = entry
        }
    }

    func forget(_ key: [UInt8]) {
        _ = entries.withLock { $0.removeValue(forKey: key) }
    }

    var count: Int { entries.withLock { $0.count } }
}
