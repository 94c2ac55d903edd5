import NIOCore
import RateLimiting
import ShardStore
import WireProtocol

/// Everything one connection knows between reads, with no NIO channel in it: the unparsed input, the
/// replies owed in request order, and the batches being gathered for other shards. A struct driven through
/// a few mutating calls per read burst, so the per-request work inside runs without the dynamic
/// exclusivity checks that each touch of a class property would cost, and so it can be tested without a
/// socket.
struct RequestProcessor {
    enum State {
        case open
        /// QUIT or a fatal error was seen: answer what came before, then close.
        case closingAfterReplies
        case closed
    }

    let services: ConnectionServices
    /// The shard owned by this connection's event loop, or -1 if none is (then every request hops).
    let localShard: Int
    let connectionID: Int
    var state = State.open
    var input = ByteBuffer()
    var resp: RESPDecoder
    /// The RESP version `HELLO` selected; it changes only how `HELLO` and `CONFIG GET` are answered, since
    /// every other reply uses types that read the same in RESP2 and RESP3.
    var respVersion = 2
    var replies = ReplyQueue()
    /// Requests for other shards gathered during the current burst, indexed by shard.
    var outgoing: [ShardBatch]
    /// Answered batches kept for reuse.
    var spareBatches: [ShardBatch] = []
    var batchesInFlight = 0
    /// The decision time for the current burst, read once per burst.
    var burstNow: Int64?
    var inputClosed = false

    init(services: ConnectionServices, localShard: Int) {
        self.services = services
        self.localShard = localShard
        self.connectionID = services.connectionIDs.next()
        self.resp = services.respLimits
        self.outgoing = (0..<services.workers.count).map { _ in ShardBatch() }
    }

    /// Adds bytes read from the client and handles every complete request in them.
    mutating func receive(_ incoming: inout ByteBuffer) {
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

    /// Ends the burst: hands each non-empty per-shard batch to `dispatch` and starts a fresh one.
    mutating func endBurst(_ dispatch: (Int, ShardBatch) -> Void) {
        burstNow = nil
        for shard in outgoing.indices where !outgoing[shard].isEmpty {
            let batch = outgoing[shard]
            outgoing[shard] = spareBatches.popLast() ?? ShardBatch()
            batchesInFlight += 1
            dispatch(shard, batch)
        }
    }

    /// Files the answers of a batch that came back from its shard.
    mutating func receive(answered batch: ShardBatch) {
        batchesInFlight -= 1
        guard state != .closed else { return }
        for (request, result) in zip(batch.requests, batch.results) {
            replies.fill(slot: request.slot, with: Reply(result))
        }
        // Keep the batch's grown arrays for the next burst instead of allocating new ones.
        if spareBatches.count < outgoing.count {
            batch.removeAll()
            spareBatches.append(batch)
        }
    }

    /// Encodes the answered prefix of the replies into `out` (allocated on first use).
    mutating func encodeReadyReplies(into out: inout ByteBuffer?, allocator: ByteBufferAllocator) {
        while let (reply, dialect) = replies.popReady() {
            if out == nil { out = allocator.buffer(capacity: 256) }
            switch dialect {
            case .line: out!.writeLineReply(reply)
            case .resp: out!.writeRESPReply(reply)
            }
        }
    }

    /// Whether everything owed has been answered and the connection should now close.
    var isFinished: Bool {
        replies.isEmpty && batchesInFlight == 0 && (state == .closingAfterReplies || inputClosed)
    }
}
