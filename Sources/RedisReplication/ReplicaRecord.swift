import RateLimiting
import ShardStore

/// One key's state as stored in Redis (little-endian, as in the snapshot file):
///
/// ```
/// version u8 (1) | updated_at_ns i64 | window_ns i64 | kind u8 | state (the snapshot's layout)
/// ```
///
/// `updated_at_ns` is when the replicator read the state (decision-clock nanoseconds since the Unix epoch):
/// on restore, the newer of a key's Redis copy and the snapshot wins. Redis is another program's memory,
/// so a value is checked as strictly as a snapshot file before anything in it is believed.
public enum ReplicaRecord {
    public static let version: UInt8 = 1
    /// How far ahead of this daemon's clock another's may have written a value.
    public static let maxClockSkew: Int64 = 3_600_000_000_000

    public struct Contents: Sendable, Hashable {
        public var updatedAt: Int64
        public var state: KeyState
        public var windowNanos: Int64

        public init(updatedAt: Int64, state: KeyState, windowNanos: Int64) {
            self.updatedAt = updatedAt
            self.state = state
            self.windowNanos = windowNanos
        }
    }

    public static func encode(_ contents: Contents, into out: inout [UInt8]) {
        out.append(version)
        out.appendLittleEndian(contents.updatedAt)
        out.appendLittleEndian(contents.windowNanos)
        SnapshotCodec.encodeState(contents.state, into: &out)
    }

    public static func encode(_ contents: Contents) -> [UInt8] {
        var out: [UInt8] = []
        encode(contents, into: &out)
        return out
    }

    /// Decodes a value read from Redis at `now`; throws, saying why, for anything this version did not write.
    public static func decode(_ bytes: [UInt8], now: Int64) throws(SnapshotError) -> Contents {
        guard let first = bytes.first else { throw SnapshotError("empty value") }
        guard first == version else { throw SnapshotError("unknown value version \(first)") }
        var reader = ByteReader(bytes, end: bytes.count)
        reader.position = 1
        let updatedAt: Int64 = try reader.read()
        let century = SnapshotCodec.maxTimeDistance
        // A value from the future would win every later restore; an hour covers clocks out of step.
        guard updatedAt >= now - century, updatedAt <= now + Self.maxClockSkew else {
            throw SnapshotError("implausible update time \(updatedAt)")
        }
        let window: Int64 = try reader.read()
        guard window == 0 || (Limit.minWindowNanos...Limit.maxWindowNanos).contains(window) else {
            throw SnapshotError("bad window \(window)")
        }
        let state = try SnapshotCodec.decodeState(&reader)
        guard state.times.allSatisfy({ $0 >= updatedAt - century && $0 <= updatedAt + century }) else {
            throw SnapshotError("a time more than a century from the update time")
        }
        guard reader.position == reader.end else {
            throw SnapshotError("\(reader.end - reader.position) unexpected bytes after the state")
        }
        return Contents(updatedAt: updatedAt, state: state, windowNanos: window)
    }
}
