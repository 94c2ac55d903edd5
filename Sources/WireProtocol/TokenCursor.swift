/// Walks the space-separated words of one line without copying them.
public struct TokenCursor: Words {
    private let bytes: UnsafeRawBufferPointer
    private var position: Int

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
    }

    public mutating func next() -> UnsafeRawBufferPointer.SubSequence? {
        while position < bytes.count, bytes[position] == UInt8(ascii: " ") { position += 1 }
        guard position < bytes.count else { return nil }
        let start = position
        while position < bytes.count, bytes[position] != UInt8(ascii: " ") { position += 1 }
        return bytes[start..<position]
    }

    /// How many words are left, without consuming them.
    public func remainingCount() -> Int {
        var copy = self
        var count = 0
        while copy.next() != nil { count += 1 }
        return count
    }
}
