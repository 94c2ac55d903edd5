import Atomics
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The listeners whose connections are counted apart in STATS and /metrics.
public enum Listener: String, CaseIterable, Sendable {
    case client
    case metrics
    case envoy
}

/// Sets up every accepted connection, on every listener, the same way: socket options first, then the
/// listener's handlers. A step that fails (a socket option the kernel refuses to this user, a handler that
/// cannot be added) closes the connection, as NIO would, but is also counted and logged: silently reset
/// clients once hid a socket option that only root could set.
public final class ConnectionSetup: Sendable {
    /// One log line per this many nanoseconds at most; the next line says how many were not logged.
    static let logInterval: Int64 = 10_000_000_000

    private let failures: [ManagedAtomic<Int>]
    private let logState = NIOLockedValueBox(LogState())
    private let logger: Logger
    private let now: @Sendable () -> Int64

    private struct LogState {
        var lastLoggedAt: Int64?
        var suppressed = 0
    }

    init(logger: Logger, now: @escaping @Sendable () -> Int64) {
        self.failures = Listener.allCases.map { _ in ManagedAtomic(0) }
        self.logger = logger
        self.now = now
    }

    /// Connections of `listener` that were accepted but could not be set up, since start.
    public func failures(on listener: Listener) -> Int {
        failures[Self.index(listener)].load(ordering: .relaxed)
    }

    /// All such connections, over every listener.
    public var totalFailures: Int {
        Listener.allCases.reduce(0) { $0 + failures(on: $1) }
    }

    /// Sets up `channel`, accepted on `listener`: TCP_NODELAY (at the TCP level: the SOL_SOCKET option of
    /// the same number is SO_DEBUG, which only CAP_NET_ADMIN may set), then `configure`. Call from a
    /// child channel initializer; on failure the connection is closed and the failure recorded.
    public func setUp(
        _ channel: any Channel, listener: Listener, configure: (any Channel) throws -> Void
    ) -> EventLoopFuture<Void> {
        do {
            if let options = channel.syncOptions {
                try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
            }
            try configure(channel)
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            record(error, listener: listener, peer: channel.remoteAddress)
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// Counts a connection that could not be set up and logs it, at most once per `logInterval`.
    func record(_ error: any Error, listener: Listener, peer: SocketAddress?) {
        failures[Self.index(listener)].wrappingIncrement(ordering: .relaxed)
        let time = now()
        let suppressed: Int? = logState.withLockedValue { state in
            // A clock that stepped back logs at once rather than staying quiet until it catches up.
            if let last = state.lastLoggedAt, time >= last, time - last < Self.logInterval {
                state.suppressed += 1
                return nil
            }
            defer { state.suppressed = 0 }
            state.lastLoggedAt = time
            return state.suppressed
        }
        guard let suppressed else { return }
        var metadata: Logger.Metadata = ["listener": "\(listener.rawValue)", "cause": "\(error)"]
        if let peer { metadata["peer"] = "\(RateLimitServer.describe(peer))" }
        if suppressed > 0 { metadata["not_logged"] = "\(suppressed)" }
        logger.error("could not set up a connection; closed it", metadata: metadata)
    }

    private static func index(_ listener: Listener) -> Int {
        Listener.allCases.firstIndex(of: listener)!
    }
}
