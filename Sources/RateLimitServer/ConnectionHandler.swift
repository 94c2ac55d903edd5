import Logging
import NIOCore
import ShardStore
import WireProtocol

/// Serves one client connection: feeds each read to its `RequestProcessor`, which answers every complete
/// request at once, and writes the replies of a read burst with one flush.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var processor: RequestProcessor
    private let logger: Logger
    /// A read NIO asked for while the client was not reading its replies.
    private var readPending = false

    init(services: ConnectionServices, allocator: ByteBufferAllocator, logger: Logger) {
        self.processor = RequestProcessor(services: services, allocator: allocator)
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        processor.receive(&incoming)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will (e.g. `nc -N`): answer everything it sent, then close. A trailing
            // partial line is not a request.
            processor.inputClosed = true
            flush(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        processor.state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        processor.state = .closed
        context.close(promise: nil)
    }

    /// A client that pipelines without reading its replies fills the socket's send buffer; then the server
    /// stops reading from it until it catches up, instead of buffering replies without bound.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if readPending, context.channel.isWritable {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    /// Writes this burst's replies with one flush, then closes if the connection is done.
    private func flush(_ context: ChannelHandlerContext) {
        guard processor.state != .closed else { return }
        processor.endBurst()
        guard processor.isFinished else {
            if processor.hasOutput {
                // No local copy of the buffer is kept, so once the channel has sent it the processor's
                // output is uniquely owned again and its storage is reused.
                context.writeAndFlush(wrapOutboundOut(processor.output), promise: nil)
                processor.recycleOutput()
            }
            return
        }
        processor.state = .closed
        guard processor.hasOutput else {
            context.close(promise: nil)
            return
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(processor.output), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
