import Logging
import NIOPosix
import ServiceLifecycle
import ServiceTicks
import ShardStore

/// Runs the replicator every flush interval on a thread of its own (hiredis blocks), and once more at
/// shutdown. List it before the server in the service group: groups stop services in reverse order, so the
/// final flush runs after the last connection has closed and nothing can change any more.
public struct ReplicationService: Service {
    let replicator: Replicator
    let interval: Duration
    /// The whole graceful shutdown's budget, counted from when it began (the server records that); the
    /// final flush gets what the server's quiesce and final snapshot left of it.
    let shutdownTimeoutNanos: Int64
    let logger: Logger

    public init(replicator: Replicator, interval: Duration, shutdownTimeoutNanos: Int64, logger: Logger) {
        self.replicator = replicator
        self.interval = interval
        self.shutdownTimeoutNanos = shutdownTimeoutNanos
        self.logger = logger
    }

    public func run() async throws {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let replicator = self.replicator
        while await nextTick(after: interval) {
            // Throws only if cancelled before it started (the shutdown timeout ran out): on to the final flush.
            _ = try? await thread.runIfActive { replicator.flush() }
        }
        let feed = replicator.feed
        let began = feed.shutdownStartedAt ?? feed.clock.nanosecondsNow()
        // A margin for the exit itself, so the group's own timeout never has to cut the flush short.
        let deadline = began + max(0, shutdownTimeoutNanos - 250_000_000)
        // Cancelled (the shutdown timeout ran out while a flush was stuck on Redis): nothing more is written.
        let pending =
            (try? await thread.runIfActive { replicator.finalFlush(deadline: deadline) }) ?? feed.pending().count
        if pending == 0 {
            logger.info("final replication flush done", metadata: ["redis": "\(replicator.settings.endpoint)"])
        } else {
            logger.error(
                "changes not replicated at shutdown; Redis is behind this daemon's final state",
                metadata: ["redis": "\(replicator.settings.endpoint)", "pending": "\(pending)"])
        }
        try await thread.shutdownGracefully()
    }
}
