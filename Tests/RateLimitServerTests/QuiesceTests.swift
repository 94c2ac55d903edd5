import Logging
import NIOCore
import NIOEmbedded
import RateLimiting
import ShardStore
import Testing
import WireProtocol

@testable import RateLimitServer

@Suite("shutting down a connection")
struct QuiesceTests {
    func makeChannel() throws -> EmbeddedChannel {
        let shards = [LockedShard()]
        let services = ConnectionServices(
            ruleBook: RuleBook(.defaults), decider: LocalDecider(shards: shards), shards: shards,
            clock: ManualDecisionClock(), framer: LineFramer(), respLimits: RESPDecoder(),
            statistics: ServerStatistics(
                startedAt: 0, snapshot: SnapshotStatus(),
                connectionSetup: ConnectionSetup(logger: Logger(label: "test"), now: { 0 })))
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            ConnectionHandler(
                services: services, allocator: channel.allocator, loopMetrics: LoopMetrics(), eventLoop: channel.eventLoop,
                logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
            text += buffer.readString(length: buffer.readableBytes) ?? ""
        }
        return text
    }

    @Test func everyRequestAlreadyReadIsAnsweredBeforeTheClose() throws {
        let channel = try makeChannel()
        // More requests in one read than one burst may answer, so some wait in the buffer.
        let count = 40_000
        try channel.writeInbound(ByteBuffer(string: String(repeating: "CHECK k 0\n", count: count) + "CHECK partial"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        channel.embeddedEventLoop.run()
        let replies = try written(channel).split(separator: "\n")
        #expect(replies.count == count)
        #expect(replies.allSatisfy { $0 == "ALLOW 100 0" })
        #expect(!channel.isActive)
    }

    @Test func anIdleConnectionClosesAtOnce() throws {
        let channel = try makeChannel()
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        channel.embeddedEventLoop.run()
        #expect(try written(channel).isEmpty)
        #expect(!channel.isActive)
    }
}
