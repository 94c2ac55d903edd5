import CHiredis
import NIOCore
import WireProtocol

/// Redis commands as RESP, written straight into a `ByteBuffer` (no array of words per command): an array
/// header with the number of words, then each word as a bulk string (`writeRESPBulk`, shared with the
/// server's RESP replies).
extension ByteBuffer {
    mutating func writeRedisArrayHeader(_ count: Int) {
        writeInteger(UInt8(ascii: "*"))
        writeDecimal(Int64(count))
        writeStaticString("\r\n")
    }

    mutating func writeRESPBulk(_ text: String) {
        writeRESPBulk(text.utf8)
    }

    mutating func writeRESPBulk(decimal value: Int64) {
        var digits = value < 0 ? 2 : 1
        var rest = value.magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(Int64(digits))
        writeStaticString("\r\n")
        writeDecimal(value)
        writeStaticString("\r\n")
    }

    mutating func writeRedisCommand(_ words: [String]) {
        writeRedisArrayHeader(words.count)
        for word in words { writeRESPBulk(word) }
    }
}

/// Replies read from a byte stream by hiredis's own parser (`redisReader`), which the connection feeds as
/// bytes arrive; each complete reply is copied out as a `RedisReply`.
final class RedisReplyReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis could not allocate a reply reader") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ buffer: ByteBuffer) throws(RedisError) {
        let status = buffer.withUnsafeReadableBytes { bytes in
            redisReaderFeed(reader, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        guard status == REDIS_OK else { throw RedisError("cannot read Redis's reply: \(errorText)") }
    }

    /// The next complete reply, or nil until more bytes arrive; throws on a protocol error.
    func next() throws(RedisError) -> RedisReply? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError("cannot read Redis's reply: \(errorText)")
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return RedisConnection.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    private var errorText: String { String(cString: chiredis_reader_error_text(reader)) }
}
