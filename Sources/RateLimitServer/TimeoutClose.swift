import NIOCore

/// The timeouts as a handler of their own, for the listeners whose handlers are not ours to extend: the
/// metrics listener's HTTP/1 (a request is incomplete from its first byte until its response is written)
/// and the gRPC listener's HTTP/2 (idle only: its frames interleave, so "a request" is a stream, which the
/// gRPC handler bounds by size instead). The client listener's own handler times itself.
final class TimeoutClose: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    private var lifecycle: ConnectionLifecycle
    private let interval: Int64
    private let timesRequests: Bool
    private let counts: TimeoutCounts
    private var activity = ConnectionActivity()
    private var awaitingResponse = false
    private var responses: UInt64 = 0
    private var timer: RepeatedTask?

    /// nil when every timeout that applies is off.
    init?(_ timeouts: ConnectionTimeouts, timesRequests: Bool, counts: TimeoutCounts) {
        var timeouts = timeouts
        if !timesRequests { timeouts.requestNanos = 0 }
        guard let interval = timeouts.lookIntervalNanos else { return nil }
        self.lifecycle = ConnectionLifecycle(timeouts: timeouts)
        self.interval = interval
        self.timesRequests = timesRequests
        self.counts = counts
    }

    func channelActive(context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(
            initialDelay: .nanoseconds(interval), delay: .nanoseconds(interval)
        ) { _ in handler.value.look(bound.value) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity.heard = true
        awaitingResponse = timesRequests
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if awaitingResponse {
            awaitingResponse = false
            responses &+= 1
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
        activity.requests = responses
        activity.partial = awaitingResponse
        activity.repliesWaiting = !context.channel.isWritable
        let action = lifecycle.look(at: Int64(context.eventLoop.now.uptimeNanoseconds), activity)
        activity = ConnectionActivity()
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
