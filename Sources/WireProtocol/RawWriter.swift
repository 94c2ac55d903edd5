import NIOCore

/// Writes a short reply straight into a buffer's spare capacity: one capacity check per reply instead of one
/// per piece, which is most of what encoding a decision costs through `ByteBuffer`'s general writers.
struct RawWriter {
    /// Enough for the longest decision in either protocol (two 20-character integers and the framing).
    static let maxDecisionBytes = 64

    private let base: UnsafeMutableRawPointer
    private(set) var count = 0

    init(_ base: UnsafeMutableRawPointer) {
        self.base = base
    }

    @inline(__always)
    mutating func put(_ text: StaticString) {
        (base + count).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        count += text.utf8CodeUnitCount
    }

    @inline(__always)
    mutating func put(decimal value: Int64) {
        var rest = value.magnitude
        if value < 0 {
            base.storeBytes(of: UInt8(ascii: "-"), toByteOffset: count, as: UInt8.self)
            count += 1
        }
        var digits = 1
        var probe = rest
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var position = count + digits
        repeat {
            position -= 1
            base.storeBytes(of: UInt8(truncatingIfNeeded: rest % 10) &+ 0x30, toByteOffset: position, as: UInt8.self)
            rest /= 10
        } while rest > 0
        count += digits
    }
}

extension ByteBuffer {
    /// Runs `body` on at least `RawWriter.maxDecisionBytes` of spare capacity and commits what it wrote.
    @inline(__always)
    mutating func writeRaw(_ body: (inout RawWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: RawWriter.maxDecisionBytes) { buffer in
            var writer = RawWriter(buffer.baseAddress!)
            body(&writer)
            return writer.count
        }
    }
}
