import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The listeners whose connections are counted apart in STATS and /metrics.
public enum Listener: String, CaseIterable, Sendable {
    case client
    case metrics
    case envoy
    /// `GET /check`, for forward-auth gateways.
    case http

    /// The bytes an HTTP/1 request (head and body) may have before its response; past them the connection
    /// is closed. nil on the listeners that bound requests themselves. A `GET /metrics` is a few hundred
    /// bytes; a forward-auth check carries every header of the client's request, cookies included, which
    /// nginx alone lets reach 32 KiB by default.
    var maxRequestBytes: Int? {
        switch self {
        case .metrics: 16_384
        case .http: 65_536
        case .client, .envoy: nil
        }
    }
}

/// Sets up every accepted connection, on every listener, the same way: admission first (at most
/// `maxConnections` open over all listeners; one more is refused, see `RefusedConnection`), socket options,
/// then the listener's handlers. A step that fails (a socket option the kernel refuses to this user, a
/// handler that cannot be added) closes the connection, as NIO would, but is also counted and logged:
/// silently reset clients once hid a socket option that only root could set.
public final class ConnectionSetup: Sendable {
    private let failures = ListenerCounts()
    private let refusals = ListenerCounts()
    private let open = ManagedAtomic(0)
    /// Times accepting paused because the process or system ran out of descriptors (or memory for them).
    private let acceptPauseCount = ManagedAtomic(0)
    public let timeoutCounts = TimeoutCounts()
    /// Client connections that never completed a TLS handshake (plaintext, a failed handshake).
    let tlsFailureCount = ManagedAtomic(0)
    public var tlsFailures: Int { tlsFailureCount.load(ordering: .relaxed) }
    public let maxConnections: Int
    public let timeouts: ConnectionTimeouts
    /// The input all client connections may hold unparsed together.
    public let inputBudget: InputBudget
    private let logThrottle: LogThrottle
    private let logger: Logger

    init(
        logger: Logger, now: @escaping @Sendable () -> Int64,
        maxConnections: Int = ServerConfiguration.defaultMaxConnections, timeouts: ConnectionTimeouts = .never,
        maxInputBuffer: Int = ServerConfiguration.defaultMaxInputBuffer
    ) {
        self.inputBudget = InputBudget(limit: maxInputBuffer)
        self.maxConnections = maxConnections
        self.timeouts = timeouts
        self.logger = logger
        self.logThrottle = LogThrottle(now: now)
    }

    /// Connections of `listener` refused for `maxConnections`, since start.
    public func refusals(on listener: Listener) -> Int {
        refusals.count(on: listener)
    }

    public var totalRefusals: Int {
        refusals.total
    }

    public var acceptPauses: Int { acceptPauseCount.load(ordering: .relaxed) }

    /// Connections of `listener` that were accepted but could not be set up, since start.
    public func failures(on listener: Listener) -> Int {
        failures.count(on: listener)
    }

    /// All such connections, over every listener.
    public var totalFailures: Int {
        failures.total
    }

    /// Sets up `channel`, accepted on `listener`: TCP_NODELAY (at the TCP level: the SOL_SOCKET option of
    /// the same number is SO_DEBUG, which only CAP_NET_ADMIN may set), then `configure`. Call from a
    /// child channel initializer; on failure the connection is closed and the failure recorded.
    public func setUp(
        _ channel: any Channel, listener: Listener, configure: (any Channel) throws -> Void
    ) -> EventLoopFuture<Void> {
        // Taken before the check, so two loops accepting at once cannot both take the last place.
        guard open.loadThenWrappingIncrement(ordering: .relaxed) < maxConnections else {
            open.wrappingDecrement(ordering: .relaxed)
            refusals.add(on: listener)
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RefusedConnection(listener: listener))
            }
        }
        channel.closeFuture.whenComplete { [open] _ in open.wrappingDecrement(ordering: .relaxed) }
        do {
            // A unix socket has no Nagle to turn off, and refuses the option.
            if let options = channel.syncOptions, channel.localAddress?.protocol != .unix {
                try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
            }
            if listener != .client,
                let timeouts = TimeoutClose(
                    timeouts, maxRequestBytes: listener.maxRequestBytes, counts: timeoutCounts, inputBudget: inputBudget)
            {
                try channel.pipeline.syncOperations.addHandler(timeouts)
            }
            try configure(channel)
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            record(error, listener: listener, peer: channel.remoteAddress)
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Counts a connection that could not be set up and logs it, at most once per `LogThrottle.interval`.
    func record(_ error: any Error, listener: Listener, peer: SocketAddress?) {
        failures.add(on: listener)
        logThrottle.log(logger, .error, "could not set up a connection; closed it", listener: listener, peer: peer, ["cause": "\(error)"])
    }

    /// Sets up a listening channel: accepting pauses (200 ms at a time) while the process or the system is
    /// out of descriptors, instead of spinning on `accept`, logged once when it starts and once when a
    /// connection is accepted again. Call from a server channel initializer.
    public func setUpListener(_ channel: any Channel, listener: Listener) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                AcceptPause(listener: listener, logger: logger, pauses: acceptPauseCount))
        }
    }

}

