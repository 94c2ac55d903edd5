import Histogram
import Synchronization

/// Counters every connection adds to as it goes, read by the progress line.
final class LiveCounters: Sendable {
    let replies = Atomic<Int>(0)
    /// Set once the warm-up is over; replies before it are not recorded.
    let recording = Atomic<Bool>(false)
    /// Set at the deadline; connections stop sending and close once their pipeline drains.
    let stopping = Atomic<Bool>(false)
}

/// What one connection measured: reply counts by kind and a latency histogram in nanoseconds.
struct ConnectionResult: Sendable {
    var allowed = 0
    var denied = 0
    var errors = 0
    var other = 0
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)

    var total: Int { allowed + denied + errors + other }

    mutating func merge(_ other: ConnectionResult) {
        allowed += other.allowed
        denied += other.denied
        errors += other.errors
        self.other += other.other
        latency.add(other.latency)
    }
}
