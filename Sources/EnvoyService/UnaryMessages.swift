import NIOCore
import SwiftProtobuf

/// A unary method's message handling, the same for every method: the request's bytes decoded (a message that
/// does not decode is gRPC `INTERNAL`), `body` applied, the response encoded.
enum UnaryMessages {
    static func answer<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ message: ByteBuffer, _ body: (Request) throws(GRPCStatus) -> Response
    ) throws(GRPCStatus) -> [UInt8] {
        let request: Request
        do {
            request = try Request(serializedBytes: Array(message.readableBytesView))
        } catch {
            let name = Request.protoMessageName.split(separator: ".").last.map(String.init) ?? Request.protoMessageName
            throw GRPCStatus(.internalError, "the request message is not a valid \(name): \(error)")
        }
        let response = try body(request)
        do {
            return try response.serializedBytes()
        } catch {
            throw GRPCStatus(.internalError, "cannot encode the response: \(error)")
        }
    }
}
