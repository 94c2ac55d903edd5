import RateLimiting

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A window length in one byte, so a table entry can remember what the sweeper needs without growing:
/// code k ≥ 1 stands for 1 ms × 2^((k − 1) / 7), steps of about 10 %, up to 972 days; 0 is unknown. Codes
/// round up, so a decoded window is never shorter than the real one: the sweeper may keep a key up to a
/// tenth of its window longer than it must, never forget it early.
enum WindowCode {
    static func encode(_ windowNanos: Int64) -> UInt8 {
        guard windowNanos > 0 else { return 0 }
        let milliseconds = Swift.max(Double(windowNanos) / 1e6, 1)
        // The small allowance keeps a decoded window's own code stable; the loop restores rounding up.
        var code = Int((7 * log2(milliseconds) - 1e-4).rounded(.up)) + 1
        code = Swift.min(Swift.max(code, 1), 255)
        while code < 255, decode(UInt8(code)) < windowNanos { code += 1 }
        return UInt8(code)
    }

    /// The window `code` stands for, at most the longest window a limit may have: rounding up must not make
    /// a 365-day window one that a snapshot or the replica would refuse.
    static func decode(_ code: UInt8) -> Int64 {
        guard code > 0 else { return 0 }
        return min(Int64((1e6 * pow(2, Double(code - 1) / 7)).rounded(.up)), Limit.maxWindowNanos)
    }
}
