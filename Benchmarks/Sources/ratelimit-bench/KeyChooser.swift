#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Picks the key of each request: uniform over `count` keys, or Zipf-distributed (a few hot keys, a long
/// tail), using YCSB's Zipfian generator (Gray et al., "Quickly generating billion-record synthetic
/// databases"), so results are comparable with other key-value benchmarks.
struct KeyChooser: Sendable {
    enum Distribution: String, CaseIterable {
        case uniform, zipf
    }

    private let count: Int
    private let distribution: Distribution
    private var random: SplitMix64
    // Zipf constants (theta = 0.99, YCSB's default).
    private let theta = 0.99
    private let alpha: Double
    private let zetaN: Double
    private let eta: Double

    init(count: Int, distribution: Distribution, seed: UInt64) {
        self.count = count
        self.distribution = distribution
        self.random = SplitMix64(seed: seed)
        var zeta = 0.0
        if distribution == .zipf {
            for index in 1...count { zeta += 1 / pow(Double(index), 0.99) }
        }
        let zeta2 = 1 + 1 / pow(2, 0.99)
        self.zetaN = zeta
        self.alpha = 1 / (1 - 0.99)
        self.eta = (1 - pow(2 / Double(count), 1 - 0.99)) / (1 - zeta2 / max(zeta, 1))
    }

    mutating func next() -> Int {
        switch distribution {
        case .uniform:
            return Int(random.next() % UInt64(count))
        case .zipf:
            let u = Double(random.next() >> 11) / Double(1 << 53)
            let uz = u * zetaN
            if uz < 1 { return 0 }
            if uz < 1 + pow(0.5, theta) { return min(1, count - 1) }
            return min(count - 1, Int(Double(count) * pow(eta * u - eta + 1, alpha)))
        }
    }
}

/// A small, fast, deterministic generator.
struct SplitMix64: Sendable {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
