/// The stable error words of `ERR <code> <message>`: programs match the code, people read the message.
public enum ErrorCode: String, Sendable, CaseIterable {
    case unknownCommand = "unknown_command"
    case wrongArguments = "wrong_arguments"
    case badKey = "bad_key"
    case badCost = "bad_cost"
    case badLimit = "bad_limit"
    case badAlgorithm = "bad_algorithm"
    case noRule = "no_rule"
    /// The only error after which the server closes the connection: it cannot find the next request safely.
    case lineTooLong = "line_too_long"
    /// Reserved for authentication; this version never sends it.
    case noauth
    /// Reserved for overload shedding; this version never sends it.
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
