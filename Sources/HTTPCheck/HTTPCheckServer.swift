import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RateLimitServer
import ServiceLifecycle

/// `GET /check` over HTTP/1.1 on a port of its own, for gateways that ask an HTTP service whether a
/// request may pass (Caddy's `forward_auth`, Traefik's `forwardAuth`, nginx's `auth_request`). On the
/// server's event loops, so its decisions go where the client port's go (shared mode included), with the
/// same connection limits, timeouts and token. Bound before the service group starts, like the other
/// listeners, so a port it cannot have stops start-up before READY.
public final class HTTPCheckServer: Sendable {
    public let channel: any Channel
    let connections: OpenConnections

    private init(channel: any Channel, connections: OpenConnections) {
        self.channel = channel
        self.connections = connections
    }

    public static func bind(
        host: String, port: Int, denyStatus: Int, server: RateLimitServer, logger: Logger
    ) async throws -> HTTPCheckServer {
        let checker = HTTPChecker(server: server, denyStatus: denyStatus)
        let connections = OpenConnections()
        do {
            let channel = try await ServerBootstrap(group: server.eventLoops)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { server.connectionSetup.setUpListener($0, listener: .http) }
                .childChannelInitializer { channel in
                    server.connectionSetup.setUp(channel, listener: .http) { channel in
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(
                            CheckHTTPHandler(checker: checker, eventLoop: channel.eventLoop))
                        connections.register(channel)
                    }
                }
                .bind(host: host, port: port)
                .get()
            let address = channel.localAddress.map(RateLimitServer.describe) ?? "\(host):\(port)"
            logger.info("http checks on http://\(address)/check")
            return HTTPCheckServer(channel: channel, connections: connections)
        } catch {
            throw HTTPCheckServerError(description: "cannot listen for HTTP checks on \(host):\(port): \(error)")
        }
    }
}

/// Serves until graceful shutdown: then stops accepting, lets each connection finish the request it is
/// answering (NIO's HTTP pipeline closes it after that response) and returns once all have closed. It
/// stops before the main server, which shuts the shared event loops down.
public struct HTTPCheckService: Service {
    let server: HTTPCheckServer

    public init(server: HTTPCheckServer) {
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

public struct HTTPCheckServerError: Error, CustomStringConvertible {
    public let description: String
}
