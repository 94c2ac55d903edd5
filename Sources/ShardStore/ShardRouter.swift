/// Which shard owns a key: the high 32 bits of its `KeyHash`, modulo the shard count. The table inside a
/// shard uses the low bits, so the two choices are independent and every shard's table fills evenly.
public struct ShardRouter: Sendable {
    public let shardCount: Int

    public init(shardCount: Int) {
        precondition(shardCount >= 1, "a store has at least one shard")
        self.shardCount = shardCount
    }

    @inlinable
    public func shard(forHash hash: UInt64) -> Int {
        Int((hash >> 32) % UInt64(shardCount))
    }

    public func shard(for key: String) -> Int {
        shard(forHash: KeyHash.hash(key))
    }
}
