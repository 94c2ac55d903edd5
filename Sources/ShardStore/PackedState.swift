import RateLimiting

/// A key's algorithm state in two words, so that a table entry stays small: a bucket is one timestamp, a
/// fixed window a start and a count, a sliding counter a start and two counts of at most 10^9 (30 bits)
/// each. A sliding log cannot fit; its entries live in the table's side storage and the state holds their
/// index.
struct PackedState {
    enum Kind: UInt8 {
        case bucket = 1, fixedWindow, slidingCounter, slidingLog
    }

    var kind: Kind
    var first: Int64
    var second: Int64

    init(kind: Kind, first: Int64, second: Int64 = 0) {
        self.kind = kind
        self.first = first
        self.second = second
    }

    /// Packs every state but a log's (which the table stores aside).
    init?(_ state: KeyState) {
        switch state {
        case .bucket(let bucket):
            self.init(kind: .bucket, first: bucket.theoreticalArrival)
        case .fixedWindow(let window):
            self.init(kind: .fixedWindow, first: window.windowStart, second: window.used)
        case .slidingCounter(let counter):
            self.init(kind: .slidingCounter, first: counter.windowStart,
                      second: counter.previous << 32 | counter.current)
        case .slidingLog:
            return nil
        }
    }

    /// The state, for every kind but a log's.
    var unpacked: KeyState? {
        switch kind {
        case .bucket: .bucket(BucketState(theoreticalArrival: first))
        case .fixedWindow: .fixedWindow(FixedWindowState(windowStart: first, used: second))
        case .slidingCounter:
            .slidingCounter(SlidingCounterState(windowStart: first, previous: second >> 32, current: second & 0xFFFF_FFFF))
        case .slidingLog: nil
        }
    }
}
