import Logging
import NIOCore
import NIOEmbedded
import RateLimiting
import ShardStore
import Testing
import WireProtocol

@testable import RateLimitServer

/// A decider that answers later (as shared state in Redis does): the connection keeps every reply in
/// request order, pipelined, mixed with requests answered at once, in both protocols, and its lifecycle
/// (QUIT, the client closing, shutdown) waits for what is owed.
@Suite("answers a decider owes")
struct DeferredDecisionTests {
    /// Takes every CHECK and RESET to answer when the test says.
    final class LaterDecider: Decider, @unchecked Sendable {
        // @unchecked: driven from the test's thread only (EmbeddedChannel runs everything there).
        struct Taken {
            let ticket: UInt64
            let waiter: any DecisionWaiter
            let key: String
        }
        var taken: [Taken] = []
        var byKey: [String: Taken] = [:]

        func run(
            _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
            ticket: UInt64, waiter: any DecisionWaiter
        ) -> ShardResult? {
            let request = Taken(ticket: ticket, waiter: waiter, key: String(decoding: key, as: UTF8.self))
            taken.append(request)
            byKey[request.key] = request
            return nil
        }

        func decideAll(
            _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64,
            later: @escaping @Sendable (BatchOutcome) -> Void
        ) -> BatchOutcome? {
            BatchOutcome(decisions: [], applied: false)
        }

        var counters: [DeciderCounter] { [] }

        /// Answers the request for `key` with `remaining` left.
        func answer(_ key: String, remaining: Int64) {
            let request = byKey.removeValue(forKey: key)!
            request.waiter.resolve(ticket: request.ticket, result: .decision(Decision(allowed: true, remaining: remaining, resetMillis: 7)))
        }
    }

    @Test func repliesStayInRequestOrderWhateverOrderAnswersComeIn() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        try channel.writeInbound(ByteBuffer(string: "PING\nCHECK a 1 5/1s\nPING\nCHECK b 1 5/1s\nCHECK c 1 5/1s\nPING\n"))
        // What comes before the first owed answer goes out at once; the rest waits behind it.
        #expect(try EmbeddedConnection.written(channel) == "PONG\n")
        decider.answer("c", remaining: 3)
        decider.answer("b", remaining: 2)
        #expect(try EmbeddedConnection.written(channel) == "")
        decider.answer("a", remaining: 1)
        #expect(try EmbeddedConnection.written(channel) == "ALLOW 1 7\nPONG\nALLOW 2 7\nALLOW 3 7\nPONG\n")
        #expect(channel.isActive)
    }

    @Test func twoThousandPipelinedRequestsComeBackInOrderInBothProtocols() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        var request = ""
        for index in 0..<2_000 {
            request += index % 2 == 0 ? "CHECK k\(index) 1 5/1s\n" : "*4\r\n$5\r\nCHECK\r\n$\(("k\(index)").utf8.count)\r\nk\(index)\r\n$1\r\n1\r\n$4\r\n5/1s\r\n"
            if index % 100 == 0 { request += "PING\n" }
        }
        try channel.writeInbound(ByteBuffer(string: request))
        #expect(decider.taken.count == 2_000)
        // Answered from the last to the first.
        for index in (0..<2_000).reversed() { decider.answer("k\(index)", remaining: Int64(index)) }
        // The encoders are tested elsewhere; here only the order matters.
        var expected = ByteBuffer()
        for index in 0..<2_000 {
            let reply = Reply.decision(Decision(allowed: true, remaining: Int64(index), resetMillis: 7))
            if index % 2 == 0 { expected.writeLineReply(reply) } else { expected.writeRESPReply(reply) }
            if index % 100 == 0 { expected.writeLineReply(.pong) }
        }
        #expect(try EmbeddedConnection.written(channel) == String(buffer: expected))
    }

    @Test func quitAndShutdownWaitForWhatIsOwed() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        try channel.writeInbound(ByteBuffer(string: "CHECK a 1 5/1s\nQUIT\n"))
        #expect(try EmbeddedConnection.written(channel) == "")
        #expect(channel.isActive)
        decider.answer("a", remaining: 4)
        #expect(try EmbeddedConnection.written(channel) == "ALLOW 4 7\nBYE\n")
        #expect(!channel.isActive)

        let other = try EmbeddedConnection.make(decider: decider)
        try other.writeInbound(ByteBuffer(string: "CHECK b 1 5/1s\n"))
        other.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(try EmbeddedConnection.written(other) == "")
        #expect(other.isActive)
        decider.answer("b", remaining: 4)
        #expect(try EmbeddedConnection.written(other) == "ALLOW 4 7\n")
        #expect(!other.isActive)
    }

    @Test func repliesHeldBehindAnOwedAnswerCountAgainstTheBurst() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        // 500 KB of PONGs would be held behind the one owed answer: the connection stops parsing at 256 KB
        // of held replies and goes on once the answer arrives.
        try channel.writeInbound(ByteBuffer(string: "CHECK a 1 5/1s\n" + String(repeating: "PING\n", count: 100_000)))
        #expect(try EmbeddedConnection.written(channel) == "")
        decider.answer("a", remaining: 4)
        let replies = try EmbeddedConnection.written(channel).split(separator: "\n")
        #expect(replies.count == 100_001)
        #expect(replies.first == "ALLOW 4 7" && replies.dropFirst().allSatisfy { $0 == "PONG" })
    }

    @Test func anAnswerForAClosedConnectionIsDropped() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        try channel.writeInbound(ByteBuffer(string: "CHECK a 1 5/1s\n"))
        try channel.close().wait()
        decider.answer("a", remaining: 4)
        #expect(try EmbeddedConnection.written(channel) == "")
    }

    @Test func aConnectionOwedTooManyAnswersStopsReadingUntilSomeArrive() throws {
        let decider = LaterDecider()
        let channel = try EmbeddedConnection.make(decider: decider)
        let count = RequestProcessor.maxDeferred + 10
        try channel.writeInbound(ByteBuffer(string: (0..<count).map { "CHECK k\($0) 1 5/1s\n" }.joined()))
        #expect(decider.taken.count == RequestProcessor.maxDeferred)
        for index in 0..<10 { decider.answer("k\(index)", remaining: 1) }
        channel.embeddedEventLoop.run()
        #expect(decider.taken.count == RequestProcessor.maxDeferred + 10)
        for index in 10..<count { decider.answer("k\(index)", remaining: 1) }
        let replies = try EmbeddedConnection.written(channel).split(separator: "\n")
        #expect(replies.count == count && replies.allSatisfy { $0 == "ALLOW 1 7" })
    }
}
