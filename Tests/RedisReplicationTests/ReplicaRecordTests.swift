import RateLimiting
import ShardStore
import Testing

@testable import RedisReplication

@Suite("replica record (the value stored in Redis)")
struct ReplicaRecordTests {
    static let now: Int64 = 1_700_000_000_000_000_000
    static let window: Int64 = 60_000_000_000

    static let states: [KeyState] = [
        .bucket(BucketState(theoreticalArrival: now + 5_000_000)),
        .fixedWindow(FixedWindowState(windowStart: now - 1_000, used: 7)),
        .slidingCounter(SlidingCounterState(windowStart: now - 2_000, previous: 3, current: 9)),
        .slidingLog(SlidingLogState(entries: [.init(time: now - 50, count: 2), .init(time: now - 10, count: 1)])),
    ]

    @Test(arguments: states)
    func roundTrips(state: KeyState) throws {
        let contents = ReplicaRecord.Contents(updatedAt: Self.now, state: state, windowNanos: Self.window)
        let bytes = ReplicaRecord.encode(contents)
        #expect(try ReplicaRecord.decode(bytes, now: Self.now + 1) == contents)
    }

    @Test(arguments: states)
    func everyTruncationAndTrailingByteIsRefused(state: KeyState) {
        let bytes = ReplicaRecord.encode(.init(updatedAt: Self.now, state: state, windowNanos: Self.window))
        for length in 0..<bytes.count {
            #expect(throws: SnapshotError.self, "truncated to \(length)") {
                try ReplicaRecord.decode(Array(bytes.prefix(length)), now: Self.now)
            }
        }
        #expect(throws: SnapshotError.self) { try ReplicaRecord.decode(bytes + [0], now: Self.now) }
    }

    @Test func valuesThisVersionDidNotWriteAreRefused() {
        let good = ReplicaRecord.encode(.init(updatedAt: Self.now, state: Self.states[1], windowNanos: Self.window))
        var otherVersion = good
        otherVersion[0] = 2
        var unknownKind = good
        unknownKind[17] = 9
        let century = SnapshotCodec.maxTimeDistance
        let cases: [(String, [UInt8])] = [
            ("another program's string", Array("hello".utf8)),
            ("a future version", otherVersion),
            ("an unknown kind", unknownKind),
            ("an update time from another century",
             ReplicaRecord.encode(.init(updatedAt: Self.now - 2 * century, state: Self.states[0], windowNanos: 0))),
            ("a state time far from the update",
             ReplicaRecord.encode(.init(
                updatedAt: Self.now, state: .bucket(BucketState(theoreticalArrival: .max)), windowNanos: 0))),
            ("a negative count",
             ReplicaRecord.encode(.init(
                updatedAt: Self.now, state: .fixedWindow(FixedWindowState(windowStart: Self.now, used: -1)),
                windowNanos: Self.window))),
            ("a window out of range",
             ReplicaRecord.encode(.init(updatedAt: Self.now, state: Self.states[0], windowNanos: -5))),
        ]
        for (name, bytes) in cases {
            #expect(throws: SnapshotError.self, "\(name)") { try ReplicaRecord.decode(bytes, now: Self.now) }
        }
    }
}
