import RateLimiting

/// The snapshot file format, version 1 (little-endian throughout):
///
/// ```
/// magic "RLDSNAP\0" | version u32 | saved_at_ns i64 | key_count u64
/// key_count × ( key_length u16 | key bytes | window_ns i64 | kind u8 | state )
///   kind 1 bucket:          theoretical_arrival i64
///   kind 2 fixed window:    window_start i64 | used i64
///   kind 3 sliding counter: window_start i64 | previous i64 | current i64
///   kind 4 sliding log:     entry_count u32 | entry_count × ( time i64 | count i64 )
/// crc32 u32 of everything before it
/// ```
///
/// Times are nanoseconds since the Unix epoch (the decision clock's own scale), so time spent down counts
/// after a restart. `window_ns` is the window of the limit that last decided for the key (0 if unknown), so
/// the sweeper can tell when a restored state is fresh. A file that fails any check is refused whole, never half-loaded.
public enum SnapshotCodec {
    public static let magic: [UInt8] = Array("RLDSNAP\u{0}".utf8)
    public static let version: UInt32 = 1
    /// Times in a snapshot lie within a century of its save time; anything else is corruption, and would
    /// overflow the window arithmetic of the algorithms.
    public static let maxTimeDistance: Int64 = 100 * 365 * 86_400 * 1_000_000_000

    /// Encodes every key of `tables`, leaving out those whose state is already fresh at `savedAt` (their
    /// absence means the same thing, a full quota) when the window they were decided under is known.
    public static func encode(_ tables: [KeyTableSnapshot], savedAt: Int64) -> [UInt8] {
        encodeCounting(tables, savedAt: savedAt).bytes
    }

    /// `encode`, also returning how many keys went into the file.
    public static func encodeCounting(_ tables: [KeyTableSnapshot], savedAt: Int64) -> (bytes: [UInt8], keys: Int) {
        var out: [UInt8] = []
        out.reserveCapacity(64 + tables.reduce(0) { $0 + $1.count } * 40)
        out += magic
        out.appendLittleEndian(version)
        out.appendLittleEndian(savedAt)
        let countOffset = out.count
        out.appendLittleEndian(UInt64(0))
        var count: UInt64 = 0
        for table in tables {
            table.forEach { key, state, window in
                if case .bucket = state, state.isFresh(now: savedAt, windowNanos: window) { return }
                if window != 0, state.isFresh(now: savedAt, windowNanos: window) { return }
                count += 1
                out.appendLittleEndian(UInt16(key.count))
                out += key
                out.appendLittleEndian(window)
                encodeState(state, into: &out)
            }
        }
        withUnsafeBytes(of: count.littleEndian) { bytes in
            out.replaceSubrange(countOffset..<(countOffset + 8), with: bytes)
        }
        let crc = out.withUnsafeBytes(CRC32.checksum)
        out.appendLittleEndian(crc)
        return (out, Int(count))
    }

    /// One state: its kind byte, then its fields (the layout above). Redis values use it too.
    public static func encodeState(_ state: KeyState, into out: inout [UInt8]) {
        switch state {
        case .bucket(let bucket):
            out.append(1)
            out.appendLittleEndian(bucket.theoreticalArrival)
        case .fixedWindow(let window):
            out.append(2)
            out.appendLittleEndian(window.windowStart)
            out.appendLittleEndian(window.used)
        case .slidingCounter(let counter):
            out.append(3)
            out.appendLittleEndian(counter.windowStart)
            out.appendLittleEndian(counter.previous)
            out.appendLittleEndian(counter.current)
        case .slidingLog(let log):
            out.append(4)
            out.appendLittleEndian(UInt32(log.liveEntries.count))
            for entry in log.liveEntries {
                out.appendLittleEndian(entry.time)
                out.appendLittleEndian(entry.count)
            }
        }
    }

    /// A decoded snapshot: when it was saved and every key's state.
    public struct Contents {
        public var savedAt: Int64
        public var entries: [(key: [UInt8], state: KeyState, windowNanos: Int64)]
    }

