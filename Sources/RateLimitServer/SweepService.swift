import Logging
import ServiceLifecycle
import ServiceTicks
import ShardStore

/// Keeps memory following the active keys: every tick (a hundredth of the interval, from 10 ms to 1 min)
/// it looks at a slice of every shard's table and drops
/// keys whose state is fresh again, so a full pass over each table takes one `interval` and no pause grows
/// with the number of keys. It also reports evictions (keys dropped to stay within `max_keys`) at most once
/// per interval.
public struct SweepService: Service {
    let shards: [LockedShard]
    let clock: any DecisionClock
    let interval: Duration
    let logger: Logger
    /// Called after each full pass (once per `interval`).
    let afterPass: @Sendable () -> Void
    static let maxSlotsPerHold = 4_096
    /// A pass is spread over about a hundred ticks: 100 ms for the default 10 s interval.
    let tick: Duration

    init(
        shards: [LockedShard], clock: any DecisionClock, interval: Duration, logger: Logger,
        afterPass: @escaping @Sendable () -> Void = {}
    ) {
        self.afterPass = afterPass
        self.shards = shards
        self.clock = clock
        self.interval = interval
        self.logger = logger
        self.tick = min(max(interval / 100, .milliseconds(10)), .seconds(60))
    }

    public func run() async throws {
        let ticksPerPass = max(1, Int(interval / tick))
        var budgets = shards.map { _ in 1_024 }
        var ticks = 0
        var reportedEvictions = shards.reduce(0) { $0 + $1.counters().evictions }
        while await nextTick(after: tick) {
            let now = clock.nanosecondsNow()
            for (index, shard) in shards.enumerated() {
                // Enough slots per tick to cover the whole table once per interval, in slices of at most
                // 4096 slots per lock hold, so no pause grows with the table.
                var left = budgets[index]
                var capacity = 0
                while left > 0 {
                    let slice = min(left, Self.maxSlotsPerHold)
                    capacity = shard.sweep(now: now, budget: slice).capacity
                    left -= slice
                }
                budgets[index] = max(1_024, (capacity + ticksPerPass - 1) / ticksPerPass)
            }
            ticks += 1
            if ticks % ticksPerPass == 0 {
                afterPass()
                let evictions = shards.reduce(0) { $0 + $1.counters().evictions }
                if evictions > reportedEvictions {
                    logger.warning(
                        "evicted keys to stay within max_keys; evicted keys start afresh",
                        metadata: ["evicted": "\(evictions - reportedEvictions)", "total": "\(evictions)"])
                    reportedEvictions = evictions
                }
            }
        }
    }
}
