import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2
import RateLimitServer

/// Serves unary gRPC calls on one HTTP/2 connection, on its event loop: it sits behind `NIOHTTP2Handler`
/// (which owns the connection's HTTP/2 state: settings, HPACK, streams, flow control, pings), feeds the
/// frames to `GRPCUnaryCalls`, and answers each complete request at once with `answer`. The replies of one
/// read burst go out with one flush. No child channel per stream and no task per call: that is what a
/// general gRPC server costs per call, and this one answers in microseconds (README, "Why not grpc-swift's
/// server").
final class GRPCConnectionHandler: ChannelDuplexHandler, NIOHTTP2FrameDelegate {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// Decodes a request message of a method, answers it and returns the encoded response message; or
    /// returns nil and answers later through the `Later` it was given.
    typealias Answer = (GRPCUnaryCalls.Method, ByteBuffer, @escaping Later) throws(GRPCStatus) -> [UInt8]?
    typealias Later = @Sendable (Result<[UInt8], GRPCStatus>) -> Void

    private var calls: GRPCUnaryCalls
    private let answer: Answer
    private let logger: Logger
    private var needsFlush = false
    /// A read NIO asked for while the client was not taking the replies.
    private var readPending = false
    /// NIO's HTTP/2 handler wrote a GOAWAY with an error: the connection is over.
    private var connectionFailed = false
    private var lastStream: HTTP2StreamID = .rootStream
    private var closing = false
    /// Calls answered later (shared mode: Redis decides), until their answer is written or the client
    /// resets the stream.
    private var owed: Set<HTTP2StreamID> = []
    private var context: ChannelHandlerContext?
    private let auth: AuthToken?
    /// Where the partial requests this connection holds count with every client connection's input.
    private let inputBudget: InputBudget?
    private var reportedInput = 0

    init(
        maxMessageBytes: Int, logger: Logger, auth: AuthToken? = nil, inputBudget: InputBudget? = nil,
        answer: @escaping Answer
    ) {
        self.auth = auth
        self.inputBudget = inputBudget
        self.calls = GRPCUnaryCalls(
            maxMessageBytes: maxMessageBytes, authorize: auth.map { auth in { auth.matches(authorization: $0) } })
        self.answer = answer
        self.logger = logger
    }

