/// The units of envoyproxy/ratelimit's `rate_limit.unit`, with the numbers Envoy's
/// `RateLimitResponse.RateLimit.Unit` gives them on the wire. Windows are fixed lengths aligned to the Unix
/// epoch, as there: a month is 30 days and a year 365.
public enum EnvoyUnit: String, CaseIterable, Sendable, Hashable {
    case second, minute, hour, day, week, month, year

    /// Accepts any letter case, as envoyproxy/ratelimit does.
    public init?(name: String) {
        self.init(rawValue: name.lowercased())
    }

    /// The enum number in `envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit` (and, but for
    /// `week`, in `envoy.type.v3.RateLimitUnit`).
    public var wireValue: Int {
        switch self {
        case .second: 1
        case .minute: 2
        case .hour: 3
        case .day: 4
        case .month: 5
        case .year: 6
        case .week: 7
        }
    }

    /// The unit with wire number `value` in `envoy.type.v3.RateLimitUnit` (a descriptor's `limit` override),
    /// which has no week; nil for `UNKNOWN` (0) and numbers it does not define.
    public init?(overrideValue value: Int) {
        guard let unit = Self.allCases.first(where: { $0.wireValue == value }), unit != .week else { return nil }
        self = unit
    }

    public var seconds: Int64 {
        switch self {
        case .second: 1
        case .minute: 60
        case .hour: 3_600
        case .day: 86_400
        case .week: 604_800
        case .month: 2_592_000
        case .year: 31_536_000
        }
    }

    public var windowNanos: Int64 { seconds * 1_000_000_000 }
}
