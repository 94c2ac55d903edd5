import Logging
import NIOCore
import ShardStore
import WireProtocol

/// Serves one client connection: feeds each read burst to its `RequestProcessor`, which decides requests
/// for the shard this event loop owns inline and gathers the rest into one batch per shard; hands those
/// batches to their shards' workers; and writes replies back in request order with one flush per burst.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    var processor: RequestProcessor
    let logger: Logger
    var readPending = false
    var selfOnLoop: NIOLoopBound<ConnectionHandler>?
    var context: ChannelHandlerContext?

    init(services: ConnectionServices, localShard: Int, logger: Logger) {
        self.processor = RequestProcessor(services: services, localShard: localShard)
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.selfOnLoop = NIOLoopBound(self, eventLoop: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        processor.state = .closed
        self.context = nil
        self.selfOnLoop = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        processor.receive(&incoming)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        dispatchBatches()
        writeReadyReplies()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will (e.g. `nc -N`): answer everything it sent, then close. A trailing
            // partial line is not a request.
            processor.inputClosed = true
            dispatchBatches()
            writeReadyReplies()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Batches already handed to workers still run (their requests were sent); their replies are dropped.
        processor.state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        processor.state = .closed
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if mustPauseReading(context) {
            readPending = true
        } else {
            context.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        resumeReadingIfPossible()
        context.fireChannelWritabilityChanged()
    }

    /// Hands each per-shard batch of this burst to its worker; the answer comes back on this loop.
    private func dispatchBatches() {
        guard let selfOnLoop, let context else { return }
        let origin = context.eventLoop
        let workers = processor.services.workers
        processor.endBurst { shard, batch in
            workers[shard].submit(batch, replyOn: origin) { answered in
                selfOnLoop.value.receive(answered)
            }
        }
    }

    private func receive(_ batch: ShardBatch) {
        processor.receive(answered: batch)
        writeReadyReplies()
    }

    /// Writes the answered prefix of the replies with one flush, then closes if the connection is done.
    private func writeReadyReplies() {
        guard processor.state != .closed, let context else { return }
        var out: ByteBuffer?
        processor.encodeReadyReplies(into: &out, allocator: context.channel.allocator)
        let finished = processor.isFinished
        if let out {
            if finished {
                processor.state = .closed
                let written = context.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(wrapOutboundOut(out), promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        } else if finished {
            processor.state = .closed
            context.close(promise: nil)
            return
        }
        resumeReadingIfPossible()
    }

    private func mustPauseReading(_ context: ChannelHandlerContext) -> Bool {
        processor.replies.count >= processor.services.maxPendingReplies || !context.channel.isWritable
    }

    private func resumeReadingIfPossible() {
        guard readPending, let context, !mustPauseReading(context) else { return }
        readPending = false
        context.read()
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
