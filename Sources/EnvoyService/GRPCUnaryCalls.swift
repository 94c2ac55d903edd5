import NIOCore
import NIOHPACK
import NIOHTTP2

/// The gRPC unary calls of one HTTP/2 connection as a state machine: each frame NIO's HTTP/2 handler
/// passes up goes in, and what to do comes out (answer a complete request, end a call with a status, give
/// the connection flow-control window back, close). It does no I/O, so every path is tested without a
/// socket; `GRPCConnectionHandler` carries the actions out.
///
/// It speaks the part of gRPC over HTTP/2 that a unary service needs
/// (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): `POST`, `content-type:
/// application/grpc`, one length-prefixed message per request, no compression.
struct GRPCUnaryCalls {
    /// The methods served, by `:path`.
    enum Method: String, Sendable, CaseIterable {
        case shouldRateLimit = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
        /// gRPC's health checking protocol, as envoyproxy/ratelimit serves it: what Envoy's
        /// `grpc_health_check` and Kubernetes' gRPC probes call.
        case healthCheck = "/grpc.health.v1.Health/Check"
    }

    enum Action: Equatable {
        /// A complete request: the method, and the message's bytes (without the 5-byte prefix), to answer on
        /// `stream`.
        case call(HTTP2StreamID, Method, ByteBuffer)
        /// End the call with this status and no message; `reset` when the client has not finished sending
        /// (then a `RST_STREAM` with `NO_ERROR` tells it to stop, as grpc-go does).
        case fail(HTTP2StreamID, GRPCStatus, reset: Bool)
        /// Not a gRPC request (wrong method or content type): an HTTP status, as the gRPC spec asks.
        case refuse(HTTP2StreamID, httpStatus: Int, reset: Bool)
    }

    /// What is known of a call still receiving its request.
    private struct Call {
        let method: Method
        var message: ByteBuffer?
        /// The request's `grpc-encoding`, when it names one other than `identity`.
        var encoding: Substring?
        /// Bytes of the message copied and held until its end arrives.
        var held = 0
    }

    /// Bytes of partial requests held, over every call (for the server's input budget).
    private(set) var heldBytes = 0

    /// Forgets a call, and what it held.
    private mutating func forget(_ stream: HTTP2StreamID) -> Call? {
        let call = calls.removeValue(forKey: stream)
        heldBytes -= call?.held ?? 0
        return call
    }

    /// The connection window this side keeps open: large enough that many requests in flight never wait
    /// for a `WINDOW_UPDATE`, topped up once it is half used (requests are consumed at once, so nothing is
    /// buffered against it for long).
    static let connectionWindow = 1 << 20
    static let unauthenticated = GRPCStatus(.unauthenticated, "missing or wrong authorization: Bearer <token>")
    /// The longest `grpc-message` sent back: an error may quote what the client sent.
    static let maxStatusMessage = 256

    let maxMessageBytes: Int
    /// Whether a call's `authorization` header (nil when absent) lets it in; nil when no token is set.
    let authorize: ((String?) -> Bool)?
    private var calls: [HTTP2StreamID: Call] = [:]
    private(set) var quiescing = false

    init(maxMessageBytes: Int, authorize: ((String?) -> Bool)? = nil) {
        self.maxMessageBytes = maxMessageBytes
        self.authorize = authorize
    }

    /// Calls that have started and not yet been answered.
    var openCalls: Int { calls.count }

    /// Shutdown has begun and no call is open: the connection can close.
    var canClose: Bool { quiescing && calls.isEmpty }

    /// The stream window a peer may fill before this side answers: a whole request of the largest size.
    var streamWindow: Int { maxMessageBytes + 5 + 1024 }

