import NIOCore
import RateLimiting

extension ByteBuffer {
    /// Appends `reply` as one `\n`-terminated line of the line protocol, without building intermediate
    /// strings for the common replies.
    public mutating func writeLineReply(_ reply: Reply) {
        switch reply {
        case .decision(let decision):
            writeRaw { out in
                out.put(decision.allowed ? "ALLOW " : "DENY ")
                out.put(decimal: decision.remaining)
                out.put(" ")
                out.put(decimal: decision.resetMillis)
                out.put("\n")
            }
            return
        case .pong: writeStaticString("PONG")
        case .ok: writeStaticString("OK")
        case .bye: writeStaticString("BYE")
        case .error(let error):
            writeStaticString("ERR ")
            writeString(error.code.rawValue)
            writeInteger(UInt8(ascii: " "))
            writeString(error.message)
        case .message(let bytes):
            // A line-protocol message is one word (no spaces, no newlines), so it is safe to echo as is.
            writeBytes(bytes)
        case .stats(let statistics):
            writeStatistics(statistics, newline: "\n")
        case .emptyArray, .hello, .configValues:
            // Only RESP requests produce these; a line client never sees them.
            writeStaticString("ERR unknown_command available over RESP only")
        }
        writeInteger(UInt8(ascii: "\n"))
    }

    /// Appends `value` in decimal ASCII.
    public mutating func writeDecimal(_ value: Int64) {
        if value < 0 {
            writeInteger(UInt8(ascii: "-"))
            // Int64.min cannot be negated; no reply carries it, but stay total.
            guard value != .min else { writeStaticString("9223372036854775808"); return }
            writeDecimal(-value)
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of scratch: enough for any UInt64
        var remaining = UInt64(value)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            repeat {
                scratch[23 - count] = UInt8(truncatingIfNeeded: remaining % 10) + 0x30
                remaining /= 10
                count += 1
            } while remaining > 0
        }
        withUnsafeBytes(of: &digits) { scratch in
            _ = writeBytes(UnsafeRawBufferPointer(rebasing: scratch[(24 - count)...]))
        }
    }
}
