import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Cuts a byte stream into lines, refusing any line longer than `maxLineLength` whether or not its end has
/// arrived, so a client cannot make the server buffer without bound while it waits for a newline.
public struct LineFramer: Sendable {
    public enum Frame {
        /// One line without its `\n` (and without a `\r` before it), sharing the input's storage.
        case line(ByteBuffer)
        /// No complete line yet; the partial line stays in the buffer.
        case needMoreData
        /// The line at the front is longer than allowed.
        case tooLong
    }

    public static let defaultMaxLineLength = 4096

    public let maxLineLength: Int

    public init(maxLineLength: Int = LineFramer.defaultMaxLineLength) {
        self.maxLineLength = maxLineLength
    }

    public func next(in buffer: inout ByteBuffer) -> Frame {
        // Only the first maxLineLength + 2 bytes can hold the end of an acceptable line (`\r\n`).
        let maxLineLength = self.maxLineLength
        let scanned = buffer.withUnsafeReadableBytes { bytes -> (newline: Int?, count: Int, carriageReturn: Bool) in
            let searched = min(bytes.count, maxLineLength + 2)
            guard searched > 0, let base = bytes.baseAddress,
                let found = memchr(base, Int32(UInt8(ascii: "\n")), searched)
            else {
                // No end yet: past the longest line, only a `\r` (of a closing `\r\n`) may still come.
                let hopeless = bytes.count > maxLineLength + 1
                    || (bytes.count == maxLineLength + 1 && bytes[maxLineLength] != UInt8(ascii: "\r"))
                return (nil, hopeless ? .max : bytes.count, false)
            }
            let newline = base.distance(to: UnsafeRawPointer(found))
            return (newline, bytes.count, newline > 0 && bytes[newline - 1] == UInt8(ascii: "\r"))
        }
        guard let newline = scanned.newline else {
            // A line is refused as soon as the byte after its longest allowed length arrives (unless that
            // byte is the `\r` of its end).
            return scanned.count == .max ? .tooLong : .needMoreData
        }
        let length = scanned.carriageReturn ? newline - 1 : newline
        guard length <= maxLineLength else { return .tooLong }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: scanned.carriageReturn ? 2 : 1)
        return .line(line)
    }
}
