import Logging
import ServiceLifecycle
import ShardStore

/// Keeps memory following the active keys: every tick it looks at a slice of every shard's table and drops
/// keys whose state is fresh again, so a full pass over each table takes one `interval` and no pause grows
/// with the number of keys. It also reports evictions (keys dropped to stay within `max_keys`) at most once
/// per interval.
public struct SweepService: Service {
    let shards: [LockedShard]
    let clock: any DecisionClock
    let interval: Duration
    let logger: Logger
    static let tick = Duration.milliseconds(100)

    init(shards: [LockedShard], clock: any DecisionClock, interval: Duration, logger: Logger) {
        self.shards = shards
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        let ticksPerPass = max(1, Int(interval / Self.tick))
        var budgets = shards.map { _ in 1_024 }
        var tick = 0
        var reportedEvictions = shards.reduce(0) { $0 + $1.counters().evictions }
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.tick) }
            } catch {
                return
            }
            let now = clock.nanosecondsNow()
            for (index, shard) in shards.enumerated() {
                let result = shard.sweep(now: now, budget: budgets[index])
                // Enough slots per tick to cover the whole table once per interval.
                budgets[index] = max(1_024, (result.capacity + ticksPerPass - 1) / ticksPerPass)
            }
            tick += 1
            if tick % ticksPerPass == 0 {
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
