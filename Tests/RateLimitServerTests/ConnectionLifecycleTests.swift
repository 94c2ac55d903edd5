import NIOCore
import NIOEmbedded
import Testing

@testable import RateLimitServer

/// The machine behind a reference, so `#expect` can call its mutating methods.
final class Box {
    var value: ConnectionLifecycle
    init(_ value: ConnectionLifecycle) { self.value = value }

    var state: ConnectionLifecycle.State { value.state }
    func readRequested(canRead: Bool) -> Bool { value.readRequested(canRead: canRead) }
    func drained(_ progress: ConnectionLifecycle.Progress, canRead: Bool) -> ConnectionLifecycle.AfterDrain {
        value.drained(progress, canRead: canRead)
    }
    func look(at now: Int64, _ activity: ConnectionActivity) -> ConnectionLifecycle.TimeoutAction? {
        value.look(at: now, activity)
    }
    func inputClosed() { value.inputClosed() }
    func quiesce() { value.quiesce() }
    func closed() { value.closed() }
}

@Suite("a connection's lifecycle")
struct ConnectionLifecycleTests {
    typealias Progress = ConnectionLifecycle.Progress
    static let idle = Progress(ended: false, stalled: false, owed: 0)

    @Test func aReadHeldWhileTheClientDoesNotReadIsResumedOnceItCatchesUp() {
        let box = Box(ConnectionLifecycle(timeouts: .never))
        #expect(box.readRequested(canRead: true))
        #expect(!box.readRequested(canRead: false))
        #expect(box.drained(Self.idle, canRead: false) == .wait)
        #expect(box.drained(Self.idle, canRead: true) == .read)
        // Resumed once: the next drain has no read to give back.
        #expect(box.drained(Self.idle, canRead: true) == .wait)
    }

    @Test func quitClosesOnceNothingIsOwed() {
        let box = Box(ConnectionLifecycle(timeouts: .never))
        #expect(box.drained(Progress(ended: true, stalled: false, owed: 2), canRead: true) == .wait)
        #expect(box.drained(Progress(ended: true, stalled: false, owed: 0), canRead: true) == .closeAfterWrites)
        #expect(box.state == .closing)
        #expect(box.drained(Self.idle, canRead: true) == .wait)
    }

    @Test func aHalfClosedClientIsAnsweredInFullFirst() {
        let box = Box(ConnectionLifecycle(timeouts: .never))
        box.inputClosed()
        #expect(box.state == .inputClosed)
        #expect(!box.readRequested(canRead: true))
        #expect(box.drained(Progress(ended: false, stalled: true, owed: 0), canRead: true) == .wait)
        #expect(box.drained(Progress(ended: false, stalled: false, owed: 1), canRead: true) == .wait)
        #expect(box.drained(Self.idle, canRead: true) == .closeAfterWrites)
    }

    @Test func quiescingReadsNothingMoreAndOutranksAHalfClose() {
        let box = Box(ConnectionLifecycle(timeouts: .never))
        #expect(!box.readRequested(canRead: false))
        box.quiesce()
        box.inputClosed()
        #expect(box.state == .quiescing)
        #expect(!box.readRequested(canRead: true))
        // The read held before shutdown is not given back.
        #expect(box.drained(Progress(ended: false, stalled: true, owed: 0), canRead: true) == .wait)
        #expect(box.drained(Self.idle, canRead: true) == .closeAfterWrites)
    }

    @Test func aClosedConnectionDoesNothingMore() {
        let box = Box(ConnectionLifecycle(timeouts: ConnectionTimeouts(idleNanos: 10, requestNanos: 10)))
        box.closed()
        box.quiesce()
        #expect(box.state == .closed)
        #expect(!box.readRequested(canRead: true))
        #expect(box.drained(Self.idle, canRead: true) == .wait)
        #expect(box.look(at: 1_000, ConnectionActivity()) == nil)
    }

    // Looks every 5 (half the shortest timeout); each state is timed from the first look that saw it.

    @Test func anIncompleteRequestIsTimedFromTheFirstLookThatSawIt() {
        let box = Box(ConnectionLifecycle(timeouts: ConnectionTimeouts(idleNanos: 0, requestNanos: 10)))
        let partial = ConnectionActivity(heard: true, requests: 3, partial: true)
        #expect(box.look(at: 5, partial) == nil)
        #expect(box.look(at: 10, partial) == nil)
        #expect(box.look(at: 15, partial) == .failRequest)
    }

    @Test func aCompletedRequestStartsTheClockAgain() {
        let box = Box(ConnectionLifecycle(timeouts: ConnectionTimeouts(idleNanos: 0, requestNanos: 10)))
        #expect(box.look(at: 5, ConnectionActivity(heard: true, requests: 1, partial: true)) == nil)
        #expect(box.look(at: 10, ConnectionActivity(heard: true, requests: 2, partial: true)) == nil)
        #expect(box.look(at: 15, ConnectionActivity(heard: true, requests: 2, partial: true)) == nil)
        #expect(box.look(at: 20, ConnectionActivity(heard: false, requests: 2, partial: true)) == .failRequest)
    }

    @Test func unreadRepliesCloseAtOnceAndReadingSomeStartsTheClockAgain() {
        let box = Box(ConnectionLifecycle(timeouts: ConnectionTimeouts(idleNanos: 0, requestNanos: 10)))
        let waiting = ConnectionActivity(repliesWaiting: true)
        #expect(box.look(at: 5, waiting) == nil)
        #expect(box.look(at: 10, ConnectionActivity(repliesWaiting: true, drained: true)) == nil)
        #expect(box.look(at: 15, waiting) == nil)
        #expect(box.look(at: 20, waiting) == .close(.unreadReplies))
        #expect(box.state == .closed)
    }

