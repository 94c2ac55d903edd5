#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import ServiceLifecycle
import ServiceTicks
import ShardStore

/// The server as a service: listens until graceful shutdown (SIGTERM, SIGINT), then stops accepting, lets
/// every connection answer the requests it has read and close, stops the event loops, and writes the final
/// snapshot while nothing can change any more.
public struct RateLimitService: Service {
    let server: RateLimitServer
    let snapshotter: Snapshotter?
    let notifier: SystemdNotifier
    let logger: Logger

    public init(
        server: RateLimitServer, snapshotter: Snapshotter?, notifier: SystemdNotifier, logger: Logger
    ) {
        self.server = server
        self.snapshotter = snapshotter
        self.notifier = notifier
        self.logger = logger
    }

    public func run() async throws {
        let channel = try await server.start()
        // State was restored before the service group started; now the port accepts too.
        let address = channel.localAddress.map(RateLimitServer.describe) ?? "?"
        notifier.notify("READY=1\nSTATUS=serving on \(address)\nMAINPID=\(getpid())")
        // Cancelled too (another service failed): stop the same way rather than wait forever.
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            logger.info("shutting down: no new connections")
            channel.close(promise: nil)
        }
        await server.quiesce()
        try await server.shutdown()
        if let snapshotter {
            let saved = try await snapshotter.save()
            logger.info(
                "saved final snapshot",
                metadata: [
                    "path": "\(snapshotter.path)", "keys": "\(saved.keys)", "bytes": "\(saved.bytes)",
                    "ms": "\(Int(saved.milliseconds.rounded()))",
                ])
        }
        logger.info("stopped")
    }
}

/// Saves a snapshot every `interval` until shutdown. A failed save is logged and retried at the next
/// interval; the daemon keeps serving.
public struct SnapshotService: Service {
    let snapshotter: Snapshotter
    let interval: Duration
    let logger: Logger

    public init(snapshotter: Snapshotter, interval: Duration, logger: Logger) {
        self.snapshotter = snapshotter
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        while await nextTick(after: interval) {
            do {
                let saved = try await snapshotter.save()
                logger.debug("saved snapshot", metadata: ["keys": "\(saved.keys)", "ms": "\(Int(saved.milliseconds))"])
            } catch {
                logger.error("\(error)")
            }
        }
    }
}
