/// The hash of a key, computed once per request and used twice: its high half picks the shard, its low
/// half places the key in that shard's table. SipHash with a per-process random seed (Swift's `Hasher`), so
/// a client cannot choose keys that collide in a table and turn lookups into scans, as it could against an
/// unseeded hash.
public enum KeyHash {
    @inlinable
    public static func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var hasher = Hasher()
        hasher.combine(bytes: key)
        return UInt64(UInt(bitPattern: hasher.finalize()))
    }

    public static func hash(_ key: String) -> UInt64 {
        var key = key
        return key.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }
}
