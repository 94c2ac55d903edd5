import ShardStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Saves the shards to the snapshot file. Taking each shard's copy is O(1) under its lock (copy-on-write),
/// and encoding and writing happen here, on the concurrency pool, never on an event loop; the actor makes
/// the periodic and the final save take turns.
public actor Snapshotter {
    public struct Saved: Sendable {
        public var keys: Int
        public var bytes: Int
        public var milliseconds: Double
    }

    public let path: String
    private let shards: [LockedShard]
    private let clock: any DecisionClock
    private let status: SnapshotStatus

    init(path: String, shards: [LockedShard], clock: any DecisionClock, status: SnapshotStatus) {
        self.path = path
        self.shards = shards
        self.clock = clock
        self.status = status
    }

    @discardableResult
    public func save() throws -> Saved {
        let started = clock.nanosecondsNow()
        let copies = shards.map { $0.snapshot() }
        let (bytes, keys) = SnapshotCodec.encodeCounting(copies, savedAt: started)
        do {
            try SnapshotFile.write(bytes, to: path)
        } catch {
            throw SnapshotterError(description: "cannot save the snapshot: \(error)")
        }
        let finished = clock.nanosecondsNow()
        status.record(savedAt: started, keys: keys, durationNanos: finished - started)
        return Saved(keys: keys, bytes: bytes.count, milliseconds: Double(finished - started) / 1e6)
    }
}

public struct SnapshotterError: Error, CustomStringConvertible {
    public let description: String
}
