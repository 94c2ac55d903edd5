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
        let scanned = buffer.withUnsafeReadableBytes { bytes in scan(bytes) }
        switch scanned {
        case .frame(let length):
            bytesNeeded = 0
            return .request(buffer.readSlice(length: length)!)
        case .empty(let length):
            buffer.moveReaderIndex(forwardBy: length)
            return .empty
        case .needMoreData(let needed):
            bytesNeeded = needed
            return .needMoreData
        case .malformed(let message):
            return .malformed(message)
        }
    }

    private enum Scan {
        case frame(length: Int)
        case empty(length: Int)
        case needMoreData(bytesNeeded: Int)
        case malformed(String)
    }

    /// Reads one frame from the start of `bytes`, recording its arguments' ranges.
    private mutating func scan(_ bytes: UnsafeRawBufferPointer) -> Scan {
        var index = 0
        let count: Int
        switch header(bytes, at: &index, marker: UInt8(ascii: "*")) {
        case .needMoreData: return .needMoreData(bytesNeeded: 0)
        case .malformed(let message): return .malformed(message)
        case .value(let value): count = value
        }
        guard count >= 0 else { return .malformed("negative array length") }
        guard count <= maxArguments else { return .malformed("too many arguments: \(count) (at most \(maxArguments))") }
        if count == 0 { return .empty(length: index) }
        argumentRanges.removeAll(keepingCapacity: true)
        for _ in 0..<count {
            let length: Int
            switch header(bytes, at: &index, marker: UInt8(ascii: "$")) {
            case .needMoreData: return .needMoreData(bytesNeeded: 0)
            case .malformed(let message): return .malformed(message)
            case .value(let value): length = value
            }
            guard length >= 0, length <= maxBulkLength else {
                return .malformed("invalid bulk length \(length) (0 to \(maxBulkLength))")
            }
            let end = index + length
            // Wait for the whole bulk string and its CRLF before looking at this frame again.
            guard end + 2 <= bytes.count else { return .needMoreData(bytesNeeded: end + 2) }
            guard bytes[end] == UInt8(ascii: "\r"), bytes[end + 1] == UInt8(ascii: "\n") else {
                return .malformed("bulk string not terminated by CRLF")
            }
            argumentRanges.append(index..<end)
            index = end + 2
        }
        return .frame(length: index)
    }

    private enum Header {
        case value(Int)
        case needMoreData
        case malformed(String)
    }

    /// Reads `<marker><integer>\r\n` at `index`, advancing it past the line.
    private func header(_ bytes: UnsafeRawBufferPointer, at index: inout Int, marker: UInt8) -> Header {
        guard index < bytes.count else { return .needMoreData }
        guard bytes[index] == marker else {
            return .malformed("expected '\(Character(UnicodeScalar(marker)))', got \(Self.describe(bytes[index]))")
        }
        var position = index + 1
        var negative = false
        var value = 0
        var digits = 0
        while true {
            guard position - index < Self.maxHeaderLength else { return .malformed("length line too long") }
            guard position < bytes.count else { return .needMoreData }
            let byte = bytes[position]
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
        guard position + 1 < bytes.count else { return .needMoreData }
        guard bytes[position + 1] == UInt8(ascii: "\n") else {
            return .malformed("length line not terminated by CRLF")
        }
        index = position + 2
        return .value(negative ? -value : value)
    }

    private static func describe(_ byte: UInt8) -> String {
        byte >= 0x21 && byte < 0x7F ? "'\(Character(UnicodeScalar(byte)))'" : "byte 0x" + String(byte, radix: 16)
    }
}
