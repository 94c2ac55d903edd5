/// The words of one request, whichever protocol carried them: space-separated words of a line, or the bulk
/// strings of a RESP array. The command table and parser work on this, so both protocols share one
/// parser and one set of errors.
public protocol Words {
    /// The next word, or nil when there are no more.
    mutating func next() -> UnsafeRawBufferPointer.SubSequence?
    /// How many words are left, without consuming them.
    func remainingCount() -> Int
}

/// Words stored as ranges into a buffer: the arguments of a RESP array.
public struct RangeWords: Words {
    private let bytes: UnsafeRawBufferPointer
    private let ranges: [Range<Int>]
    private var position = 0

    public init(_ bytes: UnsafeRawBufferPointer, ranges: [Range<Int>]) {
        self.bytes = bytes
        self.ranges = ranges
    }

    public mutating func next() -> UnsafeRawBufferPointer.SubSequence? {
        guard position < ranges.count else { return nil }
        defer { position += 1 }
        return bytes[ranges[position]]
    }

    public func remainingCount() -> Int { ranges.count - position }
}
