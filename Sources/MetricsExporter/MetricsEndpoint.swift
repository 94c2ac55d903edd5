import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RateLimitServer
import ServiceLifecycle

/// `GET /metrics` over HTTP/1.1, on a port of its own and an event loop of its own, so a scrape never
/// shares a thread with decisions. Bound before the service group starts, so a port it cannot have stops
/// start-up before the daemon reports itself ready.
public final class MetricsEndpoint: Sendable {
    let group: MultiThreadedEventLoopGroup
    public let channel: any Channel

    private init(group: MultiThreadedEventLoopGroup, channel: any Channel) {
        self.group = group
        self.channel = channel
    }

    public static func bind(host: String, port: Int, server: RateLimitServer, logger: Logger) async throws -> MetricsEndpoint {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let publisher = PrometheusPublisher()
        do {
            let channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { server.connectionSetup.setUpListener($0, listener: .metrics) }
                .childChannelInitializer { channel in
                    server.connectionSetup.setUp(channel, listener: .metrics) { channel in
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(
                            MetricsHTTPHandler(render: { publisher.render(server.readMetrics()) }))
                    }
                }
                .bind(host: host, port: port)
                .get()
            let address = channel.localAddress.map { "\($0.ipAddress ?? host):\($0.port ?? port)" } ?? "\(host):\(port)"
            logger.info("metrics on http://\(address)/metrics")
            return MetricsEndpoint(group: group, channel: channel)
        } catch {
            try? await group.shutdownGracefully()
            throw MetricsEndpointError(description: "cannot listen for metrics on \(host):\(port): \(error)")
        }
    }

    func close() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

/// Keeps the metrics endpoint open until the group stops (or is cancelled), then closes it.
public struct MetricsService: Service {
    let endpoint: MetricsEndpoint

    public init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    public func run() async throws {
        let channel = endpoint.channel
        await withTaskCancellationOrGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onCancelOrGracefulShutdown: {
            channel.close(promise: nil)
        }
        await endpoint.close()
    }
}

public struct MetricsEndpointError: Error, CustomStringConvertible {
    public let description: String
}

/// Answers `GET /metrics` (and `HEAD`) with the Prometheus text format; 404 for other paths, 405 for other
/// methods.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: @Sendable () -> [UInt8]
    private var request: HTTPRequestHead?

    init(render: @escaping @Sendable () -> [UInt8]) {
        self.render = render
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let response: PlainHTTPResponse
        if head.method != .GET && head.method != .HEAD {
            response = PlainHTTPResponse(status: .methodNotAllowed, body: Array("only GET /metrics\n".utf8))
        } else if path == "/metrics" {
            response = PlainHTTPResponse(status: .ok, body: render(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        } else {
            response = PlainHTTPResponse(status: .notFound, body: Array("not found; metrics are at /metrics\n".utf8))
        }
        response.write(answering: head, on: context)
    }
}
