import RateLimiting
import ShardStore
import Testing

@Suite("snapshot codec")
struct SnapshotCodecTests {
    static let now: Int64 = 1_700_000_000_000_000_000

    /// A shard holding a key of every algorithm, short and long keys, and a log with several entries.
    static func populatedShard() -> Shard {
        let shard = Shard()
        for (index, algorithm) in Algorithm.allCases.enumerated() {
            let limit = try! Limit(algorithm: algorithm, limit: 10, windowNanos: 60_000_000_000)
            for (offset, key) in ["k\(index)", "a-key-that-is-longer-than-24-bytes:\(index)"].enumerated() {
                for step in 0..<3 {
                    _ = shard.check(key: key, cost: Int64(1 + offset), limit: limit, now: now + Int64(step) * 1_000_000)
                }
            }
        }
        return shard
    }

    @Test func roundTripsEveryAlgorithm() throws {
        let shard = Self.populatedShard()
        let bytes = SnapshotCodec.encode([shard.snapshot()], savedAt: Self.now)
        let contents = try SnapshotCodec.decode(bytes)
        #expect(contents.savedAt == Self.now)
        #expect(contents.entries.count == shard.keyCount)
        let restored = Shard()
        for entry in contents.entries {
            entry.key.withUnsafeBytes { restored.restore(key: $0, hash: KeyHash.hash($0), state: entry.state) }
        }
        #expect(Set(restored.keys) == Set(shard.keys))
        for key in shard.keys {
            #expect(restored.state(for: key) == shard.state(for: key), "\(key)")
        }
        // Every kind of state made it into the file.
        let kinds = Set(contents.entries.map { entry -> String in
            switch entry.state {
            case .bucket: "bucket"
            case .fixedWindow: "fixed"
            case .slidingLog: "log"
            case .slidingCounter: "counter"
            }
        })
        #expect(kinds.count == 4)
    }

    @Test func aSnapshotIsFrozenWhileTheShardChanges() throws {
        let shard = Self.populatedShard()
        let frozen = shard.snapshot()
        let countWhenFrozen = shard.keyCount
        let limit = try Limit(algorithm: .tokenBucket, limit: 10, windowNanos: 60_000_000_000)
        for index in 0..<1_000 { _ = shard.check(key: "later:\(index)", cost: 1, limit: limit, now: Self.now) }
        shard.reset(key: "k0")
        let contents = try SnapshotCodec.decode(SnapshotCodec.encode([frozen], savedAt: Self.now))
        #expect(contents.entries.count == countWhenFrozen)
        #expect(shard.keyCount == countWhenFrozen + 999)
        #expect(contents.entries.contains { $0.key == Array("k0".utf8) })
    }

    @Test func refusesEveryTruncation() {
        let bytes = SnapshotCodec.encode([Self.populatedShard().snapshot()], savedAt: Self.now)
        for length in 0..<bytes.count {
            #expect(throws: SnapshotError.self, "truncated to \(length) bytes") {
                try SnapshotCodec.decode(Array(bytes[..<length]))
            }
        }
        #expect(throws: SnapshotError.self) { try SnapshotCodec.decode(bytes + [0]) }
    }

    @Test func refusesEveryFlippedByte() {
        let bytes = SnapshotCodec.encode([Self.populatedShard().snapshot()], savedAt: Self.now)
        for index in bytes.indices {
            var corrupted = bytes
            corrupted[index] ^= 0x20
            #expect(throws: SnapshotError.self, "byte \(index) flipped") { try SnapshotCodec.decode(corrupted) }
        }
    }

    @Test func refusesAFutureVersionSayingSo() {
        var bytes = SnapshotCodec.encode([Self.populatedShard().snapshot()], savedAt: Self.now)
        bytes[8] = 2
        // Re-seal the file so that only the version is wrong.
        bytes.removeLast(4)
        let crc = CRC32Reference.checksum(bytes)
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: crc >> UInt32(shift))) }
        do {
            _ = try SnapshotCodec.decode(bytes)
            Issue.record("a version 2 file was accepted")
        } catch {
            #expect(error.description.contains("newer ratelimitd"))
        }
    }

    @Test func freshStatesAreLeftOut() throws {
        let shard = Self.populatedShard()
        // An hour later every bucket is full and every 1-minute window is over.
        let contents = try SnapshotCodec.decode(
            SnapshotCodec.encode([shard.snapshot()], savedAt: Self.now + 3_600_000_000_000))
        #expect(contents.entries.isEmpty)
    }

    @Test func anEmptyShardMakesAValidSnapshot() throws {
        let contents = try SnapshotCodec.decode(SnapshotCodec.encode([Shard().snapshot()], savedAt: 7))
        #expect(contents.entries.isEmpty && contents.savedAt == 7)
    }
}

/// An independent CRC-32 (bit by bit), to re-seal a deliberately edited file.
enum CRC32Reference {
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}
