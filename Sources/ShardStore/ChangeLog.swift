/// The keys of one shard that changed since the replicator last took them, in the order they first changed.
/// Records are packed into one byte array (hash, time, length, key bytes), so logging a key allocates nothing
/// once the array has grown to the shard's usual traffic; the table's change mark keeps a key from being
/// logged twice while it waits. The time is when the key first changed since it was last taken, so the
/// oldest record tells how far behind the replica is.
struct ChangeLog {
    private var bytes: [UInt8] = []
    /// Records before this offset have been taken.
    private var readOffset = 0
    /// Records not yet taken (a key may appear twice: once for a removal, once for what came after it).
    private(set) var count = 0
    /// Records put back out of time order (after a failed write, or by compaction) are older than the ones
    /// around them: the oldest of their times, and the offset just past the last of them.
    private var outOfOrder: (oldest: Int64, end: Int)?

    private static let headerSize = 18

    /// Logs a key; `outOfOrder` when `time` may be older than records already logged.
    mutating func append(key: UnsafeRawBufferPointer, hash: UInt64, time: Int64, outOfOrder: Bool = false) {
        Swift.withUnsafeBytes(of: hash.littleEndian) { bytes.append(contentsOf: $0) }
        Swift.withUnsafeBytes(of: time.littleEndian) { bytes.append(contentsOf: $0) }
        Swift.withUnsafeBytes(of: UInt16(key.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: key)
        count += 1
        if outOfOrder { noteOutOfOrder(time) }
    }

    private mutating func noteOutOfOrder(_ time: Int64) {
        guard time != 0 else { return }
        outOfOrder = (min(outOfOrder?.oldest ?? time, time), bytes.count)
    }

    /// When the oldest record not yet taken was logged (0 if unknown); nil when there is none.
    var oldestTime: Int64? {
        guard readOffset < bytes.count else { return nil }
        let head = bytes.withUnsafeBytes { Self.record(in: $0, at: readOffset).time }
        guard let outOfOrder else { return head }
        return head == 0 ? outOfOrder.oldest : min(head, outOfOrder.oldest)
    }

    /// Calls `body` with up to `limit` of the oldest records, removing each one `body` is called with.
    mutating func take(_ limit: Int, _ body: (UnsafeRawBufferPointer, UInt64, Int64) -> Void) {
        var taken = 0
        bytes.withUnsafeBytes { raw in
            while taken < limit, readOffset < raw.count {
                let (key, hash, time, next) = Self.record(in: raw, at: readOffset)
                body(key, hash, time)
                readOffset = next
                taken += 1
            }
        }
        count -= taken
        if let end = outOfOrder?.end, readOffset >= end { outOfOrder = nil }
        if readOffset == bytes.count {
            bytes.removeAll(keepingCapacity: true)
            readOffset = 0
        } else if readOffset > bytes.count / 2 {
            // Drop the taken half, so a log that is never fully drained does not grow without end.
            bytes.removeSubrange(0..<readOffset)
            outOfOrder?.end -= readOffset
            readOffset = 0
        }
    }

    /// Takes up to `limit` of the oldest records and puts back at the end, in order, those `keep` says yes to.
    mutating func rotate(_ limit: Int, keep: (UnsafeRawBufferPointer, UInt64) -> Bool) {
        var kept = ChangeLog()
        var oldest = Int64.max
        take(limit) { key, hash, time in
            guard keep(key, hash) else { return }
            kept.append(key: key, hash: hash, time: time)
            if time != 0 { oldest = min(oldest, time) }
        }
        kept.bytes.withUnsafeBytes { bytes.append(contentsOf: $0) }
        count += kept.count
        if oldest != .max { noteOutOfOrder(oldest) }
    }

    private static func record(
        in raw: UnsafeRawBufferPointer, at offset: Int
    ) -> (key: UnsafeRawBufferPointer, hash: UInt64, time: Int64, next: Int) {
        let hash = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        let time = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: Int64.self))
        let length = Int(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt16.self)))
        let start = offset + headerSize
        return (UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]), hash, time, start + length)
    }
}
