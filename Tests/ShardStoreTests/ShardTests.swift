import NIOPosix
import RateLimiting
import ShardStore
import Testing

@Suite("shards and shard workers")
struct ShardTests {
    let limit = try! Limit(algorithm: .tokenBucket, limit: 2, windowNanos: 1_000_000_000)

    @Test func aShardKeepsStatePerKeyAndForgetsOnReset() {
        let shard = Shard()
        let now: Int64 = 1_700_000_000_000_000_000
        #expect(shard.check(key: "a", cost: 2, limit: limit, now: now).allowed)
        #expect(!shard.check(key: "a", cost: 1, limit: limit, now: now).allowed)
        #expect(shard.check(key: "b", cost: 1, limit: limit, now: now).allowed)
        #expect(shard.keyCount == 2)
        shard.reset(key: "a")
        #expect(shard.keyCount == 1)
        #expect(shard.check(key: "a", cost: 2, limit: limit, now: now).allowed)
    }

    @Test func peeksAndDenialsOfUnknownKeysStoreNothing() {
        let shard = Shard()
        _ = shard.check(key: "peek", cost: 0, limit: limit, now: 0)
        _ = shard.check(key: "too-big", cost: 3, limit: limit, now: 0)
        #expect(shard.keyCount == 0)
    }

    @Test func aBatchRunsInOrderAtOneInstant() {
        let shard = Shard()
        let batch = ShardBatch()
        batch.append(slot: 7, key: "k", operation: .check(cost: 2, limit: limit))
        batch.append(slot: 8, key: "k", operation: .check(cost: 1, limit: limit))
        batch.append(slot: 9, key: "k", operation: .reset)
        batch.append(slot: 10, key: "k", operation: .check(cost: 1, limit: limit))
        shard.process(batch, now: 5_000_000_000)
        #expect(batch.requests.map(\.slot) == [7, 8, 9, 10])
        #expect(batch.key(of: batch.requests[3]) == "k")
        #expect(batch.results == [
            .decision(Decision(allowed: true, remaining: 0, resetMillis: 1000)),
            .decision(Decision(allowed: false, remaining: 0, resetMillis: 500)),
            .reset,
            .decision(Decision(allowed: true, remaining: 1, resetMillis: 500)),
        ])
    }

    @Test func aWorkerRunsBatchesOnItsOwnLoopAndAnswersOnTheSender() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Array(group.makeIterator())
        let clock = ManualDecisionClock(nanoseconds: 1_000_000_000_000)
        let worker = ShardWorker(index: 0, eventLoop: loops[0], clock: clock)
        let batch = ShardBatch()
        batch.append(slot: 0, key: "k", operation: .check(cost: 1, limit: limit))
        let answered = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ShardBatch, any Error>) in
            worker.submit(batch, replyOn: loops[1]) { result in
                #expect(loops[1].inEventLoop)
                continuation.resume(returning: result)
            }
        }
        #expect(answered.results == [.decision(Decision(allowed: true, remaining: 1, resetMillis: 500))])
        #expect(try await worker.withShard { $0.keyCount }.get() == 1)
        try await group.shutdownGracefully()
    }
}

extension ShardBatch {
    func append(slot: Int, key: String, operation: ShardOperation) {
        var key = key
        key.withUTF8 { bytes in
            let raw = UnsafeRawBufferPointer(bytes)
            append(slot: slot, key: raw, hash: KeyHash.hash(raw), operation: operation)
        }
    }
}
