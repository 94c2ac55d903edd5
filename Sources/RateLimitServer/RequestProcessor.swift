import NIOCore
import RateLimiting
import ShardStore
import WireProtocol

/// Everything one connection knows between reads, with no NIO channel in it: the unparsed input and the
/// encoded replies not yet written. Every request is decided as soon as it is parsed (under its shard's
/// lock), so replies are encoded in request order as they happen and flushed once per read burst. A struct
/// driven through a few mutating calls per burst, so the per-request work inside runs without the dynamic
/// exclusivity checks each touch of a class property would cost, and so it can be tested without a socket.
struct RequestProcessor {
    enum State {
        case open
        /// QUIT or a fatal error was seen: write what came before, then close.
        case closingAfterReplies
        case closed
    }

    let services: ConnectionServices
    let connectionID: Int
    /// This connection's copy of the rules, refreshed when the rule book's generation moves on.
    var rules: RuleSet
    var rulesGeneration: Int
    /// The counter slot of each rule in `rules` (see `RuleBook`).
    var ruleSlots: [Int]
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
    var inputClosed = false
    /// Parsing stopped because a burst's replies reached `maxOutputPerBurst`; `input` may hold complete
    /// requests still to answer.
    var stalled = false

    init(services: ConnectionServices, allocator: ByteBufferAllocator, loopMetrics: LoopMetrics) {
        self.services = services
        self.loopMetrics = loopMetrics
        self.allocator = allocator
        self.connectionID = services.statistics.connectionOpened()
        let edition = services.ruleBook.current
        (rules, rulesGeneration, ruleSlots) = (edition.rules, edition.generation, edition.slots)
        self.resp = services.respLimits
        self.output = allocator.buffer(capacity: 512)
    }

    /// Replies encoded in one go before the processor stops to let them be written; past it, complete
    /// requests wait in `input` (and the connection stops reading) until the client reads its replies.
    static let maxOutputPerBurst = 256 * 1024

    /// Answers the complete requests in bytes read from the client, up to `maxOutputPerBurst` of replies.
    /// Requests are parsed where NIO put them and only what is left is copied into the connection's own
    /// buffer, so NIO can reuse its receive buffer for the next read instead of allocating another.
    mutating func receive(_ incoming: inout ByteBuffer) {
        guard state == .open else { return }
        if services.ruleBook.generation != rulesGeneration {
            let edition = services.ruleBook.current
            (rules, rulesGeneration, ruleSlots) = (edition.rules, edition.generation, edition.slots)
        }
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

    /// Whether the connection should close once the output is written: after QUIT or a fatal error, or once
    /// the client has closed its side and every request it sent is answered.
    var isFinished: Bool {
        state == .closingAfterReplies || (inputClosed && !stalled)
    }

    mutating func reply(_ reply: Reply, _ dialect: WireDialect) {
        if case .error(let error) = reply { loopMetrics.countError(error.code) }
        switch dialect {
        case .line: output.writeLineReply(reply)
        case .resp: output.writeRESPReply(reply)
        }
    }
}
