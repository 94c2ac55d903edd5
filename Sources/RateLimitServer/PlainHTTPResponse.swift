import NIOCore
import NIOHTTP1

/// A whole HTTP/1 response with a short text body, as the HTTP listeners (`/metrics`, `/check`) answer:
/// with its `Content-Length` (no body for `HEAD`), kept alive when the request asked for that (an HTTP/1.0
/// client is told so, since it would take the connection for closed otherwise) and closed after it when not.
public struct PlainHTTPResponse {
    public var status: HTTPResponseStatus
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var contentType: String

    public init(
        status: HTTPResponseStatus, headers: [(name: String, value: String)] = [], body: [UInt8],
        contentType: String = "text/plain; charset=utf-8"
    ) {
        self.status = status
        self.headers = headers
        self.body = body
        self.contentType = contentType
    }

    /// Writes the response to `head` on `context`'s channel, whose pipeline holds NIO's HTTP server
    /// handlers.
    public func write(answering head: HTTPRequestHead, on context: ChannelHandlerContext) {
        var fields = HTTPHeaders()
        for (name, value) in headers { fields.add(name: name, value: value) }
        fields.add(name: "Content-Type", value: contentType)
        fields.add(name: "Content-Length", value: "\(body.count)")
        let keepAlive = head.isKeepAlive
        if !keepAlive {
            fields.add(name: "Connection", value: "close")
        } else if head.version == .http1_0 {
            fields.add(name: "Connection", value: "keep-alive")
        }
        let response = HTTPResponseHead(version: head.version, status: status, headers: fields)
        context.write(NIOAny(HTTPServerResponsePart.head(response)), promise: nil)
        if head.method != .HEAD, !body.isEmpty {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let written = context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
        if !keepAlive { written.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
    }
}
