/// How much a key may spend: `limit` units per `window`, by one algorithm, with a `burst` capacity for the
/// bucket algorithms. Every `Limit` that exists has passed validation, so the algorithms never see values
/// that could overflow or divide by zero.
public struct Limit: Sendable, Hashable {
    public let algorithm: Algorithm
    /// Units per window (the rate for the buckets, the count for the windows).
    public let limit: Int64
    /// The window in nanoseconds.
    public let windowNanos: Int64
    /// The most a bucket admits at once; equal to `limit` for the window algorithms.
    public let burst: Int64

    public static let maxLimit: Int64 = 1_000_000_000
    /// The log keeps one entry per admission, so its memory per key grows with the limit.
    public static let maxSlidingLogLimit: Int64 = 10_000
    public static let minWindowNanos: Int64 = 1_000_000
    public static let maxWindowNanos: Int64 = 365 * 86_400 * 1_000_000_000
    /// A bucket that takes longer than this to refill from empty is almost certainly a typo.
    public static let maxRefillNanos: Int64 = 100 * 365 * 86_400 * 1_000_000_000

    /// Validates and builds a limit; `burst` nil takes the algorithm's default.
    public init(algorithm: Algorithm, limit: Int64, windowNanos: Int64, burst: Int64? = nil) throws(LimitError) {
        guard limit >= 1, limit <= Limit.maxLimit else {
            throw LimitError(.limit, "must be an integer from 1 to \(Limit.maxLimit), got \(limit)")
        }
        guard windowNanos >= Limit.minWindowNanos, windowNanos <= Limit.maxWindowNanos else {
            throw LimitError(.window, "must be from 1ms to 365d")
        }
        if algorithm == .slidingWindowLog, limit > Limit.maxSlidingLogLimit {
            throw LimitError(
                .limit,
                "sliding_window_log keeps one entry per admitted request, so its limit is at most "
                    + "\(Limit.maxSlidingLogLimit) (got \(limit)); use sliding_window_counter for larger limits"
            )
        }
        let resolvedBurst: Int64
        if let burst {
            guard algorithm.usesBurst else {
                throw LimitError(.burst, "applies only to token_bucket and leaky_bucket, not \(algorithm.rawValue)")
            }
            guard burst >= 1, burst <= Limit.maxLimit else {
                throw LimitError(.burst, "must be an integer from 1 to \(Limit.maxLimit), got \(burst)")
            }
            resolvedBurst = burst
        } else {
            resolvedBurst = algorithm.defaultBurst(limit: limit)
        }
        if algorithm.usesBurst, Int128(resolvedBurst) * Int128(windowNanos) / Int128(limit) > Int128(Limit.maxRefillNanos) {
            throw LimitError(.burst, "a bucket of \(resolvedBurst) at \(limit) per window would take over 100 years to refill")
        }
        self.algorithm = algorithm
        self.limit = limit
        self.windowNanos = windowNanos
        self.burst = resolvedBurst
    }

    /// The largest cost this limit can ever admit; a larger one is denied with reset `-1`.
    public var capacity: Int64 { algorithm.usesBurst ? burst : limit }
}

extension Limit: CustomStringConvertible {
    /// `100/1m token_bucket burst=100`: the form logs and `--check-config` print.
    public var description: String {
        let base = "\(limit)/\(WindowDuration.format(windowNanos)) \(algorithm.rawValue)"
        return algorithm.usesBurst ? base + " burst=\(burst)" : base
    }
}

/// Why a limit was refused, naming the field at fault so that both the config loader and the protocol can
/// say where the problem is.
public struct LimitError: Error, Sendable, Hashable {
    public enum Field: String, Sendable {
        case limit, window, burst, algorithm
    }

    public let field: Field
    public let message: String

    public init(_ field: Field, _ message: String) {
        self.field = field
        self.message = message
    }
}