    @Test func silenceIsTimedByTheIdleTimeoutAlone() {
        let box = Box(ConnectionLifecycle(timeouts: ConnectionTimeouts(idleNanos: 20, requestNanos: 10)))
        #expect(box.look(at: 5, ConnectionActivity()) == nil)
        #expect(box.look(at: 10, ConnectionActivity(heard: true)) == nil)
        #expect(box.look(at: 25, ConnectionActivity()) == nil)
        #expect(box.look(at: 30, ConnectionActivity()) == .close(.idle))
    }

    @Test func theLookIntervalIsHalfTheShortestTimeoutSet() {
        #expect(ConnectionTimeouts.never.lookIntervalNanos == nil)
        #expect(ConnectionTimeouts(idleNanos: 300, requestNanos: 0).lookIntervalNanos == 150)
        #expect(ConnectionTimeouts(idleNanos: 300, requestNanos: 10).lookIntervalNanos == 5)
        #expect(ConnectionTimeouts(idleNanos: 0, requestNanos: 1).lookIntervalNanos == 1)
    }
}

/// The timeouts through the client connection's handler, on an embedded loop whose clock the test moves.
@Suite("connection timeouts")
struct ConnectionTimeoutTests {
    static let second: Int64 = 1_000_000_000
    static let timeouts = ConnectionTimeouts(idleNanos: 0, requestNanos: second)

    static func advance(_ channel: EmbeddedChannel, millis: Int64) {
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(millis))
    }

    @Test func anIncompleteLineIsAnsweredThenClosedAfterTheRequestTimeout() throws {
        let counts = TimeoutCounts()
        let channel = try EmbeddedConnection.make(timeouts: Self.timeouts, timeoutCounts: counts)
        try channel.writeInbound(ByteBuffer(string: "CHECK a 1\nCHECK b"))
        #expect(try EmbeddedConnection.written(channel) == "ALLOW 99 600\n")
        // Looks at 0.5 s (first sight), 1 s, 1.5 s: closed at the first look a whole second after the first.
        Self.advance(channel, millis: 1_499)
        #expect(channel.isActive)
        Self.advance(channel, millis: 1)
        #expect(try EmbeddedConnection.written(channel) == "ERR timeout request incomplete after 1s; closing the connection\n")
        #expect(!channel.isActive)
        #expect(counts.requestTimeouts == 1)
        #expect(counts.idleCloses == 0)
    }

    @Test func anIncompleteRESPFrameIsAnsweredInRESP() throws {
        let channel = try EmbeddedConnection.make(timeouts: Self.timeouts)
        try channel.writeInbound(ByteBuffer(string: "*2\r\n$4\r\nPING\r\n"))
        Self.advance(channel, millis: 1_500)
        #expect(try EmbeddedConnection.written(channel) == "-ERR timeout request incomplete after 1s; closing the connection\r\n")
        #expect(!channel.isActive)
    }

    @Test func trickledBytesDoNotKeepARequestAlive() throws {
        let channel = try EmbeddedConnection.make(timeouts: Self.timeouts)
        for byte in "CHECK slow:1".utf8.prefix(6) {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            Self.advance(channel, millis: 250)
        }
        #expect(!channel.isActive)
        #expect(try EmbeddedConnection.written(channel).hasPrefix("ERR timeout "))
    }

    @Test func aClientThatKeepsCompletingRequestsStaysOpen() throws {
        let channel = try EmbeddedConnection.make(timeouts: Self.timeouts)
        for _ in 0..<10 {
            try channel.writeInbound(ByteBuffer(string: "\nCHECK k 0"))
            Self.advance(channel, millis: 400)
        }
        #expect(channel.isActive)
        #expect(try EmbeddedConnection.written(channel) == String(repeating: "ALLOW 100 0\n", count: 9))
        try channel.close().wait()
    }

    @Test func repliesLeftUnreadCloseTheConnectionWithoutAWord() throws {
        let counts = TimeoutCounts()
        let channel = try EmbeddedConnection.make(timeouts: Self.timeouts, timeoutCounts: counts)
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        try channel.writeInbound(ByteBuffer(string: "PING\n"))
        _ = try EmbeddedConnection.written(channel)
        Self.advance(channel, millis: 1_499)
        #expect(channel.isActive)
        Self.advance(channel, millis: 1)
        #expect(!channel.isActive)
        #expect(counts.replyTimeouts == 1)
        #expect(try EmbeddedConnection.written(channel).isEmpty)
    }

    @Test func anIdleConnectionIsClosedAfterTheIdleTimeout() throws {
        let counts = TimeoutCounts()
        let channel = try EmbeddedConnection.make(
            timeouts: ConnectionTimeouts(idleNanos: Self.second, requestNanos: 0), timeoutCounts: counts)
        Self.advance(channel, millis: 1_200)
        try channel.writeInbound(ByteBuffer(string: "PING\n"))
        // Heard between the looks at 1 s and 1.5 s: quiet from 1.5 s, closed at 2.5 s.
        Self.advance(channel, millis: 1_299)
        #expect(channel.isActive)
        Self.advance(channel, millis: 1)
        #expect(!channel.isActive)
        #expect(counts.idleCloses == 1)
        #expect(try EmbeddedConnection.written(channel) == "PONG\n")
    }
}
