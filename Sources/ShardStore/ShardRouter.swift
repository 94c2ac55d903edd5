/// Which shard owns a key: FNV-1a over the key's bytes, modulo the shard count. A fixed hash (not Swift's
/// per-process seeded `Hasher`) so that a key lands on the same shard in every run; the tables inside each
/// shard still use the seeded hasher, so chosen keys can skew shard load but cannot degrade a table.
public struct ShardRouter: Sendable {
    public let shardCount: Int

    public init(shardCount: Int) {
        precondition(shardCount >= 1, "a store has at least one shard")
        self.shardCount = shardCount
    }

    public func shard(for key: String) -> Int {
        guard shardCount > 1 else { return 0 }
        var key = key
        let hash = key.withUTF8 { ShardRouter.fnv1a($0) }
        return Int(hash % UInt64(shardCount))
    }

    static func fnv1a(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
