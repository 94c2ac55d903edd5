import NIOCore

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
        let view = buffer.readableBytesView
        // Only the first maxLineLength + 2 bytes can hold the end of an acceptable line (`\r\n`).
        let searched = view.prefix(maxLineLength + 2)
        guard let newline = searched.firstIndex(of: UInt8(ascii: "\n")) else {
            return view.count > maxLineLength + 1 ? .tooLong : .needMoreData
        }
        var length = newline - view.startIndex
        let hasCarriageReturn = length > 0 && view[newline - 1] == UInt8(ascii: "\r")
        if hasCarriageReturn { length -= 1 }
        guard length <= maxLineLength else { return .tooLong }
        let line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: hasCarriageReturn ? 2 : 1)
        return .line(line)
    }
}
