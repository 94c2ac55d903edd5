/// Commands encoded as RESP into one reusable buffer, handed to hiredis in a single
/// `redisAppendFormattedCommand`: per command this saves hiredis's own formatting (an allocation and a
/// format pass for each argument), which measured about a third of the replicator's time.
struct PipelineBuffer {
    private(set) var bytes: [UInt8] = []
    private(set) var commands = 0

    mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
        commands = 0
    }

    /// `SET <prefix><key> value PX ttl`.
    mutating func set(prefix: [UInt8], key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, ttlMillis: Int64) {
        header(5)
        bulk("SET")
        bulk(prefix, key)
        bulk(value)
        bulk("PX")
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let count = withUnsafeMutableBytes(of: &digits) { Self.decimal(UInt64(max(ttlMillis, 1)), into: $0) }
        withUnsafeBytes(of: &digits) { bulk(UnsafeRawBufferPointer(rebasing: $0[(24 - count)...])) }
    }

    /// `DEL <prefix><key>`.
    mutating func delete(prefix: [UInt8], key: UnsafeRawBufferPointer) {
        header(2)
        bulk("DEL")
        bulk(prefix, key)
    }

    private mutating func header(_ arguments: Int) {
        commands += 1
        bytes.append(UInt8(ascii: "*"))
        number(arguments)
    }

    private mutating func bulk(_ word: StaticString) {
        bulk(UnsafeRawBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
    }

    private mutating func bulk(_ data: UnsafeRawBufferPointer) {
        bytes.append(UInt8(ascii: "$"))
        number(data.count)
        bytes.append(contentsOf: data)
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
    }

    /// One bulk string of two parts: a key prefix and the key.
    private mutating func bulk(_ prefix: [UInt8], _ data: UnsafeRawBufferPointer) {
        bytes.append(UInt8(ascii: "$"))
        number(prefix.count + data.count)
        bytes.append(contentsOf: prefix)
        bytes.append(contentsOf: data)
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
    }

    /// A length and CRLF.
    private mutating func number(_ value: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        let count = withUnsafeMutableBytes(of: &digits) { Self.decimal(UInt64(value), into: $0) }
        withUnsafeBytes(of: &digits) { bytes.append(contentsOf: $0[(24 - count)...]) }
        bytes.append(UInt8(ascii: "\r"))
        bytes.append(UInt8(ascii: "\n"))
    }

    /// Writes `value` in decimal at the end of `buffer` (24 bytes); returns how many digits.
    private static func decimal(_ value: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        var remaining = value
        var position = buffer.count
        repeat {
            position -= 1
            buffer[position] = UInt8(ascii: "0") + UInt8(remaining % 10)
            remaining /= 10
        } while remaining > 0
        return buffer.count - position
    }
}
