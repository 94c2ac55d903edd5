import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import RateLimitServer
import RateLimiting
import ShardStore
import Testing

@testable import HTTPCheck

/// The HTTP listener's connection, driven byte for byte through NIO's HTTP/1 pipeline without a socket:
/// statuses, headers and bodies pinned, on a manual clock.
@Suite("HTTP check connection")
struct CheckHTTPHandlerTests {
    static let rules = try! RuleSet([
        Rule(name: "users", pattern: try! KeyPattern(parsing: "user:*"),
             limit: try! Limit(algorithm: .tokenBucket, limit: 3, windowNanos: 60_000_000_000)),
        Rule(name: "ips", pattern: try! KeyPattern(parsing: "ip:*"),
             limit: try! Limit(algorithm: .fixedWindow, limit: 2, windowNanos: 1_000_000_000)),
    ])

    /// A connection deciding from fresh local shards (or `decider`), on a clock that stands still.
    static func connection(
        decider: (any Decider)? = nil, token: String? = nil, denyStatus: Int = 429, ruleBook: RuleBook? = nil
    ) throws -> EmbeddedChannel {
        let clock = ManualDecisionClock()
        let checker = HTTPChecker(
            ruleBook: ruleBook ?? RuleBook(rules), decider: decider ?? LocalDecider(shards: [LockedShard(), LockedShard()]),
            clock: clock, auth: token.map { AuthToken(Array($0.utf8), logger: Logger(label: "test"), now: { 0 }) },
            denyStatus: denyStatus)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
        try channel.pipeline.syncOperations.addHandler(CheckHTTPHandler(checker: checker, eventLoop: channel.eventLoop))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.7", port: 50_000)).wait()
        return channel
    }

    /// Everything written so far, as text.
    static func written(_ channel: EmbeddedChannel) throws -> String {
        var text = ""
        while let data = try channel.readOutbound(as: IOData.self) {
            guard case .byteBuffer(let buffer) = data else { continue }
            text += String(buffer: buffer)
        }
        return text
    }

    static func get(_ target: String, _ headers: [String] = []) -> ByteBuffer {
        ByteBuffer(string: "GET \(target) HTTP/1.1\r\nHost: rl\r\n" + headers.map { $0 + "\r\n" }.joined() + "\r\n")
    }

    static func response(_ status: String, _ headers: [String], body: String) -> String {
        "HTTP/1.1 \(status)\r\n" + (headers + [
            "Cache-Control: no-store", "Content-Type: text/plain; charset=utf-8", "Content-Length: \(body.utf8.count)",
        ]).map { $0 + "\r\n" }.joined() + "\r\n" + body
    }

