import NIOConcurrencyHelpers

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
    func admit() -> Int? {
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
}
