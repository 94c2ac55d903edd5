import ServiceLifecycle

/// Sleeps for `interval` and says whether a periodic service should run again: false once graceful
/// shutdown has begun, which also cuts the sleep short. Loops read `while await nextTick(after: interval)`.
/// In a module of its own because the server's services and the Redis replicator both tick, and neither
/// module depends on the other.
public func nextTick(after interval: Duration) async -> Bool {
    guard !Task.isShuttingDownGracefully else { return false }
    do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
    } catch {
        return false
    }
    return !Task.isShuttingDownGracefully
}
