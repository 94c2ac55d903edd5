import NIOCore
import RateLimiting

extension ByteBuffer {
    /// Appends `reply` in RESP. Every type used reads the same in RESP2 and RESP3 (arrays, simple strings,
    /// integers, errors, bulk strings), except `HELLO 3`'s reply, which RESP3 clients require as a map.
    public mutating func writeRESPReply(_ reply: Reply) {
        switch reply {
        case .decision(let decision):
            writeRaw { out in
                out.put(decision.allowed ? "*3\r\n+ALLOW\r\n:" : "*3\r\n+DENY\r\n:")
                out.put(decimal: decision.remaining)
                out.put("\r\n:")
                out.put(decimal: decision.resetMillis)
                out.put("\r\n")
            }
        case .pong: writeStaticString("+PONG\r\n")
        case .ok, .bye: writeStaticString("+OK\r\n")
        case .error(let error):
            switch error.code {
            case .noproto:
                writeStaticString("-NOPROTO ")
            case .noauth:
                writeStaticString("-NOAUTH ")
            case .wrongToken:
                writeStaticString("-WRONGPASS ")
            default:
                writeStaticString("-ERR ")
                writeString(error.code.rawValue)
                writeInteger(UInt8(ascii: " "))
            }
            writeString(error.message)
            writeStaticString("\r\n")
        case .message(let bytes): writeRESPBulk(bytes)
        case .emptyArray: writeStaticString("*0\r\n")
        case .configValues(let parameters, let version):
            writeInteger(UInt8(ascii: version == 3 ? "%" : "*"))
            writeDecimal(Int64(version == 3 ? parameters.count : parameters.count * 2))
            writeStaticString("\r\n")
            for parameter in parameters {
                writeRESPBulk(parameter.rawValue.utf8)
                writeRESPBulk(parameter.value.utf8)
            }
        case .hello(let hello): writeHello(hello)
        case .stats(let statistics):
            var text = ByteBuffer()
            text.writeStatistics(statistics, newline: "\r\n")
            writeRESPBulk(text.readableBytesView)
        }
    }

    /// A RESP bulk string: `$<length>\r\n<bytes>\r\n` (replies here; commands to Redis in shared mode).
    public mutating func writeRESPBulk(_ bytes: some Collection<UInt8>) {
        writeInteger(UInt8(ascii: "$"))
        writeDecimal(Int64(bytes.count))
        writeStaticString("\r\n")
        writeBytes(bytes)
        writeStaticString("\r\n")
    }

    private mutating func writeRESPInteger(_ value: Int) {
        writeInteger(UInt8(ascii: ":"))
        writeDecimal(Int64(value))
        writeStaticString("\r\n")
    }

    /// Redis's HELLO fields: a map in RESP3, a flat array of alternating names and values in RESP2.
    private mutating func writeHello(_ hello: HelloReply) {
        writeStaticString(hello.version == 3 ? "%7\r\n" : "*14\r\n")
        writeRESPBulk("server".utf8)
        writeRESPBulk("ratelimitd".utf8)
        writeRESPBulk("version".utf8)
        writeRESPBulk(RatelimitdVersion.string.utf8)
        writeRESPBulk("proto".utf8)
        writeRESPInteger(hello.version)
        writeRESPBulk("id".utf8)
        writeRESPInteger(hello.connectionID)
        writeRESPBulk("mode".utf8)
        writeRESPBulk("standalone".utf8)
        writeRESPBulk("role".utf8)
        writeRESPBulk("master".utf8)
        writeRESPBulk("modules".utf8)
        writeStaticString("*0\r\n")
    }
}