    /// The settings to announce: what bounds what one connection may ask at a time.
    func initialSettings(maxConcurrentStreams: Int) -> HTTP2Settings {
        [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: HPACKDecoder.defaultMaxHeaderListSize),
            HTTP2Setting(parameter: .initialWindowSize, value: calls.streamWindow),
        ]
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { openConnectionWindow(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        reportInput(0, context)
        self.context = nil
        owed.removeAll()
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        openConnectionWindow(context)
    }

    /// The connection window starts at 65,535 bytes whatever the settings say; widen it once.
    private func openConnectionWindow(_ context: ChannelHandlerContext) {
        let increment = GRPCUnaryCalls.connectionWindow - 65_535
        context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))), promise: nil)
        needsFlush = true
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        let action: GRPCUnaryCalls.Action?
        switch frame.payload {
        case .headers(let headers):
            lastStream = max(lastStream, frame.streamID)
            action = calls.receiveHeaders(headers.headers, stream: frame.streamID, endStream: headers.endStream)
        case .data(let payload):
            guard case .byteBuffer(let buffer) = payload.data else { return }
            action = calls.receiveData(buffer, stream: frame.streamID, endStream: payload.endStream)
        case .rstStream:
            calls.streamClosed(frame.streamID)
            owed.remove(frame.streamID)
            action = nil
        default:
            // SETTINGS, PING, GOAWAY, WINDOW_UPDATE, PRIORITY: NIO's HTTP/2 handler has dealt with them.
            action = nil
        }
        if let action { perform(action, context: context) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushIfNeeded(context)
        reportInput(calls.heldBytes, context)
        context.fireChannelReadComplete()
    }

    /// Tells the input budget what this connection holds, when worth it (see `InputBudget.worthReporting`).
    private func reportInput(_ held: Int, _ context: ChannelHandlerContext) {
        guard let inputBudget, InputBudget.worthReporting(held, after: reportedInput) else { return }
        reportedInput = held
        inputBudget.hold(held, by: context.channel)
    }

    private func perform(_ action: GRPCUnaryCalls.Action, context: ChannelHandlerContext) {
        switch action {
        case .call(let stream, let method, let message):
            let later: Later = { [loop = context.eventLoop, handler = NIOLoopBound(self, eventLoop: context.eventLoop)] result in
                loop.execute { handler.value.answered(stream, result) }
            }
            do throws(GRPCStatus) {
                guard let response = try answer(method, message, later) else {
                    owed.insert(stream)
                    return
                }
                respond(.success(response), on: stream, context)
            } catch {
                respond(.failure(error), on: stream, context)
            }
        case .fail(let stream, let status, let reset):
            if status.code == .unauthenticated {
                auth?.recordFailure(on: .envoy, peer: context.channel.remoteAddress, reason: "missing or wrong bearer token")
            }
            respond(.failure(status), on: stream, context)
            if reset { write(.rstStream(.noError), on: stream, context) }
        case .refuse(let stream, let httpStatus, let reset):
            write(.headers(.init(headers: [":status": "\(httpStatus)"], endStream: true)), on: stream, context)
            if reset { write(.rstStream(.noError), on: stream, context) }
        }
        if canClose { closeAfterFlush(context) }
    }

    private func respond(_ result: Result<[UInt8], GRPCStatus>, on stream: HTTP2StreamID, _ context: ChannelHandlerContext) {
        switch result {
        case .success(let response):
            var data = context.channel.allocator.buffer(capacity: 5 + response.count)
            data.writeInteger(UInt8(0))
            data.writeInteger(UInt32(response.count))
            data.writeBytes(response)
            write(.headers(.init(headers: Self.responseHeaders)), on: stream, context)
            write(.data(.init(data: .byteBuffer(data))), on: stream, context)
            write(.headers(.init(headers: Self.okTrailers, endStream: true)), on: stream, context)
        case .failure(let status):
            write(.headers(.init(headers: Self.trailersOnly(status), endStream: true)), on: stream, context)
        }
    }

    /// A call answered later: written at once, unless the client has given up on it (or the connection).
    private func answered(_ stream: HTTP2StreamID, _ result: Result<[UInt8], GRPCStatus>) {
        guard let context, owed.remove(stream) != nil else { return }
        respond(result, on: stream, context)
        if canClose {
            closeAfterFlush(context)
        } else {
            flushIfNeeded(context)
        }
    }

    /// Shutting down, and every call answered (also those answered later).
    private var canClose: Bool { calls.canClose && owed.isEmpty }

    private func write(_ payload: HTTP2Frame.FramePayload, on stream: HTTP2StreamID, _ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(HTTP2Frame(streamID: stream, payload: payload)), promise: nil)
        needsFlush = true
    }

    private func flushIfNeeded(_ context: ChannelHandlerContext) {
        guard needsFlush else { return }
        needsFlush = false
        context.flush()
    }

    /// Shutdown, with every call answered: a final GOAWAY (the same last stream), then close once it and
    /// everything before it is written.
    private func closeAfterFlush(_ context: ChannelHandlerContext) {
        guard !closing else { return }
        closing = true
        needsFlush = false
        let goAway = HTTP2Frame(streamID: .rootStream, payload: .goAway(lastStreamID: lastStream, errorCode: .noError, opaqueData: nil))
        context.writeAndFlush(wrapOutboundOut(goAway)).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let window as NIOHTTP2WindowUpdatedEvent:
            if window.streamID == .rootStream, let size = window.inboundWindowSize,
                let increment = GRPCUnaryCalls.windowIncrement(inboundWindow: size)
            {
                write(.windowUpdate(windowSizeIncrement: increment), on: .rootStream, context)
            }
            context.fireUserInboundEventTriggered(event)
        case let closed as StreamClosedEvent:
            calls.streamClosed(closed.streamID)
            owed.remove(closed.streamID)
            if canClose { closeAfterFlush(context) }
        case is InputBudget.Exceeded:
            // This connection holds the most unparsed requests of all: it goes (Envoy reconnects).
            reportedInput = 0
            context.close(promise: nil)
        case is ChannelShouldQuiesceEvent:
            // Shutdown: tell the client which calls will still be answered (those it has started), answer
            // them, then close.
            calls.quiesce()
            if canClose {
                closeAfterFlush(context)
            } else {
                write(.goAway(lastStreamID: lastStream, errorCode: .noError, opaqueData: nil), on: .rootStream, context)
                flushIfNeeded(context)
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// A client that sends calls without reading the replies fills the socket's send buffer; then no more
    /// is read from it until it catches up, instead of buffering replies without bound.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A stream error (NIO has reset that stream) leaves the other calls running; after a connection
        // error NIO has sent GOAWAY and reads nothing more, so close. Once shutting down, NIO may not be able
        // to send that GOAWAY (ours named a lower last stream), so any error closes.
        logger.debug("envoy connection error", metadata: ["error": "\(error)", "connection_error": "\(connectionFailed)"])
        if connectionFailed || calls.quiescing { context.close(promise: nil) }
    }

    /// NIOHTTP2FrameDelegate: how a connection error shows (NIO's handler writes the GOAWAY itself).
    func wroteFrame(_ frame: HTTP2Frame) {
        if case .goAway(_, let code, _) = frame.payload, code != .noError { connectionFailed = true }
    }

    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]
    static let okTrailers: HPACKHeaders = ["grpc-status": "0"]

    /// A call that ends without a message: status and content type in one HEADERS frame.
    static func trailersOnly(_ status: GRPCStatus) -> HPACKHeaders {
        var headers: HPACKHeaders = [
            ":status": "200", "content-type": "application/grpc", "grpc-status": "\(status.code.rawValue)",
            "grpc-message": status.encodedMessage,
        ]
        if status.code == .unimplemented, status.message.hasPrefix("compression") {
            headers.add(name: "grpc-accept-encoding", value: "identity")
        }
        return headers
    }
}