/// A count per listener, read one by one or in total.
struct ListenerCounts: Sendable {
    private let counts = Listener.allCases.map { _ in ManagedAtomic(0) }

    func add(on listener: Listener) {
        counts[Self.index(listener)].wrappingIncrement(ordering: .relaxed)
    }

    func count(on listener: Listener) -> Int {
        counts[Self.index(listener)].load(ordering: .relaxed)
    }

    var total: Int { counts.reduce(0) { $0 + $1.load(ordering: .relaxed) } }

    private static func index(_ listener: Listener) -> Int {
        Listener.allCases.firstIndex(of: listener)!
    }
}

/// Pauses accepting for 200 ms when `accept` fails for want of descriptors (see
/// `ConnectionSetup.setUpListener`), logs the pause when it starts and when a connection is accepted again,
/// and counts it. By turning `autoRead` off and on: NIO's `AcceptBackoffHandler` never gets to act here,
/// because a listening channel whose `accept` failed keeps its read pending and stays registered, so epoll
/// wakes it again at once (measured: 5,000 failed `accept4` calls a second, a core at 100 %).
final class AcceptPause: ChannelInboundHandler {
    typealias InboundIn = any Channel

    static let pausing: Set<Int32> = [EMFILE, ENFILE, ENOBUFS, ENOMEM]
    static let pause = TimeAmount.milliseconds(200)

    private let listener: Listener
    private let logger: Logger
    private let pauses: ManagedAtomic<Int>
    private var pausedSince: NIODeadline?
    private var resumeScheduled = false

    init(listener: Listener, logger: Logger, pauses: ManagedAtomic<Int>) {
        self.listener = listener
        self.logger = logger
        self.pauses = pauses
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let since = pausedSince {
            pausedSince = nil
            logger.notice(
                "accepting connections again",
                metadata: ["listener": "\(listener.rawValue)", "paused_ms": "\((NIODeadline.now() - since).nanoseconds / 1_000_000)"])
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, Self.pausing.contains(error.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        if pausedSince == nil {
            pausedSince = .now()
            pauses.wrappingIncrement(ordering: .relaxed)
            logger.warning(
                "cannot accept connections: out of descriptors; trying again every 200ms",
                metadata: ["listener": "\(listener.rawValue)", "cause": "\(error)"])
        }
        guard !resumeScheduled, let options = context.channel.syncOptions else { return }
        resumeScheduled = true
        try? options.setOption(.autoRead, value: false)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let channel = context.channel
        context.eventLoop.scheduleTask(in: Self.pause) {
            handler.value.resumeScheduled = false
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}

/// A connection over `max_connections`: told so, in its own protocol where it can be known, and closed. A
/// client connection's first byte says which (`*` is RESP, as Redis clients send it; anything else the line
/// protocol); one that says nothing within a second is closed without a word. The HTTP listeners answer
/// 503; the gRPC listener closes at once (an HTTP/2 client takes a closed connection as unavailable).
final class RefusedConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let message = "too many connections"
    let listener: Listener
    private var answered = false

    init(listener: Listener) {
        self.listener = listener
    }

    func channelActive(context: ChannelHandlerContext) {
        switch listener {
        case .envoy:
            context.close(promise: nil)
        case .metrics, .http:
            let body = "busy: \(Self.message)\n"
            answer("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)", context)
        case .client:
            let channel = context.channel
            context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        let first = unwrapInboundIn(data).readableBytesView.first
        answer(first == UInt8(ascii: "*") ? "-ERR busy \(Self.message)\r\n" : "ERR busy \(Self.message)\n", context)
    }

    private func answer(_ text: String, _ context: ChannelHandlerContext) {
        answered = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: text))).whenComplete { _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
