import NIOCore
import RateLimiting

/// One reply of the line protocol.
public enum Reply: Sendable, Hashable {
    case decision(Decision)
    case pong
    case ok
    case bye
    case error(ProtocolError)
}

extension ByteBuffer {
    /// Appends `reply` as one `\n`-terminated line, without building intermediate strings for the common
    /// replies.
    public mutating func writeReply(_ reply: Reply) {
        switch reply {
        case .decision(let decision):
            writeStaticString(decision.allowed ? "ALLOW " : "DENY ")
            writeDecimal(decision.remaining)
            writeInteger(UInt8(ascii: " "))
            writeDecimal(decision.resetMillis)
        case .pong: writeStaticString("PONG")
        case .ok: writeStaticString("OK")
        case .bye: writeStaticString("BYE")
        case .error(let error):
            writeStaticString("ERR ")
            writeString(error.code.rawValue)
            writeInteger(UInt8(ascii: " "))
            writeString(error.message)
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
        var digits: (UInt64, UInt64) = (0, 0)  // 16 bytes of scratch, enough for 19 digits with the tail
        var remaining = UInt64(value)
        var count = 0
        withUnsafeMutableBytes(of: &digits) { scratch in
            repeat {
                scratch[15 - count] = UInt8(truncatingIfNeeded: remaining % 10) + 0x30
                remaining /= 10
                count += 1
            } while remaining > 0 && count < 16
        }
        if remaining > 0 {
            // More than 16 digits: rare enough that the generic path is fine.
            writeString(String(value))
            return
        }
        withUnsafeBytes(of: &digits) { scratch in
            _ = writeBytes(UnsafeRawBufferPointer(rebasing: scratch[(16 - count)...]))
        }
    }
}
