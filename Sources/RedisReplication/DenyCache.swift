import RateLimiting
import Locking
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
        let key: [UInt8]
        let cost: Int64
        let limit: Limit
        let until: Int64
        let remaining: Int64
    }

    /// Keys remembered at most; past it, expired entries are dropped, and if none has expired nothing new
    /// is remembered until some do.
    static let capacity = 65_536

    /// By the key's hash (`KeyHash`), the key kept in the entry to tell keys apart: hashing the bytes again
    /// for every request would cost more than the decision.
    private let entries = Locked<[UInt64: Entry]>([:])
    /// The number of entries, read without the lock: an empty cache (the usual case) costs one load.
    private let size = Atomic<Int>(0)
    let hits = Atomic<Int>(0)

    /// The denial to answer `cost` of `limit` on `key` at `now` with, if one is remembered and still holds.
    func denial(key: UnsafeRawBufferPointer, hash: UInt64, cost: Int64, limit: Limit, now: Int64) -> Decision? {
        guard size.load(ordering: .relaxed) > 0, let entry = entries.withLock({ $0[hash] }),
            entry.cost == cost, entry.limit == limit, now < entry.until, entry.key.elementsEqual(key)
        else { return nil }
        hits.add(1, ordering: .relaxed)
        let left = entry.until - now
        return Decision(allowed: false, remaining: entry.remaining, resetMillis: (left + 999_999) / 1_000_000)
    }

    /// Remembers Redis's `decision` on `cost` of `limit` for `key`, answered at `now`: a denial that waiting
    /// ends; an allowed request forgets the key.
    func remember(key: some Collection<UInt8>, hash: UInt64, cost: Int64, limit: Limit, decision: Decision, now: Int64) {
        guard !decision.allowed else {
            forget(hash: hash)
            return
        }
        guard decision.resetMillis > 0 else { return }
        let entry = Entry(
            key: Array(key), cost: cost, limit: limit, until: now + decision.resetMillis * 1_000_000,
            remaining: decision.remaining)
        entries.withLock { entries in
            if entries.count >= Self.capacity, entries[hash] == nil {
                entries = entries.filter { $0.value.until > now }
                guard entries.count < Self.capacity else { return }
            }
            entries[hash] = entry
            size.store(entries.count, ordering: .relaxed)
        }
    }

    /// Forgets the key of `hash` (a RESET, an allowed request). Another key of the same hash is forgotten
    /// with it: Redis is then asked, which is always right.
    func forget(hash: UInt64) {
        guard size.load(ordering: .relaxed) > 0 else { return }
        entries.withLock { entries in
            entries.removeValue(forKey: hash)
            size.store(entries.count, ordering: .relaxed)
        }
    }

    var count: Int { size.load(ordering: .relaxed) }
}
