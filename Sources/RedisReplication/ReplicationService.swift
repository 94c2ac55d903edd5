import Logging
import NIOPosix
import ServiceLifecycle

/// Runs the replicator every flush interval on a thread of its own (hiredis blocks), and once more at
/// shutdown. List it before the server in the service group: groups stop services in reverse order, so the
/// final flush runs after the last connection has closed and nothing can change any more.
public struct ReplicationService: Service {
    let replicator: Replicator
    let interval: Duration
    /// How long the final flush may go on; the shutdown timeout, since a stuck Redis must not hold the
    /// daemon up past it.
    let finalFlushLimit: Duration
    let logger: Logger

    public init(replicator: Replicator, interval: Duration, finalFlushLimit: Duration, logger: Logger) {
        self.replicator = replicator
        self.interval = interval
        self.finalFlushLimit = finalFlushLimit
        self.logger = logger
    }

    public func run() async throws {
        let thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let replicator = self.replicator
        while !Task.isShuttingDownGracefully {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            guard !Task.isShuttingDownGracefully else { break }
            _ = try await thread.runIfActive { replicator.flush() }
        }
        let limit = finalFlushLimit.components
        let limitNanos = limit.seconds * 1_000_000_000 + limit.attoseconds / 1_000_000_000
        let pending = try await thread.runIfActive { replicator.finalFlush(forNanoseconds: limitNanos) }
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
