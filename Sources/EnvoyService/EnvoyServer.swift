import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import NIOPosix
import RateLimitServer
import ServiceLifecycle

/// Envoy's gRPC rate limit service on a port of its own, HTTP/2 cleartext (what an `envoy_grpc` cluster
/// with `http2_protocol_options` speaks), on the server's own event loops.
public final class EnvoyServer: Sendable {
    /// Streams one HTTP/2 connection may have open at once: Envoy multiplexes every request of a worker over
    /// few connections, so this bounds what one connection can ask of the daemon at a time.
    public static let maxConcurrentStreams = 1024
    /// A `ShouldRateLimit` request is a few hundred bytes; anything near this is not one.
    public static let maxRequestBytes = 64 * 1024

    let server: GRPCServer<HTTP2ServerTransport.Posix>
    let logger: Logger
    let requested: String

    public init(host: String, port: Int, rules: EnvoyRulesBox, server: RateLimitServer, logger: Logger) {
        let setup = server.connectionSetup
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: host, port: port), transportSecurity: .plaintext,
            config: .defaults { config in
                config.http2.maxConcurrentStreams = Self.maxConcurrentStreams
                config.rpc.maxRequestPayloadSize = Self.maxRequestBytes
                // As every listener's connections: TCP_NODELAY (grpc-swift sets none, and Nagle's algorithm
                // against delayed ACKs held each reply ~40 ms), failures counted and logged.
                config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
                    setup.setUp(channel, listener: .envoy) { _ in }
                }
            },
            eventLoopGroup: server.eventLoops)
        self.server = GRPCServer(
            transport: transport, services: [EnvoyRateLimitService(decider: EnvoyDecider(rules: rules, server: server))])
        self.logger = logger
        self.requested = "\(host):\(port)"
    }

    /// The bound address (`HOST:PORT`), once listening; throws if binding failed.
    public func listeningAddress() async throws -> String {
        let address = try await server.listeningAddress
        if let ipv4 = address?.ipv4 { return "\(ipv4.host):\(ipv4.port)" }
        if let ipv6 = address?.ipv6 { return "[\(ipv6.host)]:\(ipv6.port)" }
        return requested
    }

    /// Serves until graceful shutdown: then stops accepting, lets the calls in flight finish and returns.
    public func run() async throws {
        try await withTaskCancellationOrGracefulShutdownHandler {
            try await server.serve()
        } onCancelOrGracefulShutdown: { [server] in
            server.beginGracefulShutdown()
        }
    }
}

/// The Envoy server as a service of the daemon's group; logs where it listens once bound.
public struct EnvoyService: Service {
    let server: EnvoyServer

    public init(server: EnvoyServer) {
        self.server = server
    }

    public func run() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            group.addTask {
                let address = try await server.listeningAddress()
                server.logger.info("envoy rate limit service (gRPC) on \(address)")
            }
            try await group.waitForAll()
        }
    }
}
