import Logging
import RateLimitServer
import RedisReplication

/// Restores the Redis copy before the server listens. If Redis cannot be reached the daemon still starts,
/// from its snapshot alone, and says so loudly: refusing to start would turn a Redis outage into a rate
/// limiter outage. The replicator keeps trying and writes this daemon's state once Redis is back.
enum RedisStartup {
    static func restore(
        settings: Replicator.Settings, feed: ReplicationFeed, snapshotSavedAt: Int64?, logger: Logger
    ) {
        let started = feed.clock.nanosecondsNow()
        do {
            let connection = try RedisConnection.connect(to: settings.endpoint, timeoutMillis: settings.timeoutMillis)
            let outcome = try RedisRestore.restore(
                from: connection, keyPrefix: settings.keyPrefix, into: feed, snapshotSavedAt: snapshotSavedAt,
                logger: logger)
            logger.info(
                "restored from Redis",
                metadata: [
                    "redis": "\(settings.endpoint)", "keys": "\(outcome.restored)",
                    "older_than_snapshot": "\(outcome.olderThanSnapshot)", "invalid": "\(outcome.invalid)",
                    "ms": "\((feed.clock.nanosecondsNow() - started) / 1_000_000)",
                ])
        } catch {
            logger.error(
                "cannot restore from Redis; starting from the local snapshot alone (keys only Redis held start with full quota)",
                metadata: ["redis": "\(settings.endpoint)", "error": "\(error)"])
        }
    }
}
