import RateLimiting
import ShardStore
import Testing

/// Several keys decided together: applied all or not at all, and exactly as tried.
@Suite("decision batches")
struct DecisionBatchTests {
    let now: Int64 = 1_700_000_000_000_000_000
    let fiveADay = try! Limit(algorithm: .fixedWindow, limit: 5, windowNanos: 86_400_000_000_000)
    let oneADay = try! Limit(algorithm: .fixedWindow, limit: 1, windowNanos: 86_400_000_000_000)

    func batch(shards: Int = 4) -> DecisionBatch {
        DecisionBatch(shards: (0..<shards).map { _ in LockedShard() }, router: ShardRouter(shardCount: shards))
    }

    func item(_ key: String, _ cost: Int64, _ limit: Limit) -> DecisionBatch.Item {
        .init(key: Array(key.utf8), cost: cost, limit: limit)
    }

    @Test func acceptedBatchesApplyEveryDecisionAcrossShards() {
        let batch = batch()
        let keys = (0..<16).map { "k\($0)" }
        let first = batch.decide(keys.map { item($0, 2, fiveADay) }, now: now) { _ in true }
        #expect(first.applied)
        #expect(first.decisions.map(\.remaining) == Array(repeating: 3, count: 16))
        let second = batch.decide(keys.map { item($0, 0, fiveADay) }, now: now) { _ in true }
        #expect(second.decisions.map(\.remaining) == Array(repeating: 3, count: 16))
    }

    @Test func aRefusedBatchConsumesNothingAndReportsPeeksForTheAllowed() {
        let batch = batch()
        _ = batch.decide([item("full", 1, oneADay)], now: now) { _ in true }
        let refused = batch.decide([item("a", 2, fiveADay), item("full", 1, oneADay)], now: now) { decisions in
            decisions.allSatisfy(\.allowed)
        }
        #expect(!refused.applied)
        #expect(refused.decisions[0] == Decision(allowed: true, remaining: 5, resetMillis: refused.decisions[0].resetMillis))
        #expect(!refused.decisions[1].allowed)
        let after = batch.decide([item("a", 0, fiveADay)], now: now) { _ in true }
        #expect(after.decisions[0].remaining == 5)
    }

    @Test func theSameKeyTwiceIsTriedInOrderSoTheBatchIsAllOrNothingStill() {
        let batch = batch()
        // 3 + 3 > 5: the second try sees the first's consumption and is denied, so nothing is applied.
        let refused = batch.decide([item("k", 3, fiveADay), item("k", 3, fiveADay)], now: now) { $0.allSatisfy(\.allowed) }
        #expect(!refused.applied)
        #expect(refused.decisions.map(\.allowed) == [true, false])
        #expect(batch.decide([item("k", 0, fiveADay)], now: now) { _ in true }.decisions[0].remaining == 5)
        let accepted = batch.decide([item("k", 2, fiveADay), item("k", 3, fiveADay)], now: now) { $0.allSatisfy(\.allowed) }
        #expect(accepted.applied)
        #expect(accepted.decisions.map(\.remaining) == [3, 0])
    }
}
