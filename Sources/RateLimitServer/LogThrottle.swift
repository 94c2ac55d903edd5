import Logging
import NIOConcurrencyHelpers
import NIOCore

/// At most one log line per `interval` for an event a client can cause at will (a failed setup, a wrong
/// token), so a flood of them cannot flood the journal; the next line says how many were not logged.
final class LogThrottle: Sendable {
    static let interval: Int64 = 10_000_000_000

    private struct State {
        var lastLoggedAt: Int64?
        var suppressed = 0
    }

    private let state = NIOLockedValueBox(State())
    private let now: @Sendable () -> Int64

    init(now: @escaping @Sendable () -> Int64) {
        self.now = now
    }

    /// nil: do not log this one. Otherwise log it, saying how many were left out since the last line.
    private func admit() -> Int? {
        let time = now()
        return state.withLockedValue { state in
            // A clock that stepped back logs at once rather than staying quiet until it catches up.
            if let last = state.lastLoggedAt, time >= last, time - last < Self.interval {
                state.suppressed += 1
                return nil
            }
            defer { state.suppressed = 0 }
            state.lastLoggedAt = time
            return state.suppressed
        }
    }

    /// Logs `message` about a connection of `listener` unless a line was logged within `interval`, with the
    /// peer and how many lines were left out since the last.
    func log(
        _ logger: Logger, _ level: Logger.Level, _ message: Logger.Message, listener: Listener, peer: SocketAddress?,
        _ metadata: Logger.Metadata
    ) {
        guard let suppressed = admit() else { return }
        var metadata = metadata
        metadata["listener"] = "\(listener.rawValue)"
        if let peer { metadata["peer"] = "\(RateLimitServer.describe(peer))" }
        if suppressed > 0 { metadata["not_logged"] = "\(suppressed)" }
        logger.log(level: level, message, metadata: metadata)
    }
}
