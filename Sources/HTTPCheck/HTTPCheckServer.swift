import Logging
import NIOCore
import NIOHTTP1
import RateLimitServer

/// `GET /check` over HTTP/1.1 on a port of its own, for gateways that ask an HTTP service whether a
/// request may pass (Caddy's `forward_auth`, Traefik's `forwardAuth`, nginx's `auth_request`). A side
/// listener of the server, so its decisions go where the client port's go (shared mode included), with the
/// same connection limits, timeouts and token; NIO's HTTP pipeline finishes the request being answered
/// before a shutdown closes the connection.
public enum HTTPCheckServer {
    public static func bind(
        host: String, port: Int, denyStatus: Int, server: RateLimitServer, logger: Logger
    ) async throws -> SideListener {
        let checker = HTTPChecker(server: server, denyStatus: denyStatus)
        return try await SideListener.bind(
            .http, name: "HTTP checks", host: host, port: port, server: server, logger: logger,
            announce: { "http checks on http://\($0)/check" }
        ) { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(CheckHTTPHandler(checker: checker, eventLoop: channel.eventLoop))
        }
    }
}