    public static func decode(_ bytes: [UInt8]) throws(SnapshotError) -> Contents {
        guard bytes.count >= magic.count + 4 + 8 + 8 + 4 else {
            throw SnapshotError("truncated: \(bytes.count) bytes is shorter than a snapshot header")
        }
        guard bytes.starts(with: magic) else { throw SnapshotError("not a ratelimitd snapshot (bad magic bytes)") }
        var reader = ByteReader(bytes, end: bytes.count - 4)
        reader.position = magic.count
        let fileVersion: UInt32 = try reader.read()
        guard fileVersion == version else {
            throw SnapshotError(fileVersion > version
                ? "format version \(fileVersion) was written by a newer ratelimitd (this one reads \(version))"
                : "unknown format version \(fileVersion)")
        }
        let stored = bytes.withUnsafeBytes { raw -> (UInt32, UInt32) in
            let computed = CRC32.checksum(UnsafeRawBufferPointer(rebasing: raw[..<(bytes.count - 4)]))
            return (raw.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self).littleEndian, computed)
        }
        guard stored.0 == stored.1 else {
            throw SnapshotError("checksum mismatch (truncated or corrupted file)")
        }
        let savedAt: Int64 = try reader.read()
        guard (-Self.maxTimeDistance...Self.maxTimeDistance).contains(savedAt) else {
            throw SnapshotError("implausible save time \(savedAt)")
        }
        let plausible = (savedAt - Self.maxTimeDistance)...(savedAt + Self.maxTimeDistance)
        let count: UInt64 = try reader.read()
        guard count <= UInt64(bytes.count) else { throw SnapshotError("key count \(count) exceeds the file size") }
        var entries: [(key: [UInt8], state: KeyState, windowNanos: Int64)] = []
        entries.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            let length = Int(try reader.read() as UInt16)
            let key = try reader.bytes(length)
            guard !key.isEmpty, key.count <= KeyRules.maxKeyLength, key.allSatisfy(KeyRules.isKeyByte) else {
                throw SnapshotError("key \(index + 1) is not a valid key")
            }
            let window: Int64 = try reader.read()
            guard window == 0 || (Limit.minWindowNanos...Limit.maxWindowNanos).contains(window) else {
                throw SnapshotError("key \(index + 1): bad window")
            }
            let state: KeyState
            do {
                state = try decodeState(&reader)
            } catch {
                throw SnapshotError("key \(index + 1): \(error)")
            }
            guard state.times.allSatisfy(plausible.contains) else {
                throw SnapshotError("key \(index + 1): a time more than a century from the save time")
            }
            entries.append((key, state, window))
        }
        guard reader.position == reader.end else {
            throw SnapshotError("\(reader.end - reader.position) unexpected bytes after the last key")
        }
        return Contents(savedAt: savedAt, entries: entries)
    }

    public static func decodeState(_ reader: inout ByteReader) throws(SnapshotError) -> KeyState {
        let kind: UInt8 = try reader.read()
        switch kind {
        case 1:
            return .bucket(BucketState(theoreticalArrival: try reader.read()))
        case 2:
            let start: Int64 = try reader.read()
            let used: Int64 = try reader.read()
            guard used >= 0, used <= Limit.maxLimit else { throw SnapshotError("bad window count") }
            return .fixedWindow(FixedWindowState(windowStart: start, used: used))
        case 3:
            let start: Int64 = try reader.read()
            let previous: Int64 = try reader.read()
            let current: Int64 = try reader.read()
            guard (0...Limit.maxLimit).contains(previous), (0...Limit.maxLimit).contains(current) else {
                throw SnapshotError("bad window counts")
            }
            return .slidingCounter(SlidingCounterState(windowStart: start, previous: previous, current: current))
        case 4:
            let count = Int(try reader.read() as UInt32)
            guard count <= Int(Limit.maxSlidingLogLimit) else { throw SnapshotError("log too long") }
            var log: [SlidingLogState.Entry] = []
            for _ in 0..<count {
                let time: Int64 = try reader.read()
                let units: Int64 = try reader.read()
                guard units > 0, units <= Limit.maxSlidingLogLimit, log.last.map({ $0.time < time }) ?? true else {
                    throw SnapshotError("bad log entry")
                }
                log.append(SlidingLogState.Entry(time: time, count: units))
            }
            return .slidingLog(SlidingLogState(entries: log))
        default:
            throw SnapshotError("unknown state kind \(kind)")
        }
    }
}

/// Why a snapshot cannot be used.
public struct SnapshotError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads fixed-width little-endian values, refusing to read past `end`.
public struct ByteReader {
    let bytes: [UInt8]
    public let end: Int
    public var position = 0

    public init(_ bytes: [UInt8], end: Int) {
        self.bytes = bytes
        self.end = end
    }

    public mutating func read<T: FixedWidthInteger>() throws(SnapshotError) -> T {
        let size = MemoryLayout<T>.size
        guard position + size <= end else { throw SnapshotError("truncated at byte \(position)") }
        let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: position, as: T.self) }
        position += size
        return T(littleEndian: value)
    }

    mutating func bytes(_ count: Int) throws(SnapshotError) -> [UInt8] {
        guard position + count <= end else { throw SnapshotError("truncated at byte \(position)") }
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }
}

extension [UInt8] {
    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

extension KeyState {
    /// Every time stored in the state.
    public var times: [Int64] {
        switch self {
        case .bucket(let bucket): [bucket.theoreticalArrival]
        case .fixedWindow(let window): [window.windowStart]
        case .slidingCounter(let counter): [counter.windowStart]
        case .slidingLog(let log): log.liveEntries.map(\.time)
        }
    }
}
