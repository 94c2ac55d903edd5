import NIOCore
import RateLimiting
import ShardStore
import WireProtocol

/// Everything one connection knows between reads, with no NIO channel in it: the unparsed input and the
/// encoded replies not yet written. Every request is decided as soon as it is parsed (under its shard's
/// lock), so replies are encoded in request order as they happen and flushed once per read burst. A
/// decider that answers later (shared state in another process) leaves a deferred reply in its place;
/// replies after it wait behind it, so every connection still gets its replies in request order. A struct
/// driven through a few mutating calls per burst, so the per-request work inside runs without the dynamic
/// exclusivity checks each touch of a class property would cost, and so it can be tested without a socket.
struct RequestProcessor {
    enum State {
        case open
        /// QUIT, a fatal error or a timeout was answered: write what came before, then close.
        case closingAfterReplies
    }

    let services: ConnectionServices
    let connectionID: Int
    /// This connection's copy of the rules and their counter slots, refreshed when the rule book's
    /// generation moves on.
    var rules: RuleBook.Edition
    let allocator: ByteBufferAllocator
    var state = State.open
    var input = ByteBuffer()
    var resp: RESPDecoder
    /// The RESP version `HELLO` selected; it changes only how `HELLO` and `CONFIG GET` are answered, since
    /// every other reply uses types that read the same in RESP2 and RESP3.
    var respVersion = 2
    /// Replies encoded during this burst, not yet written.
    var output: ByteBuffer
    /// The decision time for the current burst, read once per burst.
    var burstNow: Int64?
    /// Decisions in the current burst, and where its latency and error replies are counted.
    var decisionsInBurst = 0
    let loopMetrics: LoopMetrics
    /// Requests answered (or sent to the decider) so far: the timeouts tell by it that a partial request
    /// is a new one.
    var requestsAnswered: UInt64 = 0
    /// `AUTH` succeeded, or the server has no token.
    var authenticated: Bool
    /// Who is at the other end, for the log line of a failed `AUTH`.
    var peer: SocketAddress?
    /// Parsing stopped because a burst's replies reached `maxOutputPerBurst`, or `maxDeferred` answers are
    /// awaited; `input` may hold complete requests still to answer.
    var stalled = false
    /// Answers the decider owes, oldest first, each with the replies encoded after it.
    var deferred = CircularBuffer<DeferredReply>()
    /// `deferred.count`, kept as a plain integer: the handler reads it on every drain, and reading the
    /// buffer's own count there made the compiler copy the whole processor each time.
    var owed = 0
    /// Bytes of replies held behind owed answers: they count against a burst's output like written ones, so
    /// a client cannot make the connection buffer without bound while Redis is slow.
    var heldBytes = 0
    var nextTicket: UInt64 = 0
    /// This burst's STATS reply in each protocol, once one was asked for (see `statistics`).
    var burstStatistics: (line: ByteBuffer?, resp: ByteBuffer?) = (nil, nil)
    /// Where the decider sends what it owes.
    let waiter: any DecisionWaiter

    struct DeferredReply {
        let ticket: UInt64
        let dialect: WireDialect
        var result: ShardResult?
        /// Replies to the requests after this one and before the next deferred one.
        var following: ByteBuffer?
    }

    init(
        services: ConnectionServices, allocator: ByteBufferAllocator, loopMetrics: LoopMetrics,
        waiter: any DecisionWaiter
    ) {
        self.services = services
        self.waiter = waiter
        self.loopMetrics = loopMetrics
        self.allocator = allocator
        self.connectionID = services.statistics.connectionOpened()
        self.authenticated = services.auth == nil
        self.rules = services.ruleBook.current
        self.resp = services.respLimits
        self.output = allocator.buffer(capacity: 512)
    }

    /// Replies encoded in one go before the processor stops to let them be written; past it, complete
    /// requests wait in `input` (and the connection stops reading) until the client reads its replies.
    static let maxOutputPerBurst = 256 * 1024
    /// Answers awaited at once per connection; past it the connection stops reading until some arrive.
    static let maxDeferred = 4_096

    /// Answers the complete requests in bytes read from the client, up to `maxOutputPerBurst` of replies.
    /// Requests are parsed where NIO put them and only what is left is copied into the connection's own
    /// buffer, so NIO can reuse its receive buffer for the next read instead of allocating another.
    mutating func receive(_ incoming: inout ByteBuffer) {
        guard state == .open else { return }
        services.ruleBook.refresh(&rules)
        if input.readableBytes == 0 {
            processInput(&incoming)
            if incoming.readableBytes > 0, state == .open {
                input.clear()
                input.writeBuffer(&incoming)
            }
        } else {
            input.writeBuffer(&incoming)
            processBuffered()
        }
    }

    /// Goes on with requests left in `input` (after more bytes arrived, or after a stall).
    mutating func processBuffered() {
        guard state == .open else { return }
        recordBurst()
        var pending = input
        input = ByteBuffer()
        processInput(&pending)
        input = pending
        if input.readableBytes == 0 {
            input.clear()
        } else if input.readerIndex > 65_536 {
            input.discardReadBytes()
        }
    }

    /// Ends the burst. The caller then writes `output` if it has bytes, and calls `recycleOutput`.
    mutating func endBurst() {
        recordBurst()
    }

