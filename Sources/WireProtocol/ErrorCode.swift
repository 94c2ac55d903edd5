/// The stable error words of `ERR <code> <message>`: programs match the code, people read the message.
public enum ErrorCode: String, Sendable, CaseIterable {
    case unknownCommand = "unknown_command"
    case wrongArguments = "wrong_arguments"
    case badKey = "bad_key"
    case badCost = "bad_cost"
    case badLimit = "bad_limit"
    case badAlgorithm = "bad_algorithm"
    case noRule = "no_rule"
    /// Closes the connection after the reply (as does `protocol_error`): the next request cannot be found safely.
    case lineTooLong = "line_too_long"
    /// A RESP frame that breaks the protocol (bad length, missing CRLF, nesting); the server closes after it.
    case protocolError = "protocol_error"
    /// `HELLO` with a protocol version other than 2 or 3; sent as `-NOPROTO <message>`, the form Redis
    /// clients recognise to fall back to RESP2.
    case noproto = "noproto"
    /// A request still incomplete `request_timeout` after its first byte; the server closes after it.
    case timeout
    /// A command other than `AUTH`, `HELLO`, `PING`, `QUIT` before `AUTH` on a server with a token; sent as
    /// `-NOAUTH <message>` over RESP, which Redis clients raise as an authentication error.
    case noauth
    /// `AUTH` with a token (or a user other than `default`) that is not the server's; sent as
    /// `-WRONGPASS <message>` over RESP.
    case wrongToken = "wrong_token"
    /// `AUTH <token>` to a server without a token, as Redis answers `AUTH` without `requirepass`.
    case noToken = "no_token"
    /// `max_connections` are open: the only reply to one more connection, which is then closed.
    case busy
}

/// An error reply: what went wrong with one request.
public struct ProtocolError: Error, Sendable, Hashable {
    public let code: ErrorCode
    public let message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}

extension ProtocolError {
    public static let authenticationRequired = ProtocolError(.noauth, "authentication required; send AUTH <token>")
    /// Redis's own words, which some clients match.
    public static let wrongToken = ProtocolError(.wrongToken, "invalid username-password pair or user is disabled.")
    public static let noToken = ProtocolError(
        .noToken, "AUTH <token> called but no auth_token_file is configured; is the client's configuration right?")

    /// `no_rule` for `key`, echoing at most 64 of its bytes like every other error.
    public static func noRule(key: UnsafeRawBufferPointer) -> ProtocolError {
        ProtocolError(.noRule, "no rule matches key \(Printable.quote(key[...]))")
    }
}