    /// A `HEADERS` frame: the start of a call, or (with `END_STREAM`) the trailers that end its request.
    mutating func receiveHeaders(_ headers: HPACKHeaders, stream: HTTP2StreamID, endStream: Bool) -> Action? {
        if calls[stream] != nil {
            // Trailers from the client: gRPC clients send none, but HTTP/2 allows them; they end the request.
            guard endStream else {
                _ = forget(stream)
                return .fail(stream, GRPCStatus(.internalError, "unexpected HEADERS in the middle of a request"), reset: true)
            }
            return finish(stream)
        }
        let reset = !endStream
        guard !quiescing else {
            return .fail(stream, GRPCStatus(.unavailable, "the server is shutting down"), reset: reset)
        }
        guard headers.first(name: ":method") == "POST" else {
            return .refuse(stream, httpStatus: 405, reset: reset)
        }
        guard let contentType = headers.first(name: "content-type"), Self.isGRPC(contentType: contentType) else {
            return .refuse(stream, httpStatus: 415, reset: reset)
        }
        let path = headers.first(name: ":path") ?? ""
        guard let method = Method(rawValue: path) else {
            let quoted = path.utf8.count > Self.maxStatusMessage ? String(path.prefix(Self.maxStatusMessage)) + "…" : path
            return .fail(stream, GRPCStatus(.unimplemented, "unknown method \(quoted)"), reset: reset)
        }
        // Health checks stay open, as PING does on the client port: probes send no credentials.
        if method == .shouldRateLimit, let authorize, !authorize(headers.first(name: "authorization")) {
            return .fail(stream, Self.unauthenticated, reset: reset)
        }
        guard !endStream else {
            return .fail(stream, GRPCStatus(.internalError, "no request message"), reset: false)
        }
        var call = Call(method: method)
        if let encoding = headers.first(name: "grpc-encoding"), encoding != "identity" {
            call.encoding = Substring(encoding)
        }
        calls[stream] = call
        return nil
    }

    /// A `DATA` frame.
    mutating func receiveData(_ data: ByteBuffer, stream: HTTP2StreamID, endStream: Bool) -> Action? {
        guard var call = calls[stream] else { return nil }
        if call.message == nil {
            // A request that ends in this frame is answered at once; one that goes on is kept in a copy, so
            // that it does not pin the whole read buffer its first bytes came in.
            if endStream {
                call.message = data
            } else {
                var copy = ByteBuffer()
                copy.writeImmutableBuffer(data)
                call.message = copy
                call.held = data.readableBytes
                heldBytes += data.readableBytes
            }
        } else {
            var incoming = data
            call.held += incoming.readableBytes
            heldBytes += incoming.readableBytes
            call.message!.writeBuffer(&incoming)
        }
        if let message = call.message, message.readableBytes >= 5,
            let length = message.getInteger(at: message.readerIndex + 1, as: UInt32.self), Int(length) > maxMessageBytes
        {
            calls[stream] = nil
            heldBytes -= call.held
            return .fail(
                stream, GRPCStatus(.resourceExhausted, "request message of \(length) bytes; at most \(maxMessageBytes)"),
                reset: !endStream)
        }
        calls[stream] = call
        return endStream ? finish(stream) : nil
    }

    /// The stream is gone (the client reset it, or NIO closed it on a stream error): forget the call.
    mutating func streamClosed(_ stream: HTTP2StreamID) {
        _ = forget(stream)
    }

    /// Bytes to give back to the connection window, told its size now (NIO tells it after every DATA frame,
    /// including frames it drops for streams already reset, which this side never sees).
    static func windowIncrement(inboundWindow: Int) -> Int? {
        guard inboundWindow <= connectionWindow / 2 else { return nil }
        return connectionWindow - inboundWindow
    }

    /// Shutdown: no new calls; the open ones finish.
    mutating func quiesce() {
        quiescing = true
    }

    /// The request is complete: exactly one uncompressed message, or an error.
    private mutating func finish(_ stream: HTTP2StreamID) -> Action {
        let call = forget(stream)
        guard var message = call?.message, message.readableBytes > 0 else {
            return .fail(stream, GRPCStatus(.internalError, "no request message"), reset: false)
        }
        guard let flag = message.readInteger(as: UInt8.self), let length = message.readInteger(as: UInt32.self),
            let payload = message.readSlice(length: Int(length))
        else {
            return .fail(stream, GRPCStatus(.internalError, "the request message is cut short"), reset: false)
        }
        guard message.readableBytes == 0 else {
            return .fail(stream, GRPCStatus(.internalError, "more than one request message in a unary call"), reset: false)
        }
        switch flag {
        case 0:
            return .call(stream, call!.method, payload)
        case 1:
            if let encoding = call?.encoding {
                return .fail(stream, GRPCStatus(.unimplemented, "compression \(encoding) is not supported"), reset: false)
            }
            return .fail(stream, GRPCStatus(.internalError, "a compressed message without grpc-encoding"), reset: false)
        default:
            return .fail(stream, GRPCStatus(.internalError, "invalid message flag \(flag)"), reset: false)
        }
    }

    /// `application/grpc`, `application/grpc+proto`, either with parameters.
    static func isGRPC(contentType: String) -> Bool {
        // What every client sends, without the allocations of the general case (it showed in profiles).
        if contentType == "application/grpc" { return true }
        let type = contentType.split(separator: ";", maxSplits: 1).first.map { $0.trimmingASCIISpaces() } ?? ""
        return type.lowercased() == "application/grpc" || type.lowercased() == "application/grpc+proto"
    }
}

extension Substring {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return text
    }
}
