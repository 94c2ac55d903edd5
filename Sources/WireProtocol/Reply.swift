import NIOCore
import RateLimiting

/// One reply, written in the form of the protocol its request came in.
public enum Reply: Sendable, Hashable {
    case decision(Decision)
    case pong
    case ok
    /// The answer to QUIT: `BYE` on the line protocol, `+OK` over RESP (as Redis answers QUIT).
    case bye
    case error(ProtocolError)
    /// A client's own bytes sent back: `PING <message>`, `ECHO`.
    case message([UInt8])
    /// `COMMAND`: nothing to list.
    case emptyArray
    /// `CONFIG GET`: parameter names and values, a map in RESP3 and a flat array in RESP2 (as Redis does).
    case configValues([ConfigParameter], version: Int)
    case hello(HelloReply)
    /// `STATS`: name and value pairs, as memcached's `STAT name value` lines ending with `END`.
    case stats([Statistic])
}

/// One counter of `STATS`.
public struct Statistic: Sendable, Hashable {
    public var name: StaticString
    public var value: Int64

    public init(_ name: StaticString, _ value: Int64) {
        self.name = name
        self.value = value
    }

    public static func == (lhs: Statistic, rhs: Statistic) -> Bool {
        lhs.name.description == rhs.name.description && lhs.value == rhs.value
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name.description)
        hasher.combine(value)
    }
}

extension ByteBuffer {
    /// The text of a `STATS` reply: one `STAT name value` line per counter, then `END`.
    mutating func writeStatistics(_ statistics: [Statistic], newline: StaticString) {
        for statistic in statistics {
            writeStaticString("STAT ")
            writeStaticString(statistic.name)
            writeInteger(UInt8(ascii: " "))
            writeDecimal(statistic.value)
            writeStaticString(newline)
        }
        writeStaticString("END")
    }
}

/// What `HELLO` reports, in the protocol version it selects.
public struct HelloReply: Sendable, Hashable {
    public var connectionID: Int
    public var version: Int

    public init(connectionID: Int, version: Int) {
        self.connectionID = connectionID
        self.version = version
    }
}
