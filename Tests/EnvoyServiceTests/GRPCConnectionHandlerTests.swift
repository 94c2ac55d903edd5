import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import EnvoyService

/// The connection handler behind NIO's real HTTP/2 handler, talking to NIO's HTTP/2 client handler over
/// embedded channels: the frames a gRPC client sees, shutdown, and a connection that is not HTTP/2.
@Suite("gRPC connection handler")
struct GRPCConnectionHandlerTests {
    /// Collects the frames the client's HTTP/2 handler passes up.
    final class Frames: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        var received: [HTTP2Frame] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received.append(unwrapInboundIn(data))
        }
    }

    /// A server and a client joined in memory.
    final class Connection {
        let server = EmbeddedChannel()
        let client = EmbeddedChannel()
        let frames = Frames()
        var nextStream = 1

        init(maxMessageBytes: Int = 1024, answer: @escaping GRPCConnectionHandler.Answer) throws {
            let handler = GRPCConnectionHandler(maxMessageBytes: maxMessageBytes, logger: Logger(label: "test"), answer: answer)
            var configuration = NIOHTTP2Handler.ConnectionConfiguration()
            configuration.initialSettings = handler.initialSettings(maxConcurrentStreams: 16)
            try server.pipeline.syncOperations.addHandlers([
                NIOHTTP2Handler(mode: .server, frameDelegate: handler, connectionConfiguration: configuration), handler,
            ])
            try client.pipeline.syncOperations.addHandlers([NIOHTTP2Handler(mode: .client), frames])
            let address = try SocketAddress(ipAddress: "127.0.0.1", port: 1)
            try server.connect(to: address).wait()
            try client.connect(to: address).wait()
            try exchange()
        }

        /// Moves bytes both ways until neither side has anything to send.
        func exchange() throws {
            for _ in 0..<100 {
                var moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    if server.isActive { try server.writeInbound(bytes) }
                    moved = true
                }
                while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                    if client.isActive { try client.writeInbound(bytes) }
                    moved = true
                }
                if !moved { return }
            }
            Issue.record("the two sides never went quiet")
        }

        /// Starts a call; `message` nil leaves the request open.
        @discardableResult
        func call(_ message: [UInt8]?, path: String = GRPCUnaryCalls.Method.shouldRateLimit.rawValue) throws -> HTTP2StreamID {
            let stream = HTTP2StreamID(nextStream)
            nextStream += 2
            let headers = GRPCUnaryCallsTests.request(path: path)
            client.write(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers))), promise: nil)
            if let message { send(message, on: stream) }
            client.flush()
            try exchange()
            return stream
        }

        func send(_ message: [UInt8], on stream: HTTP2StreamID) {
            let data = GRPCUnaryCallsTests.frame(message)
            client.writeAndFlush(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(data), endStream: true))), promise: nil)
        }

        /// The frames received on `stream`, described: `headers[...]`, `data[...]`, `end` marks END_STREAM.
        func described(_ stream: HTTP2StreamID) -> [String] {
            frames.received.filter { $0.streamID == stream }.map { frame in
                switch frame.payload {
                case .headers(let headers):
                    let fields = headers.headers.map { "\($0.name)=\($0.value)" }.joined(separator: " ")
                    return "headers[\(fields)]" + (headers.endStream ? " end" : "")
                case .data(let data):
                    guard case .byteBuffer(let buffer) = data.data else { return "data[file]" }
                    return "data\(Array(buffer.readableBytesView))" + (data.endStream ? " end" : "")
                case .rstStream(let code):
                    return "rst[\(code)]"
                default:
                    return "other"
                }
            }
        }

        var goAways: [HTTP2StreamID] {
            frames.received.compactMap { frame in
                if case .goAway(let last, _, _) = frame.payload { return last }
                return nil
            }
        }
    }

    /// Answers with the message reversed; `[0xFF]` is refused.
    static func reverse(
        _ method: GRPCUnaryCalls.Method, _ message: ByteBuffer, _ later: @escaping GRPCConnectionHandler.Later
    ) throws(GRPCStatus) -> [UInt8]? {
        if message.readableBytesView.elementsEqual([0xFF]) { throw GRPCStatus(.invalidArgument, "no 0xFF") }
        return message.readableBytesView.reversed()
    }

    /// Takes calls whose message starts with 0 to answer later (as shared mode does while Redis decides),
    /// and answers the others at once, reversed.
    final class Owed: @unchecked Sendable {
        // @unchecked: used from the embedded channel's one thread.
        var laters: [GRPCConnectionHandler.Later] = []

        func answer(
            _ method: GRPCUnaryCalls.Method, _ message: ByteBuffer, _ later: @escaping GRPCConnectionHandler.Later
        ) throws(GRPCStatus) -> [UInt8]? {
            guard message.readableBytesView.first == 0 else { return message.readableBytesView.reversed() }
            laters.append(later)
            return nil
        }
    }

    @Test func aCallIsAnsweredWithHeadersMessageAndTrailers() throws {
        let connection = try Connection(answer: Self.reverse)
        let stream = try connection.call([1, 2, 3])
        #expect(connection.described(stream) == [
            "headers[:status=200 content-type=application/grpc]",
            "data[0, 0, 0, 0, 3, 3, 2, 1]",
            "headers[grpc-status=0] end",
        ])
    }

    @Test func manyCallsOnOneConnectionAreEachAnswered() throws {
        let connection = try Connection(answer: Self.reverse)
        let streams = try (0..<40).map { index in try connection.call([UInt8(index), 7]) }
        for (index, stream) in streams.enumerated() {
            #expect(connection.described(stream)[1] == "data[0, 0, 0, 0, 2, 7, \(index)]")
        }
    }

    @Test func aRefusedCallEndsWithItsStatusAndNoMessage() throws {
        let connection = try Connection(answer: Self.reverse)
        let refused = try connection.call([0xFF])
        #expect(connection.described(refused) == [
            "headers[:status=200 content-type=application/grpc grpc-status=3 grpc-message=no 0xFF] end"
        ])
        let unknown = try connection.call(nil, path: "/other.Service/Method")
        #expect(connection.described(unknown) == [
            "headers[:status=200 content-type=application/grpc grpc-status=12 grpc-message=unknown method /other.Service/Method] end",
            "rst[HTTP2ErrorCode<0x0 No Error>]",
        ])
        // The connection serves on.
        #expect(connection.described(try connection.call([5]))[1] == "data[0, 0, 0, 0, 1, 5]")
    }

    @Test func dataDroppedForRefusedCallsStillGivesTheConnectionWindowBack() throws {
        let connection = try Connection(maxMessageBytes: 64 * 1024, answer: Self.reverse)
        // Each call announces a message over the limit and sends more after it: the server refuses the call
        // at its first frame and NIO drops the rest, unseen by the handler but counted against the
        // connection window. 40 of them use the 1 MiB window over; the call after must still pass.
        for _ in 0..<40 {
            let stream = HTTP2StreamID(connection.nextStream)
            connection.nextStream += 2
            var first = ByteBuffer()
            first.writeInteger(UInt8(0))
            first.writeInteger(UInt32(100_000))
            first.writeBytes(Array(repeating: 1, count: 1_000))
            let headers = GRPCUnaryCallsTests.request()
            connection.client.write(HTTP2Frame(streamID: stream, payload: .headers(.init(headers: headers))), promise: nil)
            connection.client.write(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(first)))), promise: nil)
            let second = ByteBuffer(bytes: Array(repeating: 2, count: 60_000))
            connection.client.write(HTTP2Frame(streamID: stream, payload: .data(.init(data: .byteBuffer(second), endStream: true))), promise: nil)
            connection.client.flush()
            try connection.exchange()
        }
        let stream = try connection.call([1, 2, 3])
        #expect(connection.described(stream) == [
            "headers[:status=200 content-type=application/grpc]",
            "data[0, 0, 0, 0, 3, 3, 2, 1]",
            "headers[grpc-status=0] end",
        ])
    }

    @Test func shutdownWithNoOpenCallSaysGoAwayAndCloses() throws {
        let connection = try Connection(answer: Self.reverse)
        let stream = try connection.call([1])
        connection.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try connection.exchange()
        #expect(connection.goAways == [stream])
        #expect(!connection.server.isActive)
    }

    @Test func shutdownAnswersTheOpenCallsBeforeClosing() throws {
        let connection = try Connection(answer: Self.reverse)
        let open = try connection.call(nil)
        connection.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try connection.exchange()
        #expect(connection.goAways == [open])
        #expect(connection.server.isActive)
        connection.send([9, 8], on: open)
        try connection.exchange()
        #expect(connection.described(open) == [
            "headers[:status=200 content-type=application/grpc]",
            "data[0, 0, 0, 0, 2, 8, 9]",
            "headers[grpc-status=0] end",
        ])
        #expect(connection.goAways == [open, open])
        #expect(!connection.server.isActive)
    }

    @Test func aCallAnsweredLaterIsWrittenWhenItsAnswerComesAndOthersAreNotHeldBehindIt() throws {
        let owed = Owed()
        let connection = try Connection(answer: owed.answer)
        let first = try connection.call([0, 1])
        let failing = try connection.call([0, 2])
        let quick = try connection.call([3, 4])
        #expect(connection.described(first).isEmpty && connection.described(failing).isEmpty)
        #expect(connection.described(quick)[1] == "data[0, 0, 0, 0, 2, 4, 3]")
        owed.laters[1](.failure(GRPCStatus(.internalError, "no")))
        owed.laters[0](.success([7]))
        connection.server.embeddedEventLoop.run()
        try connection.exchange()
        #expect(connection.described(first) == [
            "headers[:status=200 content-type=application/grpc]",
            "data[0, 0, 0, 0, 1, 7]",
            "headers[grpc-status=0] end",
        ])
        #expect(connection.described(failing) == [
            "headers[:status=200 content-type=application/grpc grpc-status=13 grpc-message=no] end"
        ])
    }

    @Test func aCallTheClientResetsBeforeItsAnswerGetsNothingAndTheConnectionServesOn() throws {
        let owed = Owed()
        let connection = try Connection(answer: owed.answer)
        let abandoned = try connection.call([0, 1])
        connection.client.writeAndFlush(HTTP2Frame(streamID: abandoned, payload: .rstStream(.cancel)), promise: nil)
        try connection.exchange()
        owed.laters[0](.success([7]))
        connection.server.embeddedEventLoop.run()
        try connection.exchange()
        #expect(connection.described(abandoned).isEmpty)
        #expect(connection.server.isActive)
        #expect(connection.described(try connection.call([5]))[1] == "data[0, 0, 0, 0, 1, 5]")
    }

    @Test func shutdownWaitsForTheAnswersOwedBeforeClosing() throws {
        let owed = Owed()
        let connection = try Connection(answer: owed.answer)
        let stream = try connection.call([0, 1])
        connection.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try connection.exchange()
        #expect(connection.goAways == [stream])
        #expect(connection.server.isActive)
        owed.laters[0](.success([2]))
        connection.server.embeddedEventLoop.run()
        try connection.exchange()
        #expect(connection.described(stream)[1] == "data[0, 0, 0, 0, 1, 2]")
        #expect(!connection.server.isActive)
    }

    @Test func aConnectionThatIsNotHTTP2IsClosed() throws {
        let server = EmbeddedChannel()
        let handler = GRPCConnectionHandler(maxMessageBytes: 1024, logger: Logger(label: "test"), answer: Self.reverse)
        try server.pipeline.syncOperations.addHandlers([NIOHTTP2Handler(mode: .server, frameDelegate: handler), handler])
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try server.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(!server.isActive)
    }
}
