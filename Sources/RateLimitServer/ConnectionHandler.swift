import Logging
import NIOCore
import ShardStore
import WireProtocol

/// Serves one client connection: frames and parses each read burst, decides requests for the shard this
/// event loop owns inline, hands the rest to their shards' workers in one batch per shard per burst, and
/// writes replies back in request order with one flush per burst.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        case open
        /// QUIT or a fatal error was seen: answer what came before, then close.
        case closingAfterReplies
        case closed
    }

    let services: ConnectionServices
    /// The shard owned by this connection's event loop, or -1 if none is (then every request hops).
    let localShard: Int
    let logger: Logger

    var state = State.open
    var input = ByteBuffer()
    var resp: RESPDecoder
    /// The RESP version `HELLO` selected; it changes only how `HELLO` itself is answered, since every other
    /// reply uses types that read the same in RESP2 and RESP3.
    var respVersion = 2
    let connectionID: Int
    var replies = ReplyQueue()
    /// Requests for other shards gathered during the current burst, indexed by shard.
    var outgoing: [ShardBatch]
    /// Answered batches kept for reuse.
    var spareBatches: [ShardBatch] = []
    var batchesInFlight = 0
    /// The decision time for the current burst, read once per burst.
    var burstNow: Int64?
    var inputClosed = false
    var readPending = false
    var selfOnLoop: NIOLoopBound<ConnectionHandler>?
    var context: ChannelHandlerContext?

    init(services: ConnectionServices, localShard: Int, logger: Logger) {
        self.services = services
        self.localShard = localShard
        self.logger = logger
        self.outgoing = (0..<services.workers.count).map { _ in ShardBatch() }
        self.resp = services.respLimits
        self.connectionID = services.connectionIDs.next()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.selfOnLoop = NIOLoopBound(self, eventLoop: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        state = .closed
        self.context = nil
        self.selfOnLoop = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        guard state == .open else { return }
        if input.readableBytes == 0 {
            input = incoming
        } else {
            input.writeBuffer(&incoming)
        }
        processInput()
        if input.readableBytes == 0 {
            input.clear()
        } else if input.readerIndex > 65_536 {
            input.discardReadBytes()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        dispatchBatches()
        burstNow = nil
        writeReadyReplies()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // The client sent all it will (e.g. `nc -N`): answer everything it sent, then close. A trailing
            // partial line is not a request.
            inputClosed = true
            dispatchBatches()
            writeReadyReplies()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Batches already handed to workers still run (their requests were sent); their replies are dropped.
        state = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error", metadata: ["error": "\(error)"])
        state = .closed
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

    private func mustPauseReading(_ context: ChannelHandlerContext) -> Bool {
        replies.count >= services.maxPendingReplies || !context.channel.isWritable
    }

    func resumeReadingIfPossible() {
        guard readPending, let context, !mustPauseReading(context) else { return }
        readPending = false
        context.read()
    }
}

@available(*, unavailable)
extension ConnectionHandler: Sendable {}
