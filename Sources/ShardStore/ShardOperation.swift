import RateLimiting

/// One operation on a shard: decide a cost, or forget a key.
public enum ShardOperation: Sendable {
    case check(cost: Int64, limit: Limit)
    case reset
}

/// The answer to one `ShardOperation`.
public enum ShardResult: Sendable, Hashable {
    case decision(Decision)
    case reset
}

extension Shard {
    public func run(_ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64) -> ShardResult {
        switch operation {
        case .check(let cost, let limit):
            return .decision(check(key: key, hash: hash, cost: cost, limit: limit, now: now))
        case .reset:
            latest = max(latest, now)
            reset(key: key, hash: hash)
            return .reset
        }
    }
}
