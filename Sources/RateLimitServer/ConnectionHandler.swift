import Logging
import NIOCore
import ShardStore
import Synchronization
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
    /// Set while `drain` runs: a write can change writability and call back into the handler, which must
    /// not write the same output a second time.
    private var draining = false
    /// A drain is due at the end of the loop's turn (answers the decider owed have come).
    private var drainScheduled = false
    /// The server is shutting down: no more reads.
    private var quiescing = false
    /// Where a decider that answers later sends its answers; it brings them back to this handler's loop.
    private let waiter: ConnectionWaiter
    private var context: ChannelHandlerContext?

    /// Closes the connection when it has sent nothing for the idle timeout (nil: never).
    private let idle: IdleWatch?

    init(
        services: ConnectionServices, allocator: ByteBufferAllocator, loopMetrics: LoopMetrics, eventLoop: any EventLoop,
        logger: Logger, idle: IdleWatch? = nil
    ) {
        self.idle = idle
        let waiter = ConnectionWaiter(eventLoop: eventLoop)
        self.waiter = waiter
        self.processor = RequestProcessor(
            services: services, allocator: allocator, loopMetrics: loopMetrics, waiter: waiter)
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        waiter.handler = self
    }

    func channelActive(context: ChannelHandlerContext) {
        idle?.start(context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idle?.stop()
        self.context = nil
        waiter.handler = nil
        waiter.open.store(false, ordering: .relaxed)
    }

    /// An answer the decider owed, on this handler's event loop: written with whatever it held back. The
    /// write waits for the end of the loop's turn, so that the answers one reply from Redis brings go out
    /// together.
    func resolved(ticket: UInt64, result: ShardResult) {
        guard let context, processor.state != .closed else { return }
        processor.resolve(ticket: ticket, result: result)
        guard !drainScheduled else { return }
        drainScheduled = true
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute { handler.value.scheduledDrain() }
    }

    private func scheduledDrain() {
        drainScheduled = false
        guard let context else { return }
        drain(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        idle?.heard = true
        var incoming = unwrapInboundIn(data)
        processor.receive(&incoming)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        drain(context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will (e.g. `nc -N`): answer everything it sent, then close. A trailing
            // partial line is not a request.
            processor.inputClosed = true
            drain(context)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            // The server is shutting down: read nothing more, answer every request already read (including
            // any held back by a stall), then close once the replies are written.
            quiescing = true
            processor.inputClosed = true
            drain(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        processor.state = .closed
        processor.services.statistics.connectionClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        processor.state = .closed
        context.close(promise: nil)
    }

    /// A client that pipelines without reading its replies fills the socket's send buffer; then the server
    /// stops reading from it (and answering what it has read) until it catches up, instead of buffering
    /// replies without bound.
    func read(context: ChannelHandlerContext) {
        guard !quiescing else { return }
        if context.channel.isWritable, !processor.stalled {
            context.read()
        } else {
            readPending = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            drain(context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Writes this burst's replies with one flush, answers requests held back by a stall while the client
    /// keeps reading, closes once the connection is done, and otherwise resumes reading if it was paused.
    private func drain(_ context: ChannelHandlerContext) {
        guard processor.state != .closed, !draining else { return }
        draining = true
        defer { draining = false }
        processor.endBurst()
        writeOutput(context)
        while processor.stalled, context.channel.isWritable, !processor.waitsForDecider {
            processor.processBuffered()
            writeOutput(context)
        }
        if processor.isFinished {
            closeAfterWrites(context)
        } else if readPending, context.channel.isWritable, !processor.stalled {
            readPending = false
            context.read()
        }
    }

    private func writeOutput(_ context: ChannelHandlerContext) {
        guard processor.hasOutput else { return }
        // No local copy of the buffer is kept, so once the channel has sent it the processor's output is
        // uniquely owned again and its storage is reused.
        context.writeAndFlush(wrapOutboundOut(processor.output), promise: nil)
        processor.recycleOutput()
    }

    /// Closes once everything written so far has gone out: an empty write completes after every earlier
    /// one, whereas closing at once would discard replies still queued.
    private func closeAfterWrites(_ context: ChannelHandlerContext) {
        processor.state = .closed
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}

/// Takes a connection's deferred answers from whichever thread the decider answers on, and hands them to
/// the connection's handler on its event loop; a connection closed meanwhile drops them.
final class ConnectionWaiter: DecisionWaiter, @unchecked Sendable {
    // @unchecked: `handler` is only read and written on `eventLoop`.
    let eventLoop: any EventLoop
    /// Strong, and cleared when the handler leaves the pipeline: a weak reference would give the handler a
    /// side table, which makes every retain and release of it (NIO does several per read) take the slow path.
    var handler: ConnectionHandler?
    /// Cleared when the connection is gone, so that an answer owed to it is dropped here rather than sent to
    /// an event loop that may have shut down since.
    let open = Atomic<Bool>(true)

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Always through the loop's task queue, even from the loop itself: the decider may answer while the
    /// handler is still inside the call that asked (a request decided by `on_error` at once).
    func resolve(ticket: UInt64, result: ShardResult) {
        guard open.load(ordering: .relaxed) else { return }
        eventLoop.execute { [self] in handler?.resolved(ticket: ticket, result: result) }
    }
}
