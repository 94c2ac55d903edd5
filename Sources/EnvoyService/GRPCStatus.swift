/// A gRPC status (https://grpc.github.io/grpc/core/md_doc_statuscodes.html): what a call ends with, sent in
/// its trailers as `grpc-status` and `grpc-message`.
public struct GRPCStatus: Error, Equatable, Sendable, CustomStringConvertible {
    /// The codes this service answers with; their numbers are gRPC's.
    public enum Code: Int, Sendable {
        case ok = 0
        case invalidArgument = 3
        case notFound = 5
        case resourceExhausted = 8
        case unimplemented = 12
        case internalError = 13
        case unavailable = 14
        case unauthenticated = 16
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code) (\(code.rawValue)): \(message)" }

    /// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
    var encodedMessage: String {
        var encoded: [UInt8] = []
        encoded.reserveCapacity(message.utf8.count)
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                encoded.append(byte)
            } else {
                let hex = Array("0123456789ABCDEF".utf8)
                encoded += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: encoded, as: UTF8.self)
    }
}
