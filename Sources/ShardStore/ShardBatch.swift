import RateLimiting

/// One operation for a shard: decide a cost, or forget a key.
public enum ShardOperation: Sendable {
    case check(cost: Int64, limit: Limit)
    case reset
}

/// One request inside a batch; `slot` lets the sender put the answer back in request order.
public struct ShardRequest: Sendable {
    public var slot: Int
    public var key: String
    public var operation: ShardOperation

    public init(slot: Int, key: String, operation: ShardOperation) {
        self.slot = slot
        self.key = key
        self.operation = operation
    }
}

/// The answer to one `ShardRequest`.
public enum ShardResult: Sendable, Hashable {
    case decision(Decision)
    case reset
}

/// All the requests one connection has for one shard from one read burst: the unit of hand-off, so a burst
/// of a thousand requests costs one hop per shard, not a thousand.
public struct ShardBatch: Sendable {
    public var requests: [ShardRequest] = []
    public var results: [ShardResult] = []

    public init() {}

    public var isEmpty: Bool { requests.isEmpty }

    public mutating func append(_ request: ShardRequest) {
        requests.append(request)
    }
}

extension Shard {
    /// Runs every request of `batch` in order at one instant and fills in its results.
    public func process(_ batch: inout ShardBatch, now: Int64) {
        batch.results.removeAll(keepingCapacity: true)
        batch.results.reserveCapacity(batch.requests.count)
        for request in batch.requests {
            batch.results.append(run(request.operation, key: request.key, now: now))
        }
    }

    public func run(_ operation: ShardOperation, key: String, now: Int64) -> ShardResult {
        switch operation {
        case .check(let cost, let limit):
            return .decision(check(key: key, cost: cost, limit: limit, now: now))
        case .reset:
            reset(key: key)
            return .reset
        }
    }
}
