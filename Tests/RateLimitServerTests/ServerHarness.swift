import Logging
import NIOCore
import RateLimitServer
import RateLimiting
import ShardStore
import TestSupport

/// Runs an in-process server on a kernel-chosen port for the duration of `body`.
func withServer<T>(
    shards: Int = 4,
    rules: RuleSet = .defaults,
    clock: any DecisionClock = ManualDecisionClock(),
    _ body: (_ port: Int, _ server: RateLimitServer) async throws -> T
) async throws -> T {
    var logger = Logger(label: "test")
    logger.logLevel = .warning
    let configuration = ServerConfiguration(
        host: "127.0.0.1", port: 0, shards: shards, rules: rules, clock: clock)
    let server = RateLimitServer(configuration: configuration, logger: logger)
    let channel = try await server.start()
    do {
        let result = try await body(channel.localAddress!.port!, server)
        try await channel.close()
        try await server.shutdown()
        return result
    } catch {
        try? await channel.close()
        try? await server.shutdown()
        throw error
    }
}

func rule(_ name: String, _ pattern: String, _ algorithm: Algorithm, _ limit: Int64, _ window: String) -> Rule {
    Rule(
        name: name, pattern: try! KeyPattern(parsing: pattern),
        limit: try! Limit(algorithm: algorithm, limit: limit, windowNanos: WindowDuration.parseNanos(window)!))
}
