import ServiceLifecycle

/// Notes when graceful shutdown begins. List it last in the group: groups tell services in reverse order,
/// so it hears first, and what runs last (the final replication flush) knows how much time is left.
public struct ShutdownClockService: Service {
    let server: RateLimitServer

    public init(server: RateLimitServer) {
        self.server = server
    }

    public func run() async throws {
        try? await gracefulShutdown()
        server.noteShutdownBegan()
    }
}

/// Sleeps for `interval` and says whether a periodic service should run again: false once graceful
/// shutdown has begun, which also cuts the sleep short. Loops read `while await nextTick(after: interval)`.
public func nextTick(after interval: Duration) async -> Bool {
    guard !Task.isShuttingDownGracefully else { return false }
    do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
    } catch {
        return false
    }
    return !Task.isShuttingDownGracefully
}
