import EnvoyRateLimitAPI
import Logging
import NIOCore
import NIOHTTP2
import NIOPosix
import RateLimitServer
import ServiceLifecycle

/// Envoy's gRPC rate limit service on a port of its own, HTTP/2 cleartext (what an `envoy_grpc` cluster
/// with `http2_protocol_options` speaks), on the server's own event loops. Bound before the service group
/// starts, like the metrics port, so a port it cannot have stops start-up before READY.
public final class EnvoyServer: Sendable {
    /// Streams one HTTP/2 connection may have open at once: Envoy multiplexes every request of a worker over
    /// few connections (and opens another when one is full), so this bounds what one connection can ask of
    /// the daemon at a time, and the partial requests it can make the daemon hold (128 × 64 KiB).
    public static let maxConcurrentStreams = 128
    /// A `ShouldRateLimit` request is a few hundred bytes; anything near this is not one.
    public static let maxRequestBytes = 64 * 1024

    public let channel: any Channel
    let connections: OpenConnections
    let logger: Logger

    private init(channel: any Channel, connections: OpenConnections, logger: Logger) {
        self.channel = channel
        self.connections = connections
        self.logger = logger
    }

    public static func bind(
        host: String, port: Int, rules: EnvoyRulesBox, server: RateLimitServer, logger: Logger
    ) async throws -> EnvoyServer {
        let decider = EnvoyDecider(rules: rules, server: server)
        let connections = OpenConnections()
        do {
            let channel = try await ServerBootstrap(group: server.eventLoops)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { server.connectionSetup.setUpListener($0, listener: .envoy) }
                .childChannelInitializer { channel in
                    server.connectionSetup.setUp(channel, listener: .envoy) { channel in
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
                        let http2 = NIOHTTP2Handler(
                            mode: .server, frameDelegate: calls, connectionConfiguration: http2Configuration)
                        try channel.pipeline.syncOperations.addHandlers([http2, calls])
                        connections.register(channel)
                    }
                }
                .bind(host: host, port: port)
                .get()
            let address = channel.localAddress.map(RateLimitServer.describe) ?? "\(host):\(port)"
            logger.info("envoy rate limit service (gRPC) on \(address)")
            return EnvoyServer(channel: channel, connections: connections, logger: logger)
        } catch {
            throw EnvoyServerError(description: "cannot listen for Envoy (gRPC) on \(host):\(port): \(error)")
        }
    }
}

/// Serves until graceful shutdown: then stops accepting, tells every connection to finish (GOAWAY), lets
/// the calls in flight be answered and returns once all have closed. It stops before the main server,
/// which shuts the shared event loops down.
public struct EnvoyService: Service {
    let server: EnvoyServer

    public init(server: EnvoyServer) {
        self.server = server
    }

    public func run() async throws {
        let channel = server.channel
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            channel.close(promise: nil)
        }
        await server.connections.quiesce()
    }
}

public struct EnvoyServerError: Error, CustomStringConvertible {
    public let description: String
}
