#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The time decisions are made at: nanoseconds since the Unix epoch that never go backwards. Injected, so
/// tests can move time by hand and never sleep.
public protocol DecisionClock: Sendable {
    func nanosecondsNow() -> Int64
}

/// Monotonic time anchored to the wall clock once, at start-up: fixed windows line up with the epoch as
/// every daemon sees it, while a wall-clock step (NTP, an operator's `date -s`) cannot move decisions
/// backwards or forwards.
public struct SystemDecisionClock: DecisionClock {
    private let offset: Int64

    public init() {
        offset = SystemDecisionClock.read(CLOCK_REALTIME) - SystemDecisionClock.read(CLOCK_MONOTONIC)
    }

    public func nanosecondsNow() -> Int64 {
        SystemDecisionClock.read(CLOCK_MONOTONIC) &+ offset
    }

    private static func read(_ clock: clockid_t) -> Int64 {
        var spec = timespec()
        clock_gettime(clock, &spec)
        return Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec)
    }
}

/// A clock that moves only when told to; for tests.
public final class ManualDecisionClock: DecisionClock {
    private let nanos: Atomic<Int64>

    public init(nanoseconds: Int64 = 1_700_000_000_000_000_000) {
        nanos = Atomic(nanoseconds)
    }

    public func nanosecondsNow() -> Int64 { nanos.load(ordering: .acquiring) }

    public func advance(byNanoseconds delta: Int64) {
        nanos.add(delta, ordering: .releasing)
    }

}
