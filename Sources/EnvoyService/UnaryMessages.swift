import NIOCore
import SwiftProtobuf

/// A unary method's message handling, the same for every method: the request's bytes decoded (a message that
/// does not decode is gRPC `INTERNAL`), `body` applied, the response encoded.
enum UnaryMessages {
    static func answer<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ message: ByteBuffer, _ body: (Request) throws(GRPCStatus) -> Response
    ) throws(GRPCStatus) -> [UInt8] {
        try encode(try body(try decode(message)))
    }

    static func decode<Request: SwiftProtobuf.Message>(_ message: ByteBuffer) throws(GRPCStatus) -> Request {
        do {
            return try Request(serializedBytes: Array(message.readableBytesView))
        } catch {
            let name = Request.protoMessageName.split(separator: ".").last.map(String.init) ?? Request.protoMessageName
            throw GRPCStatus(.internalError, "the request message is not a valid \(name): \(error)")
        }
    }

    static func encode<Response: SwiftProtobuf.Message>(_ response: Response) throws(GRPCStatus) -> [UInt8] {
        do {
            return try response.serializedBytes()
        } catch {
            throw GRPCStatus(.internalError, "cannot encode the response: \(error)")
        }
    }
}
