import Atomics
import Logging
import NIOCore
import NIOTLS
import ShardStore
import Synchronization
import WireProtocol

/// Serves one client connection: feeds each read to its `RequestProcessor`, which answers every complete
/// request at once, and writes the replies of a read burst with one flush.
final class ConnectionHandler: ChannelDuplexHandler, DeferredAnswerReceiver {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var processor: RequestProcessor
    private var lifecycle: ConnectionLifecycle
    private let logger: Logger
    /// Set while `drain` runs: a write can change writability and call back into the handler, which must
    /// not write the same output a second time.
    private var draining = false
    /// A drain is due at the end of the loop's turn (answers the decider owed have come).
    private var drainScheduled = false
    /// Where a decider that answers later sends its answers; it brings them back to this handler's loop.
    private let waiter: LoopWaiter<ConnectionHandler>
    private var context: ChannelHandlerContext?

    /// What the timeouts look at: flags set as things happen, so a read costs no clock read.
    private var activity = ConnectionActivity()
    private let timeouts: ConnectionTimeouts
    private let timeoutCounts: TimeoutCounts?
    private var timer: RepeatedTask?
    /// With TLS: the handshake is not done yet. It is timed like a request, and a connection that closes
    /// before it ends (plaintext, a failed handshake, a timeout) is counted in `tlsFailures`.
    private var handshakePending: Bool
    private let tlsFailures: ManagedAtomic<Int>?
    private let inputBudget: InputBudget?
    /// What this connection last told `inputBudget` it holds.
    private var reportedInput = 0

    init(
        services: ConnectionServices, allocator: ByteBufferAllocator, loopMetrics: LoopMetrics, eventLoop: any EventLoop,
        logger: Logger, timeouts: ConnectionTimeouts = .never, timeoutCounts: TimeoutCounts? = nil,
        tlsFailures: ManagedAtomic<Int>? = nil, inputBudget: InputBudget? = nil
    ) {
        self.inputBudget = inputBudget
        self.tlsFailures = tlsFailures
        self.handshakePending = tlsFailures != nil
        let waiter = LoopWaiter<ConnectionHandler>(eventLoop: eventLoop)
        self.waiter = waiter
        self.processor = RequestProcessor(
            services: services, allocator: allocator, loopMetrics: loopMetrics, waiter: waiter)
        self.lifecycle = ConnectionLifecycle(timeouts: timeouts)
        self.timeouts = timeouts
        self.timeoutCounts = timeoutCounts
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if processor.services.auth != nil { processor.peer = context.channel.remoteAddress }
        waiter.attach(self)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let interval = timeouts.lookIntervalNanos {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleRepeatedTask(
                initialDelay: .nanoseconds(interval), delay: .nanoseconds(interval)
            ) { _ in handler.value.look() }
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
        waiter.close()
    }

    /// An answer the decider owed, on this handler's event loop: written with whatever it held back. The
    /// write waits for the end of the loop's turn, so that the answers one reply from Redis brings go out
    /// together.
    func resolved(ticket: UInt64, result: ShardResult) {
        guard let context, !lifecycle.isClosed else { return }
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
        activity.heard = true
        var incoming = unwrapInboundIn(data)
        processor.receive(&incoming)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        drain(context)
        reportInput(context)
    }

    /// Tells the input budget what this connection holds, when worth it (see `InputBudget.worthReporting`).
    private func reportInput(_ context: ChannelHandlerContext) {
        guard let inputBudget else { return }
        let held = lifecycle.isClosed ? 0 : processor.heldInputBytes()
        guard InputBudget.worthReporting(held, after: reportedInput) else { return }
        reportedInput = held
        inputBudget.hold(held, by: context.channel)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will (e.g. `nc -N`): answer everything it sent, then close. A trailing
            // partial line is not a request.
            lifecycle.inputClosed()
            drain(context)
            return
        }
        if event is InputBudget.Exceeded {
            processor.shedInput()
            reportedInput = 0
            drain(context)
            return
        }
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            handshakePending = false
            return
        }
        if event is ChannelShouldQuiesceEvent {
            // The server is shutting down: read nothing more, answer every request already read (including
            // any held back by a stall), then close once the replies are written.
            lifecycle.quiesce()
            drain(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if handshakePending { tlsFailures?.wrappingIncrement(ordering: .relaxed) }
        lifecycle.closed()
        reportInput(context)
        processor.services.statistics.connectionClosed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        lifecycle.closed()
        context.close(promise: nil)
    }

    /// A client that pipelines without reading its replies fills the socket's send buffer; then the server
    /// stops reading from it (and answering what it has read) until it catches up, instead of buffering
    /// replies without bound.
    func read(context: ChannelHandlerContext) {
        if lifecycle.readRequested(canRead: context.channel.isWritable && !processor.stalled) {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            activity.drained = true
            drain(context)
        }
        context.fireChannelWritabilityChanged()
    }

    /// Writes this burst's replies with one flush, answers requests held back by a stall while the client
    /// keeps reading, closes once the connection is done, and otherwise resumes reading if it was paused.
    private func drain(_ context: ChannelHandlerContext) {
        guard !lifecycle.isClosed, !draining else { return }
        draining = true
        defer { draining = false }
        processor.endBurst()
        writeOutput(context)
        while processor.stalled, context.channel.isWritable, !processor.waitsForDecider {
            processor.processBuffered()
            writeOutput(context)
        }
        let progress = ConnectionLifecycle.Progress(
            ended: processor.state == .closingAfterReplies, stalled: processor.stalled, owed: processor.owed)
        switch lifecycle.drained(progress, canRead: context.channel.isWritable && !processor.stalled) {
        case .closeAfterWrites: closeAfterWrites(context)
        case .read: context.read()
        case .wait: break
        }
    }

    /// Every half of the shortest timeout: closes the connection if one has run out.
    private func look() {
        guard let context else { return }
        let action = lifecycle.look(
            on: context, &activity, requests: processor.requestsAnswered,
            partial: processor.holdsPartialRequest || handshakePending)
        switch action {
        case nil:
            return
        case .failRequest where handshakePending:
            // Nothing can be said before the handshake: the client is simply closed.
            timeoutCounts?.add(.incompleteRequest)
            context.close(promise: nil)
        case .failRequest:
            timeoutCounts?.add(.incompleteRequest)
            processor.timeOut(afterNanos: timeouts.requestNanos)
            drain(context)
        case .close(let timeout):
            timeoutCounts?.add(timeout)
            context.close(promise: nil)
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
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
