/// Keys with their hashes packed in one reusable byte array, for handing a few thousand keys to a shard in
/// one lock hold.
public struct KeyChunk: Sendable {
    private var bytes: [UInt8] = []
    private var hashes: [UInt64] = []

    public init() {}

    public var count: Int { hashes.count }

    public mutating func append(key: UnsafeRawBufferPointer, hash: UInt64) {
        bytes.append(UInt8(truncatingIfNeeded: key.count))
        bytes.append(UInt8(truncatingIfNeeded: key.count >> 8))
        bytes.append(contentsOf: key)
        hashes.append(hash)
    }

    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        hashes.removeAll(keepingCapacity: true)
    }

    public func forEach(_ body: (UnsafeRawBufferPointer, UInt64) -> Void) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            for hash in hashes {
                let length = Int(raw[offset]) | Int(raw[offset + 1]) << 8
                body(UnsafeRawBufferPointer(rebasing: raw[(offset + 2)..<(offset + 2 + length)]), hash)
                offset += 2 + length
            }
        }
    }
}
