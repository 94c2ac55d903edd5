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
    @Test func everyRequestAlreadyReadIsAnsweredBeforeTheClose() throws {
        let channel = try EmbeddedConnection.make()
        // More requests in one read than one burst may answer, so some wait in the buffer.
        let count = 40_000
        try channel.writeInbound(ByteBuffer(string: String(repeating: "CHECK k 0\n", count: count) + "CHECK partial"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        channel.embeddedEventLoop.run()
        let replies = try EmbeddedConnection.written(channel).split(separator: "\n")
        #expect(replies.count == count)
        #expect(replies.allSatisfy { $0 == "ALLOW 100 0" })
        #expect(!channel.isActive)
    }

    @Test func anIdleConnectionClosesAtOnce() throws {
        let channel = try EmbeddedConnection.make()
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        channel.embeddedEventLoop.run()
        #expect(try EmbeddedConnection.written(channel).isEmpty)
        #expect(!channel.isActive)
    }
}
