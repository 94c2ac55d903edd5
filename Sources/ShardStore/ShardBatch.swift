import RateLimiting

/// One operation for a shard: decide a cost, or forget a key.
public enum ShardOperation: Sendable {
    case check(cost: Int64, limit: Limit)
    case reset
}

/// One request inside a batch; `slot` lets the sender put the answer back in request order. The key is a
/// range of the batch's key bytes.
public struct ShardRequest: Sendable {
    public var slot: Int
    public var hash: UInt64
    var keyStart: Int32
    var keyLength: Int32
    public var operation: ShardOperation
}

/// The answer to one `ShardRequest`.
public enum ShardResult: Sendable, Hashable {
    case decision(Decision)
    case reset
}

/// All the requests one connection has for one shard from one read burst: the unit of hand-off, so a burst
/// of a thousand requests costs one hop per shard, not a thousand. Keys are copied into one byte array, and
/// a connection reuses its batches, so a hand-off allocates nothing once the arrays have grown.
///
/// A class, so that it travels between threads without its arrays ever being shared (and so copied on
/// write). `@unchecked Sendable` because ownership moves with it: the connection fills it, hands it to the
/// shard's event loop with `execute`, and touches it again only after the shard hands it back with
/// `execute`; each hand-off orders the accesses, and no two threads hold it at once.
public final class ShardBatch: @unchecked Sendable {
    public private(set) var requests: [ShardRequest] = []
    public private(set) var results: [ShardResult] = []
    private var keyBytes: [UInt8] = []

    public init() {}

    public var isEmpty: Bool { requests.isEmpty }

    public func append(slot: Int, key: UnsafeRawBufferPointer, hash: UInt64, operation: ShardOperation) {
        requests.append(ShardRequest(
            slot: slot, hash: hash, keyStart: Int32(keyBytes.count), keyLength: Int32(key.count), operation: operation))
        keyBytes.append(contentsOf: key)
    }

    /// Empties the batch for reuse, keeping its storage.
    public func removeAll() {
        requests.removeAll(keepingCapacity: true)
        results.removeAll(keepingCapacity: true)
        keyBytes.removeAll(keepingCapacity: true)
    }

    /// The key of `request` as a string; for tests.
    public func key(of request: ShardRequest) -> String {
        String(decoding: keyBytes[Int(request.keyStart)..<Int(request.keyStart + request.keyLength)], as: UTF8.self)
    }

    fileprivate func run(on shard: Shard, now: Int64) {
        results.removeAll(keepingCapacity: true)
        results.reserveCapacity(requests.count)
        keyBytes.withUnsafeBytes { bytes in
            for request in requests {
                let key = UnsafeRawBufferPointer(
                    rebasing: bytes[Int(request.keyStart)..<Int(request.keyStart + request.keyLength)])
                results.append(shard.run(request.operation, key: key, hash: request.hash, now: now))
            }
        }
    }
}

extension Shard {
    /// Runs every request of `batch` in order at one instant and fills in its results.
    public func process(_ batch: ShardBatch, now: Int64) {
        batch.run(on: self, now: now)
    }

    public func run(_ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64) -> ShardResult {
        switch operation {
        case .check(let cost, let limit):
            return .decision(check(key: key, hash: hash, cost: cost, limit: limit, now: now))
        case .reset:
            reset(key: key, hash: hash)
            return .reset
        }
    }
}
