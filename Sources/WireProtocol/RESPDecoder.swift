import NIOCore

/// Cuts RESP request frames (`*<n>\r\n` followed by `n` bulk strings `$<len>\r\n<bytes>\r\n`) out of a byte
/// stream. Every length is checked against its limit before anything is waited for or kept, so a client
/// cannot make the server reserve memory by announcing a large frame. A frame still arriving is re-examined
/// only when enough bytes are there to finish the bulk string it is waiting on, and bulk payloads are
/// skipped by length, never scanned, so a slow client costs O(arguments) per read, not O(frame).
public struct RESPDecoder: Sendable {
    public enum Frame {
        /// A whole request; its arguments are `argumentRanges`, relative to the start of this slice.
        case request(ByteBuffer)
        /// `*0`: no command, no reply (as Redis treats it).
        case empty
        case needMoreData
        /// The stream broke the protocol; the connection cannot continue.
        case malformed(String)
    }

    public static let defaultMaxArguments = 16
    public static let defaultMaxBulkLength = 4096
    /// `*16\r\n` or `$4096\r\n` need a handful of bytes; a header line longer than this is not RESP.
    static let maxHeaderLength = 22

    public let maxArguments: Int
    public let maxBulkLength: Int
    /// Ranges of the arguments of the last `.request`, relative to its slice; reused to avoid allocation.
    public private(set) var argumentRanges: [Range<Int>] = []
    /// Readable bytes the frame at the front needs before it is worth examining again.
    private var bytesNeeded = 0

    public init(maxArguments: Int = defaultMaxArguments, maxBulkLength: Int = defaultMaxBulkLength) {
        self.maxArguments = maxArguments
        self.maxBulkLength = maxBulkLength
        argumentRanges.reserveCapacity(maxArguments)
    }

    /// The next frame at the front of `buffer`, which must start with `*`.
    public mutating func next(in buffer: inout ByteBuffer) -> Frame {
        guard buffer.readableBytes >= bytesNeeded else { return .needMoreData }
        let start = buffer.readerIndex
        var index = start
        switch header(in: buffer, at: &index, marker: UInt8(ascii: "*")) {
        case .needMoreData: return .needMoreData
        case .malformed(let message): return .malformed(message)
        case .value(let count):
            guard count >= 0 else { return .malformed("negative array length") }
            guard count <= maxArguments else {
                return .malformed("too many arguments: \(count) (at most \(maxArguments))")
            }
            if count == 0 {
                buffer.moveReaderIndex(to: index)
                return .empty
            }
            argumentRanges.removeAll(keepingCapacity: true)
            for _ in 0..<count {
                switch header(in: buffer, at: &index, marker: UInt8(ascii: "$")) {
                case .needMoreData: return .needMoreData
                case .malformed(let message): return .malformed(message)
                case .value(let length):
                    guard length >= 0, length <= maxBulkLength else {
                        return .malformed("invalid bulk length \(length) (0 to \(maxBulkLength))")
                    }
                    let end = index + length
                    guard end + 2 <= buffer.writerIndex else {
                        bytesNeeded = end + 2 - start
                        return .needMoreData
                    }
                    guard buffer.getInteger(at: end, as: UInt16.self) == 0x0D0A else {
                        return .malformed("bulk string not terminated by CRLF")
                    }
                    argumentRanges.append((index - start)..<(end - start))
                    index = end + 2
                }
            }
            bytesNeeded = 0
            return .request(buffer.readSlice(length: index - start)!)
        }
    }

    private enum Header {
        case value(Int)
        case needMoreData
        case malformed(String)
    }

    /// Reads `<marker><integer>\r\n` at `index`, advancing it past the line.
    private func header(in buffer: ByteBuffer, at index: inout Int, marker: UInt8) -> Header {
        let available = buffer.writerIndex - index
        guard available > 0 else { return .needMoreData }
        let first = buffer.getInteger(at: index, as: UInt8.self)!
        guard first == marker else {
            return .malformed("expected '\(Character(UnicodeScalar(marker)))', got \(Self.describe(first))")
        }
        var position = index + 1
        var negative = false
        var value = 0
        var digits = 0
        while true {
            guard position - index < Self.maxHeaderLength else { return .malformed("length line too long") }
            guard position < buffer.writerIndex else { return .needMoreData }
            let byte = buffer.getInteger(at: position, as: UInt8.self)!
            if byte == UInt8(ascii: "\r") { break }
            if byte == UInt8(ascii: "-"), digits == 0, !negative {
                negative = true
            } else if byte >= 0x30, byte <= 0x39 {
                // Saturate: anything past a billion is refused by the callers' limits anyway.
                value = min(value * 10 + Int(byte - 0x30), 1_000_000_001)
                digits += 1
            } else {
                return .malformed("invalid length character \(Self.describe(byte))")
            }
            position += 1
        }
        guard digits > 0 else { return .malformed("missing length") }
        guard position + 1 < buffer.writerIndex else { return .needMoreData }
        guard buffer.getInteger(at: position + 1, as: UInt8.self) == UInt8(ascii: "\n") else {
            return .malformed("length line not terminated by CRLF")
        }
        index = position + 2
        return .value(negative ? -value : value)
    }

    private static func describe(_ byte: UInt8) -> String {
        byte >= 0x21 && byte < 0x7F ? "'\(Character(UnicodeScalar(byte)))'" : "byte 0x" + String(byte, radix: 16)
    }
}
