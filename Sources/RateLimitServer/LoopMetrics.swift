import Atomics
import NIOCore
import WireProtocol

/// Counters the connections of one event loop add to, without a lock: how long read bursts take per
/// decision, and error replies by code. One per loop, so two loops never write the same cache line; a
/// scrape reads them all.
public final class LoopMetrics: Sendable {
    /// Upper bounds of the latency buckets, in nanoseconds (the last bucket is everything above).
    public static let bucketBounds: [Int64] = [
        10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
        25_000_000, 100_000_000,
    ]

    /// Decisions per bucket (not cumulative), one more than `bucketBounds` for the overflow.
    let buckets: [ManagedAtomic<Int64>]
    let sumNanos = ManagedAtomic<Int64>(0)
    /// Error replies by `ErrorCode.allCases` index.
    let errors: [ManagedAtomic<Int64>]

    public init() {
        buckets = (0...Self.bucketBounds.count).map { _ in ManagedAtomic(0) }
        errors = ErrorCode.allCases.map { _ in ManagedAtomic(0) }
    }

    /// A read burst that decided `decisions` requests took `nanos` from its first decision until its
    /// replies were ready: every decision in it waited that long for its reply to leave.
    func record(burstNanos nanos: Int64, decisions: Int) {
        var index = 0
        while index < Self.bucketBounds.count, nanos > Self.bucketBounds[index] { index += 1 }
        buckets[index].wrappingIncrement(by: Int64(decisions), ordering: .relaxed)
        sumNanos.wrappingIncrement(by: nanos &* Int64(decisions), ordering: .relaxed)
    }

    func countError(_ code: ErrorCode) {
        if let index = ErrorCode.allCases.firstIndex(of: code) {
            errors[index].wrappingIncrement(ordering: .relaxed)
        }
    }
}

/// Every event loop's `LoopMetrics`, found by loop.
final class LoopMetricsTable: Sendable {
    private let byLoop: [ObjectIdentifier: LoopMetrics]
    /// For channels on a loop not in the table (tests on an embedded loop).
    private let other = LoopMetrics()

    init(loops: [any EventLoop]) {
        var byLoop: [ObjectIdentifier: LoopMetrics] = [:]
        for loop in loops { byLoop[ObjectIdentifier(loop)] = LoopMetrics() }
        self.byLoop = byLoop
    }

    func metrics(for loop: any EventLoop) -> LoopMetrics {
        byLoop[ObjectIdentifier(loop)] ?? other
    }

    var all: [LoopMetrics] { Array(byLoop.values) + [other] }
}
