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
