import NIOCore
import ShardStore
import Synchronization

/// What takes a connection's deferred answers on its event loop.
public protocol DeferredAnswerReceiver: AnyObject, SendableMetatype {
    func resolved(ticket: UInt64, result: ShardResult)
}

/// Takes a connection's deferred answers from whichever thread the decider answers on, and hands them to
/// the connection's handler on its event loop; a connection closed meanwhile drops them.
public final class LoopWaiter<Receiver: DeferredAnswerReceiver>: DecisionWaiter, @unchecked Sendable {
    // @unchecked: `receiver` is only read and written on `eventLoop`.
    let eventLoop: any EventLoop
    /// Strong, and cleared when the handler leaves the pipeline: a weak reference would give the handler a
    /// side table, which makes every retain and release of it (NIO does several per read) take the slow path.
    private var receiver: Receiver?
    /// Cleared when the connection is gone, so that an answer owed to it is dropped here rather than sent to
    /// an event loop that may have shut down since.
    private let open = Atomic<Bool>(true)

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Always through the loop's task queue, even from the loop itself: the decider may answer while the
    /// handler is still inside the call that asked (a request decided by `on_error` at once).
    public func resolve(ticket: UInt64, result: ShardResult) {
        guard open.load(ordering: .relaxed) else { return }
        eventLoop.execute { [self] in receiver?.resolved(ticket: ticket, result: result) }
    }

    /// Where answers go from now on: the connection's handler, as it joins the pipeline.
    public func attach(_ receiver: Receiver) {
        eventLoop.assertInEventLoop()
        self.receiver = receiver
    }

    /// The connection is gone: drop the receiver and every answer still owed.
    public func close() {
        eventLoop.assertInEventLoop()
        receiver = nil
        open.store(false, ordering: .relaxed)
    }
}
