import EnvoyRateLimitAPI
import Logging
import NIOCore
import NIOHTTP2
import RateLimitServer

/// Envoy's gRPC rate limit service on a port of its own, HTTP/2 cleartext (what an `envoy_grpc` cluster
/// with `http2_protocol_options` speaks): a side listener of the server. On shutdown each connection gets a
/// GOAWAY and its calls in flight are answered before it closes.
public enum EnvoyServer {
    /// Streams one HTTP/2 connection may have open at once: Envoy multiplexes every request of a worker over
    /// few connections (and opens another when one is full), so this bounds what one connection can ask of
    /// the daemon at a time, and the partial requests it can make the daemon hold (128 × 64 KiB).
    public static let maxConcurrentStreams = 128
    /// A `ShouldRateLimit` request is a few hundred bytes; anything near this is not one.
    public static let maxRequestBytes = 64 * 1024

    public static func bind(
        host: String, port: Int, rules: EnvoyRulesBox, server: RateLimitServer, logger: Logger
    ) async throws -> SideListener {
        let decider = EnvoyDecider(rules: rules, server: server)
        return try await SideListener.bind(
            .envoy, name: "Envoy (gRPC)", host: host, port: port, server: server, logger: logger,
            announce: { "envoy rate limit service (gRPC) on \($0)" }
        ) { channel in
            let calls = GRPCConnectionHandler(
                maxMessageBytes: maxRequestBytes, logger: logger, auth: server.auth,
                inputBudget: server.connectionSetup.inputBudget
            ) {
                method, message, later throws(GRPCStatus) in
                switch method {
                case .shouldRateLimit: try decider.answer(message, later: later)
                case .healthCheck: try HealthCheck.answer(message)
                }
            }
            var http2Configuration = NIOHTTP2Handler.ConnectionConfiguration()
            http2Configuration.initialSettings = calls.initialSettings(maxConcurrentStreams: maxConcurrentStreams)
            let http2 = NIOHTTP2Handler(mode: .server, frameDelegate: calls, connectionConfiguration: http2Configuration)
            try channel.pipeline.syncOperations.addHandlers([http2, calls])
        }
    }
}
