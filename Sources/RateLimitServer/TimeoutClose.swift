import NIOCore

/// The timeouts as a handler of their own, for the listeners whose handlers are not ours to extend: the
/// HTTP/1 listeners (a request is incomplete from its first byte until its response is written) and the
/// gRPC listener's HTTP/2 (idle only: its frames interleave, so "a request" is a stream, which the gRPC
/// handler bounds by size instead). The client listener's own handler times itself. On an HTTP/1 listener
/// it also closes a request larger than the listener's `maxRequestBytes` before its response (NIO's HTTP
/// decoder would otherwise hold up to 80 KiB of headers per connection, and any body).
final class TimeoutClose: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = NIOAny

    private var lifecycle: ConnectionLifecycle
    private let interval: Int64?
    /// nil: requests are neither timed nor sized (HTTP/2).
    private let maxRequestBytes: Int?
    private let counts: TimeoutCounts
    private var activity = ConnectionActivity()
    private var awaitingResponse = false
    private var responses: UInt64 = 0
    /// Bytes read since the last response began, on a listener that times requests.
    private var requestBytes = 0
    private let inputBudget: InputBudget?
    private var timer: RepeatedTask?

    /// nil when there is nothing to watch: every timeout that applies is off, and requests are not sized.
    init?(_ timeouts: ConnectionTimeouts, maxRequestBytes: Int?, counts: TimeoutCounts, inputBudget: InputBudget? = nil) {
        let timesRequests = maxRequestBytes != nil
        self.inputBudget = inputBudget
        var timeouts = timeouts
        if !timesRequests { timeouts.requestNanos = 0 }
        guard timeouts.lookIntervalNanos != nil || timesRequests else { return nil }
        self.lifecycle = ConnectionLifecycle(timeouts: timeouts)
        self.interval = timeouts.lookIntervalNanos
        self.maxRequestBytes = maxRequestBytes
        self.counts = counts
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let interval else { return context.fireChannelActive() }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(
            initialDelay: .nanoseconds(interval), delay: .nanoseconds(interval)
        ) { _ in handler.value.look(bound.value) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.heard = true
        if let maxRequestBytes {
            awaitingResponse = true
            requestBytes += unwrapInboundIn(data).readableBytes
            guard requestBytes <= maxRequestBytes else {
                inputBudget?.countOversized()
                timer?.cancel()
                context.close(promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if awaitingResponse {
            awaitingResponse = false
            responses &+= 1
            requestBytes = 0
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { activity.drained = true }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        lifecycle.closed()
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func look(_ context: ChannelHandlerContext) {
        let action = lifecycle.look(on: context, &activity, requests: responses, partial: awaitingResponse)
        switch action {
        case nil:
            return
        case .failRequest:
            // An HTTP client waits for a status line it will not get: closing tells it the request failed.
            counts.add(.incompleteRequest)
        case .close(let timeout):
            counts.add(timeout)
        }
        timer?.cancel()
        context.close(promise: nil)
    }
}

extension ConnectionLifecycle {
    /// A look from a handler: `activity` (what it flagged since the last look) completed with what it knows
    /// now, the loop's clock read, and `activity` started afresh for the next period.
    mutating func look(
        on context: ChannelHandlerContext, _ activity: inout ConnectionActivity, requests: UInt64, partial: Bool
    ) -> TimeoutAction? {
        activity.requests = requests
        activity.partial = partial
        activity.repliesWaiting = !context.channel.isWritable
        defer { activity = ConnectionActivity() }
        return look(at: Int64(context.eventLoop.now.uptimeNanoseconds), activity)
    }
}
