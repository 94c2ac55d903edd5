/// Durations as users write them: a positive integer and a unit, `ms`, `s`, `m`, `h` or `d` (`250ms`, `15m`).
public enum WindowDuration {
    private static let units: [(suffix: String, nanos: Int64)] = [
        ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ]

    /// Parses a duration; nil for anything else (no unit, unknown unit, zero, sign, overflow).
    public static func parseNanos<Bytes: Collection<UInt8>>(_ text: Bytes) -> Int64? {
        var value: Int64 = 0
        var index = text.startIndex
        var digits = 0
        while index != text.endIndex, let digit = asciiDigit(text[index]) {
            // 19 digits could overflow; no accepted window needs more than 12.
            guard digits < 15 else { return nil }
            value = value * 10 + Int64(digit)
            digits += 1
            index = text.index(after: index)
        }
        guard digits > 0, value > 0 else { return nil }
        let suffix = text[index...]
        for unit in units where suffix.elementsEqual(unit.suffix.utf8) {
            let (nanos, overflow) = value.multipliedReportingOverflow(by: unit.nanos)
            return overflow ? nil : nanos
        }
        return nil
    }

    public static func parseNanos(_ text: String) -> Int64? {
        parseNanos(Array(text.utf8))
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
