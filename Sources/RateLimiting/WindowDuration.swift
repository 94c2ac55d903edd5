/// Durations as users write them: a positive integer and a unit, `ms`, `s`, `m`, `h` or `d` (`250ms`, `15m`).
public enum WindowDuration {
    private static let units: [(suffix: String, nanos: Int64)] = [
        ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ]

    /// Parses a duration; nil for anything else (no unit, unknown unit, zero, sign, overflow). Takes raw
    /// bytes, not a generic collection, because it runs on the request path of `CHECK … <limit>/<window>`
    /// and a generic call across modules is not specialised.
    public static func parseNanos(_ text: UnsafeRawBufferPointer) -> Int64? {
        var value: Int64 = 0
        var index = 0
        // 15 digits cannot overflow; no accepted window needs more than 12.
        while index < text.count, index < 15, let digit = asciiDigit(text[index]) {
            value = value * 10 + Int64(digit)
            index += 1
        }
        guard index > 0, value > 0, index < text.count else { return nil }
        let unitLength = text.count - index
        guard unitLength <= 2 else { return nil }
        let first = text[index]
        let second: UInt8 = unitLength == 2 ? text[index + 1] : 0
        let nanos: Int64
        switch (first, second) {
        case (UInt8(ascii: "m"), UInt8(ascii: "s")): nanos = 1_000_000
        case (UInt8(ascii: "s"), 0): nanos = 1_000_000_000
        case (UInt8(ascii: "m"), 0): nanos = 60_000_000_000
        case (UInt8(ascii: "h"), 0): nanos = 3_600_000_000_000
        case (UInt8(ascii: "d"), 0): nanos = 86_400_000_000_000
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: nanos)
        return overflow ? nil : product
    }

    public static func parseNanos(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parseNanos(UnsafeRawBufferPointer($0)) }
    }

    /// A duration setting (an interval or a timeout): the same form as a window, and the same 1ms to 365d
    /// range, for the configuration file and the command line alike.
    public static func parseSetting(_ text: String) -> Int64? {
        guard let nanos = parseNanos(text), nanos <= Limit.maxWindowNanos else { return nil }
        return nanos
    }

    /// The shortest exact form: `60_000_000_000` is `1m`, `1_500_000_000` is `1500ms`.
    public static func format(_ nanos: Int64) -> String {
        for unit in units.reversed() where nanos % unit.nanos == 0 {
            return "\(nanos / unit.nanos)\(unit.suffix)"
        }
        return "\(nanos)ns"
    }

    @inline(__always)
    static func asciiDigit(_ byte: UInt8) -> UInt8? {
        byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : nil
    }
}
