import NIOCore
import NIOHTTP1
import RateLimitServer
import ShardStore

/// One connection of the HTTP listener, behind NIO's HTTP/1 server pipeline (which holds a pipelined
/// request back until the response before it has ended, and closes on a protocol error or when shutdown
/// asks). Each request is answered once its end has arrived; one the decider answers later waits for it.
final class CheckHTTPHandler: ChannelInboundHandler, DeferredAnswerReceiver {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        /// The head has come; the body (ignored) and end may still come.
        case reading(HTTPRequestHead)
        /// The decider owes the answer to `ticket`.
        case deciding(HTTPRequestHead, ticket: UInt64, denyStatus: Int)
    }

    private var state = State.idle
    private let checker: HTTPChecker
    private var rules: RuleBook.Edition
    private let waiter: LoopWaiter<CheckHTTPHandler>
    private var nextTicket: UInt64 = 0
    private var context: ChannelHandlerContext?

    init(checker: HTTPChecker, eventLoop: any EventLoop) {
        self.checker = checker
        self.rules = checker.ruleBook.current
        self.waiter = LoopWaiter(eventLoop: eventLoop)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        waiter.receiver = self
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        waiter.close()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            state = .reading(head)
        case .body:
            // A check has no body; TimeoutClose bounds what one may send.
            break
        case .end:
            guard case .reading(let head) = state else { return }
            let ticket = nextTicket
            nextTicket &+= 1
            switch checker.answer(
                head, peer: context.channel.remoteAddress, rules: &rules, ticket: ticket, waiter: waiter)
            {
            case .respond(let response):
                respond(response, to: head, context: context)
            case .later(let denyStatus):
                state = .deciding(head, ticket: ticket, denyStatus: denyStatus)
            }
        }
    }

    func resolved(ticket: UInt64, result: ShardResult) {
        guard case .deciding(let head, ticket, let denyStatus) = state, let context else { return }
        respond(HTTPChecker.response(to: result, denyStatus: denyStatus), to: head, context: context)
    }

    private func respond(_ response: CheckResponse, to head: HTTPRequestHead, context: ChannelHandlerContext) {
        state = .idle
        let body = Array(response.body.utf8)
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.count)")
        // A decision holds only for the moment it was made.
        headers.add(name: "Cache-Control", value: "no-store")
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { written.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) } }
    }
}

@available(*, unavailable)
extension CheckHTTPHandler: Sendable {}