    /// Counts the time since the burst's first decision against each of its decisions (one clock read per
    /// burst, relaxed atomic adds on this event loop's own counters), and starts a new burst.
    private mutating func recordBurst() {
        if decisionsInBurst > 0, let started = burstNow {
            loopMetrics.record(burstNanos: max(0, services.clock.nanosecondsNow() - started), decisions: decisionsInBurst)
        }
        decisionsInBurst = 0
        burstNow = nil
        if burstStatistics.line != nil || burstStatistics.resp != nil { burstStatistics = (nil, nil) }
    }

    var hasOutput: Bool { output.readableBytes > 0 }

    /// Empties the output after it was written; when the channel has already sent it (the usual case, and
    /// provided the caller kept no copy) the storage is no longer shared and is reused without allocating.
    mutating func recycleOutput() {
        if output.capacity > 65_536 {
            // A big burst grew it; if the channel still holds it, `clear` would copy the whole capacity.
            output = allocator.buffer(capacity: 512)
        } else {
            output.clear()
        }
    }

    /// Memory the connection holds for input not yet parsed: its buffer while it holds any. An emptied
    /// buffer larger than 4 KiB is given back (so a flood's buffers do not stay with idle connections); a
    /// smaller one is kept for the next partial request, so ordinary pipelining allocates nothing.
    mutating func heldInputBytes() -> Int {
        guard input.readableBytes == 0 else { return input.capacity }
        if input.capacity > 4_096 { input = ByteBuffer() }
        return 0
    }

    /// The connection must give up its unparsed input (`InputBudget`): answered `ERR busy`, after every reply
    /// before it, and closed.
    mutating func shedInput() {
        giveUpHeldInput(ProtocolError(
            .busy, "too much unparsed input held across connections (max_input_buffer); closing the connection"))
    }

    /// Drops the input held and answers `error` in the protocol its first byte names, after every reply
    /// before it; the connection then closes.
    private mutating func giveUpHeldInput(_ error: ProtocolError) {
        guard state == .open else { return }
        let dialect: WireDialect = input.readableBytesView.first == UInt8(ascii: "*") ? .resp : .line
        input = ByteBuffer()
        stalled = false
        fail(error, dialect)
    }

    /// Part of a request is held, waiting for its rest (complete requests held by a stall are not).
    var holdsPartialRequest: Bool { state == .open && !stalled && input.readableBytes > 0 }

    /// The partial request held took `request_timeout`: answered `ERR timeout` (in the protocol its first
    /// byte names), after every reply before it, and the connection closes.
    mutating func timeOut(afterNanos nanos: Int64) {
        giveUpHeldInput(ProtocolError(
            .timeout, "request incomplete after \(WindowDuration.format(nanos)); closing the connection"))
    }

    /// Parsing waits for the decider, not for the client.
    var waitsForDecider: Bool { owed >= Self.maxDeferred || heldBytes >= Self.maxOutputPerBurst }

    mutating func reply(_ reply: Reply, _ dialect: WireDialect) {
        if case .error(let error) = reply { loopMetrics.countError(error.code) }
        guard owed == 0 else { return appendBehindDeferred { Self.encode(reply, dialect, into: &$0) } }
        switch dialect {
        case .line: output.writeLineReply(reply)
        case .resp: output.writeRESPReply(reply)
        }
    }

    /// A reply already encoded (in the right protocol), in its place among the others.
    mutating func replyEncoded(_ encoded: ByteBuffer) {
        var bytes = encoded
        guard owed == 0 else { return appendBehindDeferred { $0.writeBuffer(&bytes) } }
        output.writeBuffer(&bytes)
    }

    /// A reply that must wait behind an answer still owed: `write` adds it to the replies kept with the last
    /// deferred one, whose bytes count in `heldBytes`.
    private mutating func appendBehindDeferred(_ write: (inout ByteBuffer) -> Void) {
        let last = deferred.index(before: deferred.endIndex)
        var following = deferred[last].following ?? allocator.buffer(capacity: 64)
        deferred[last].following = nil
        let before = following.readableBytes
        write(&following)
        heldBytes += following.readableBytes - before
        deferred[last].following = following
    }

    static func encode(_ reply: Reply, _ dialect: WireDialect, into buffer: inout ByteBuffer) {
        switch dialect {
        case .line: buffer.writeLineReply(reply)
        case .resp: buffer.writeRESPReply(reply)
        }
    }

    /// The decider's answer to `ticket`: writes it, and every reply it held back that no other awaited
    /// answer still holds, to the output. Returns whether the output grew.
    @discardableResult
    mutating func resolve(ticket: UInt64, result: ShardResult) -> Bool {
        // Tickets are handed out in order, one per deferred reply, so the position follows from the first.
        guard let first = deferred.first, ticket >= first.ticket, ticket - first.ticket < UInt64(deferred.count) else {
            return false
        }
        let index = deferred.index(deferred.startIndex, offsetBy: Int(ticket - first.ticket))
        guard deferred[index].ticket == ticket, deferred[index].result == nil else { return false }
        deferred[index].result = result
        var grew = false
        while let first = deferred.first, let result = first.result {
            deferred.removeFirst()
            owed -= 1
            Self.encode(Reply(result), first.dialect, into: &output)
            if var following = first.following {
                heldBytes -= following.readableBytes
                output.writeBuffer(&following)
            }
            grew = true
        }
        return grew
    }
}
