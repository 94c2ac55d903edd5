import NIOCore

/// Binds one `Shard` to the event loop that owns it. Every touch of the shard happens on that loop: work
/// from a connection on the same loop runs inline (no hop at all), work from other loops arrives as one
/// `ShardBatch` per read burst through `submit`.
public final class ShardWorker: Sendable {
    public let index: Int
    public let eventLoop: any EventLoop
    private let shard: NIOLoopBoundBox<Shard>
    private let clock: any DecisionClock

    public init(index: Int, eventLoop: any EventLoop, clock: any DecisionClock) {
        self.index = index
        self.eventLoop = eventLoop
        self.clock = clock
        // Created off the loop and moved in: nothing else ever holds a reference to this shard.
        self.shard = NIOLoopBoundBox.makeBoxSendingValue(Shard(), eventLoop: eventLoop)
    }

    /// The shard itself, for callers already on its event loop (checked: a wrong thread traps rather than
    /// racing on the table).
    public var localShard: Shard { shard.value }

    public func now() -> Int64 { clock.nanosecondsNow() }

    /// Runs `batch` on this shard's loop, then hands it back to `origin` with its results filled in.
    public func submit(
        _ batch: ShardBatch,
        replyOn origin: any EventLoop,
        completion: @escaping @Sendable (ShardBatch) -> Void
    ) {
        eventLoop.execute { [self] in
            shard.value.process(batch, now: clock.nanosecondsNow())
            origin.execute { completion(batch) }
        }
    }

    /// Runs `body` with the shard on its own loop, from anywhere; for statistics and tests.
    public func withShard<T: Sendable>(_ body: @escaping @Sendable (Shard) -> T) -> EventLoopFuture<T> {
        eventLoop.submit { [shard] in body(shard.value) }
    }
}
