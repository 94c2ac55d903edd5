import Logging
import NIOCore
import NIOEmbedded
import RateLimiting
import ShardStore
import WireProtocol

@testable import RateLimitServer

/// A client connection's handler on an embedded channel, with the default rules and one shard: what the
/// connection does, without a socket.
enum EmbeddedConnection {
    /// `decider` nil decides from the shard.
    static func make(
        decider: (any Decider)? = nil, timeouts: ConnectionTimeouts = .never, timeoutCounts: TimeoutCounts? = nil
    ) throws -> EmbeddedChannel {
        let shards = [LockedShard()]
        let services = ConnectionServices(
            ruleBook: RuleBook(.defaults), decider: decider ?? LocalDecider(shards: shards), shards: shards,
            clock: ManualDecisionClock(), framer: LineFramer(), respLimits: RESPDecoder(),
            statistics: ServerStatistics(
                startedAt: 0, snapshot: SnapshotStatus(),
                connectionSetup: ConnectionSetup(logger: Logger(label: "test"), now: { 0 })))
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ConnectionHandler(
                services: services, allocator: channel.allocator, loopMetrics: LoopMetrics(), eventLoop: channel.eventLoop,
                logger: Logger(label: "test"), timeouts: timeouts, timeoutCounts: timeoutCounts))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    /// Everything written to the client so far, after running what the loop has queued.
    static func written(_ channel: EmbeddedChannel) throws -> String {
        channel.embeddedEventLoop.run()
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }
        return text
    }
}
