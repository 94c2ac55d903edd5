import NIOCore

/// Writes benchmark requests in the line protocol or in RESP, formatting numbers straight into the buffer
/// so the generator spends its time on I/O, not on building strings.
struct RequestWriter: Sendable {
    enum Wire: String, CaseIterable {
        case line, resp
    }

    let wire: Wire
    /// Key prefix, e.g. `bench:`; the key is the prefix and a number.
    let prefix: [UInt8]
    /// Extra words after the key, e.g. `1` or `1 10/1s fixed_window`.
    let tail: [[UInt8]]
    /// Zero-pads the number to this many digits (0: no padding), for keys of a fixed length.
    let digits: Int
    /// Key numbers are taken modulo this.
    let wrap: Int

    init(wire: Wire, prefix: String, tail: [String], digits: Int = 0, wrap: Int = .max) {
        self.wire = wire
        self.prefix = Array(prefix.utf8)
        self.tail = tail.map { Array($0.utf8) }
        self.digits = digits
        self.wrap = wrap
    }

    func write(key number: Int, into buffer: inout ByteBuffer) {
        let key = number % wrap
        let width = max(digits, Self.digitCount(key))
        switch wire {
        case .line:
            buffer.writeStaticString("CHECK ")
            buffer.writeBytes(prefix)
            Self.writeNumber(key, width: width, into: &buffer)
            for word in tail {
                buffer.writeInteger(UInt8(ascii: " "))
                buffer.writeBytes(word)
            }
            buffer.writeInteger(UInt8(ascii: "\n"))
        case .resp:
            buffer.writeInteger(UInt8(ascii: "*"))
            Self.writeNumber(2 + tail.count, width: 0, into: &buffer)
            buffer.writeStaticString("\r\n$5\r\nCHECK\r\n$")
            Self.writeNumber(prefix.count + width, width: 0, into: &buffer)
            buffer.writeStaticString("\r\n")
            buffer.writeBytes(prefix)
            Self.writeNumber(key, width: width, into: &buffer)
            buffer.writeStaticString("\r\n")
            for word in tail {
                buffer.writeInteger(UInt8(ascii: "$"))
                Self.writeNumber(word.count, width: 0, into: &buffer)
                buffer.writeStaticString("\r\n")
                buffer.writeBytes(word)
                buffer.writeStaticString("\r\n")
            }
        }
    }

    static func digitCount(_ value: Int) -> Int {
        var count = 1
        var rest = value / 10
        while rest > 0 {
            count += 1
            rest /= 10
        }
        return count
    }

    /// Writes `value` in decimal, zero-padded to `width` digits.
    static func writeNumber(_ value: Int, width: Int, into buffer: inout ByteBuffer) {
        let count = max(width, digitCount(value))
        let start = buffer.writerIndex
        buffer.writeRepeatingByte(UInt8(ascii: "0"), count: count)
        var rest = value
        var position = start + count - 1
        while rest > 0 {
            buffer.setInteger(UInt8(rest % 10) + 0x30, at: position)
            rest /= 10
            position -= 1
        }
    }
}
