import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// A listener beside the client port that decides through the server (Envoy's gRPC service, the HTTP
/// checks): on the server's event loops, with its connections admitted and timed by `ConnectionSetup`,
/// and bound before the service group starts, so a port it cannot have stops start-up before READY.
public final class SideListener: Sendable {
    public let channel: any Channel
    let connections: OpenConnections

    private init(channel: any Channel, connections: OpenConnections) {
        self.channel = channel
        self.connections = connections
    }

    /// Binds `host:port` for `listener`; `configure` adds the connection's own handlers. `name` says what
    /// is served in the error of a port it cannot have; `announce` makes the log line from the address bound.
    public static func bind(
        _ listener: Listener, name: String, host: String, port: Int, server: RateLimitServer, logger: Logger,
        announce: (String) -> String, configure: @escaping @Sendable (any Channel) throws -> Void
    ) async throws -> SideListener {
        let connections = OpenConnections()
        do {
            let channel = try await ServerBootstrap(group: server.eventLoops)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { server.connectionSetup.setUpListener($0, listener: listener) }
                .childChannelInitializer { channel in
                    server.connectionSetup.setUp(channel, listener: listener) { channel in
                        try configure(channel)
                        connections.register(channel)
                    }
                }
                .bind(host: host, port: port)
                .get()
            logger.info("\(announce(channel.localAddress.map(RateLimitServer.describe) ?? "\(host):\(port)"))")
            return SideListener(channel: channel, connections: connections)
        } catch {
            throw SideListenerError(description: "cannot listen for \(name) on \(host):\(port): \(error)")
        }
    }
}

/// Serves a side listener until graceful shutdown: then stops accepting, asks every connection to finish
/// (`ChannelShouldQuiesceEvent`: answer what it owes, then close) and returns once all have closed. It
/// stops before the main server, which shuts the shared event loops down.
public struct SideListenerService: Service {
    let listener: SideListener

    public init(_ listener: SideListener) {
        self.listener = listener
    }

    public func run() async throws {
        let channel = listener.channel
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            channel.close(promise: nil)
        }
        await listener.connections.quiesce()
    }
}

public struct SideListenerError: Error, CustomStringConvertible {
    public let description: String
}
