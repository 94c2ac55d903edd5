import Histogram
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

func monotonicNanos() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// Where a connection's keys come from: a random distribution for load runs, or a disjoint slice of a
/// sequence (key `first`, `first + stride`, … below `end`) for filling the daemon with distinct keys.
enum KeySource: Sendable {
    case random(KeyChooser)
    case sequence(next: Int, stride: Int, end: Int)
}

/// One closed-loop client connection: keeps `pipeline` requests outstanding, refills as replies arrive
/// (one write and flush per read), and records each reply's latency from the moment its request was sent.
final class LoadConnection: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let pipeline: Int
    private let writer: RequestWriter
    private var keys: KeySource
    private let counters: LiveCounters
    private let done: EventLoopPromise<ConnectionResult>
    private var result = ConnectionResult()
    private var sendTimes = CircularBuffer<UInt64>(initialCapacity: 64)
    private var pending = ByteBuffer()
    private var repliesThisRead = 0
    /// RESP only: the integer lines still to skip in the current array reply.
    private var respLinesToSkip = 0
    /// RESP only: an array header was read; its next line says ALLOW or DENY.
    private var awaitingArrayHead = false

    init(pipeline: Int, writer: RequestWriter, keys: KeySource, counters: LiveCounters, done: EventLoopPromise<ConnectionResult>) {
        self.pipeline = pipeline
        self.writer = writer
        self.keys = keys
        self.counters = counters
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        send(pipeline, context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        pending.writeBuffer(&incoming)
        let now = monotonicNanos()
        let recording = counters.recording.load(ordering: .relaxed)
        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let first = pending.getInteger(at: pending.readerIndex, as: UInt8.self) ?? 0
            let second = pending.getInteger(at: pending.readerIndex + 1, as: UInt8.self) ?? 0
            pending.moveReaderIndex(to: newline + 1)
            guard let kind = classify(first: first, second: second) else { continue }
            let sentAt = sendTimes.removeFirst()
            repliesThisRead += 1
            guard recording else { continue }
            switch kind {
            case .allowed: result.allowed += 1
            case .denied: result.denied += 1
            case .error: result.errors += 1
            case .other: result.other += 1
            }
            _ = result.latency.record(now &- sentAt)
        }
        pending.discardReadBytes()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        counters.replies.add(repliesThisRead, ordering: .relaxed)
        let answered = repliesThisRead
        repliesThisRead = 0
        if !counters.stopping.load(ordering: .relaxed) {
            send(answered, context: context)
        }
        if sendTimes.isEmpty {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.succeed(result)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private enum ReplyKind { case allowed, denied, error, other }

    /// Classifies a reply line; nil for a line that is only part of a RESP array reply (`*3`, then
    /// `+ALLOW` or `+DENY`, which classifies it, then two integers to skip).
    private func classify(first: UInt8, second: UInt8) -> ReplyKind? {
        if respLinesToSkip > 0 {
            respLinesToSkip -= 1
            return nil
        }
        if awaitingArrayHead {
            awaitingArrayHead = false
            respLinesToSkip = 2
            switch second {
            case UInt8(ascii: "A"): return .allowed
            case UInt8(ascii: "D"): return .denied
            default: return .other
            }
        }
        switch first {
        case UInt8(ascii: "A"): return .allowed
        case UInt8(ascii: "D"): return .denied
        case UInt8(ascii: "E"), UInt8(ascii: "-"): return .error
        case UInt8(ascii: "*"):
            awaitingArrayHead = true
            return nil
        default: return .other
        }
    }

    private func send(_ count: Int, context: ChannelHandlerContext) {
        guard count > 0 else { return }
        var buffer = context.channel.allocator.buffer(capacity: count * 48)
        let now = monotonicNanos()
        for _ in 0..<count {
            guard let key = nextKey() else { break }
            writer.write(key: key, into: &buffer)
            sendTimes.append(now)
        }
        if buffer.readableBytes > 0 {
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }

    private func nextKey() -> Int? {
        switch keys {
        case .random(var chooser):
            let key = chooser.next()
            keys = .random(chooser)
            return key
        case .sequence(let next, let stride, let end):
            guard next < end else { return nil }
            keys = .sequence(next: next + stride, stride: stride, end: end)
            return next
        }
    }
}

@available(*, unavailable)
extension LoadConnection: Sendable {}
