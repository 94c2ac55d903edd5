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
        waiter.attach(self)
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
        // A decision holds only for the moment it was made.
        PlainHTTPResponse(
            status: response.status, headers: response.headers + [("Cache-Control", "no-store")],
            body: Array(response.body.utf8)
        ).write(answering: head, on: context)
    }
}

@available(*, unavailable)
extension CheckHTTPHandler: Sendable {}
