/// The five rate-limiting algorithms, named as they appear in the configuration file and in requests.
public enum Algorithm: String, CaseIterable, Sendable, Hashable {
    case tokenBucket = "token_bucket"
    case leakyBucket = "leaky_bucket"
    case fixedWindow = "fixed_window"
    case slidingWindowLog = "sliding_window_log"
    case slidingWindowCounter = "sliding_window_counter"

    /// The names users may write, for error messages.
    public static let namesList: String = allCases.map(\.rawValue).joined(separator: ", ")

    /// The burst a limit gets when none is given: a token bucket holds a whole window's worth, while a leaky
    /// bucket's point is to smooth, so by default it admits one unit at a time.
    public func defaultBurst(limit: Int64) -> Int64 {
        switch self {
        case .tokenBucket: limit
        case .leakyBucket: 1
        case .fixedWindow, .slidingWindowLog, .slidingWindowCounter: limit
        }
    }

    /// Whether `burst` means anything to this algorithm; the window-based ones count `limit` per window only.
    public var usesBurst: Bool {
        self == .tokenBucket || self == .leakyBucket
    }
}