    @Test func countsDownThenDeniesWithRetryAfter() throws {
        let channel = try Self.connection()
        for remaining in [2, 1, 0] {
            try channel.writeInbound(Self.get("/check?key=user:1"))
            let reset = [20, 40, 60][2 - remaining]
            #expect(try Self.written(channel) == Self.response(
                "200 OK", ["RateLimit-Remaining: \(remaining)", "RateLimit-Reset: \(reset)"],
                body: "ALLOW \(remaining) \(reset * 1_000)\n"))
        }
        try channel.writeInbound(Self.get("/check?key=user:1"))
        #expect(try Self.written(channel) == Self.response(
            "429 Too Many Requests", ["RateLimit-Remaining: 0", "RateLimit-Reset: 20", "Retry-After: 20"],
            body: "DENY 0 20000\n"))
        // A cost that can never fit: no time to wait is told.
        try channel.writeInbound(Self.get("/check?key=user:2&cost=4"))
        #expect(try Self.written(channel) == Self.response(
            "429 Too Many Requests", ["RateLimit-Remaining: 3"], body: "DENY 3 -1\n"))
        #expect(channel.isActive)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderOnOneConnection() throws {
        let channel = try Self.connection()
        var both = Self.get("/check?key=user:1&cost=2")
        var second = Self.get("/check?key=user:1&cost=2&deny_status=403")
        both.writeBuffer(&second)
        try channel.writeInbound(both)
        #expect(try Self.written(channel) == Self.response(
            "200 OK", ["RateLimit-Remaining: 1", "RateLimit-Reset: 40"], body: "ALLOW 1 40000\n")
            + Self.response("403 Forbidden", ["RateLimit-Remaining: 1", "RateLimit-Reset: 20", "Retry-After: 20"],
                            body: "DENY 1 20000\n"))
    }

    @Test func theListenersDenyStatusAndTheRequestsOwnLimit() throws {
        let channel = try Self.connection(denyStatus: 403)
        try channel.writeInbound(Self.get("/check?key=other&limit=1/1h"))
        _ = try Self.written(channel)
        try channel.writeInbound(Self.get("/check?key=other&limit=1/1h"))
        #expect(try Self.written(channel).hasPrefix("HTTP/1.1 403 Forbidden\r\nRateLimit-Remaining: 0\r\nRateLimit-Reset: 3600\r\nRetry-After: 3600\r\n"))
    }

    @Test func prefixKeysOnTheForwardedClient() throws {
        let channel = try Self.connection()
        // A fixed window of 2 a second: the client's third request, named by X-Real-IP this time, is denied;
        // the peer itself (no header) is another key.
        let requests: [([String], String)] = [
            (["X-Forwarded-For: 203.0.113.9, 10.0.0.1"], "ALLOW 1 1000\n"),
            (["X-Forwarded-For: 203.0.113.9"], "ALLOW 0 1000\n"),
            (["X-Real-IP: 203.0.113.9"], "DENY 0 1000\n"),
            ([], "ALLOW 1 1000\n"),
        ]
        for (headers, body) in requests {
            try channel.writeInbound(Self.get("/check?prefix=ip:", headers))
            #expect(try Self.written(channel).hasSuffix("\r\n\r\n" + body))
        }
    }

    @Test func badRequestsAre400WithTheErrorLine() throws {
        let channel = try Self.connection()
        try channel.writeInbound(Self.get("/check?key=nobody"))
        #expect(try Self.written(channel) == Self.response(
            "400 Bad Request", [], body: "ERR no_rule no rule matches key 'nobody'\n"))
        try channel.writeInbound(Self.get("/check?key=user:1&cost=x"))
        #expect(try Self.written(channel) == Self.response(
            "400 Bad Request", [], body: "ERR bad_cost cost must be an integer from 0 to 1000000000, got 'x'\n"))
        try channel.writeInbound(Self.get("/metrics"))
        #expect(try Self.written(channel).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        try channel.writeInbound(ByteBuffer(string: "DELETE /check?key=user:1 HTTP/1.1\r\nHost: rl\r\n\r\n"))
        #expect(try Self.written(channel).hasPrefix("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n"))
        // None of them consumed anything.
        try channel.writeInbound(Self.get("/check?key=user:1&cost=0"))
        #expect(try Self.written(channel).hasSuffix("ALLOW 3 0\n"))
        #expect(channel.isActive)
    }

    @Test func headDecidesWithoutABody() throws {
        let channel = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: "HEAD /check?key=user:1 HTTP/1.1\r\nHost: rl\r\n\r\n"))
        #expect(try Self.written(channel) == "HTTP/1.1 200 OK\r\nRateLimit-Remaining: 2\r\nRateLimit-Reset: 20\r\n"
            + "Cache-Control: no-store\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n\r\n")
    }

    @Test func http10WithKeepAliveIsToldSoAndKeptOpen() throws {
        let channel = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: "GET /check?key=user:1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
        #expect(try Self.written(channel).hasPrefix(
            "HTTP/1.0 200 OK\r\nRateLimit-Remaining: 2\r\nRateLimit-Reset: 20\r\nCache-Control: no-store\r\n"
                + "Content-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\nConnection: keep-alive\r\n\r\n"))
        channel.embeddedEventLoop.run()
        #expect(channel.isActive)
    }

    @Test func http10WithoutKeepAliveIsClosedAfterItsResponse() throws {
        let channel = try Self.connection()
        try channel.writeInbound(ByteBuffer(string: "GET /check?key=user:1 HTTP/1.0\r\n\r\n"))
        #expect(try Self.written(channel).contains("Connection: close\r\n"))
        channel.embeddedEventLoop.run()
        #expect(!channel.isActive)
    }

    @Test func theTokenIsABearerHeader() throws {
        let channel = try Self.connection(token: "s3cret-token-of-some-length")
        try channel.writeInbound(Self.get("/check?key=user:1"))
        #expect(try Self.written(channel) == Self.response(
            "401 Unauthorized", ["WWW-Authenticate: Bearer"],
            body: "ERR noauth authentication required; send Authorization: Bearer <token>\n"))
        try channel.writeInbound(Self.get("/check?key=user:1", ["Authorization: Bearer wrong"]))
        #expect(try Self.written(channel).hasPrefix("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\n"))
        try channel.writeInbound(Self.get("/check?key=user:1", ["Authorization: bearer s3cret-token-of-some-length"]))
        #expect(try Self.written(channel).hasSuffix("ALLOW 2 20000\n"))
    }

    @Test func aReloadedRuleAppliesToTheNextRequest() throws {
        let book = RuleBook(Self.rules)
        let channel = try Self.connection(ruleBook: book)
        try channel.writeInbound(Self.get("/check?key=user:1"))
        #expect(try Self.written(channel).hasSuffix("ALLOW 2 20000\n"))
        book.replace(with: try RuleSet([
            Rule(name: "users", pattern: try KeyPattern(parsing: "user:*"),
                 limit: try Limit(algorithm: .tokenBucket, limit: 30, windowNanos: 60_000_000_000)),
        ]))
        try channel.writeInbound(Self.get("/check?key=user:1"))
        let reloaded = try Self.written(channel); // The key keeps its state: 20 s of a 2 s-per-token bucket were spent, and one more request now.
        #expect(reloaded.hasSuffix("ALLOW 19 22000\n"), "\(reloaded)")
    }

    /// Takes every check to answer when the test says, as shared mode's Redis does.
    final class LaterDecider: Decider, @unchecked Sendable {
        // @unchecked: driven from the test's thread only (EmbeddedChannel runs everything there).
        var taken: [(ticket: UInt64, waiter: any DecisionWaiter)] = []

        func run(
            _ operation: ShardOperation, key: UnsafeRawBufferPointer, hash: UInt64, now: Int64, slot: Int,
            ticket: UInt64, waiter: any DecisionWaiter
        ) -> ShardResult? {
            taken.append((ticket, waiter))
            return nil
        }

        func decideAll(
            _ items: [DecisionBatch.Item], alwaysOver: Bool, now: Int64, later: @escaping @Sendable (BatchOutcome) -> Void
        ) -> BatchOutcome? { nil }

        var counters: [DeciderCounter] { [] }
    }

    @Test func anAnswerOwedHoldsTheResponseAndThePipelinedRequestsBehindIt() throws {
        let decider = LaterDecider()
        let channel = try Self.connection(decider: decider)
        var both = Self.get("/check?key=user:1")
        var second = Self.get("/check?key=user:2")
        both.writeBuffer(&second)
        try channel.writeInbound(both)
        #expect(try Self.written(channel) == "")
        #expect(decider.taken.count == 1, "the second request waits for the first response")
        decider.taken[0].waiter.resolve(
            ticket: decider.taken[0].ticket, result: .decision(Decision(allowed: false, remaining: 0, resetMillis: 1_500)))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == Self.response(
            "429 Too Many Requests", ["RateLimit-Remaining: 0", "RateLimit-Reset: 2", "Retry-After: 2"],
            body: "DENY 0 1500\n"))
        #expect(decider.taken.count == 2)
        // A stale ticket is ignored; the right one answers.
        decider.taken[1].waiter.resolve(ticket: 99, result: .decision(Decision(allowed: true, remaining: 9, resetMillis: 1)))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel) == "")
        decider.taken[1].waiter.resolve(
            ticket: decider.taken[1].ticket, result: .decision(Decision(allowed: true, remaining: 4, resetMillis: 100)))
        channel.embeddedEventLoop.run()
        #expect(try Self.written(channel).hasSuffix("ALLOW 4 100\n"))
    }

    @Test func anAnswerForAClosedConnectionIsDropped() throws {
        let decider = LaterDecider()
        let channel = try Self.connection(decider: decider)
        try channel.writeInbound(Self.get("/check?key=user:1"))
        _ = try channel.finish()
        decider.taken[0].waiter.resolve(
            ticket: decider.taken[0].ticket, result: .decision(Decision(allowed: true, remaining: 1, resetMillis: 1)))
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: IOData.self) == nil)
    }
}
