import NIOCore
import NIOHPACK
import NIOHTTP2
import Testing

@testable import EnvoyService

/// The unary-call state machine, frame by frame, without a socket.
@Suite("gRPC unary calls")
struct GRPCUnaryCallsTests {
    let stream = HTTP2StreamID(1)

    static func request(path: String = GRPCUnaryCalls.Method.shouldRateLimit.rawValue, method: String = "POST",
                        contentType: String = "application/grpc", extra: [(String, String)] = []) -> HPACKHeaders {
        var headers: HPACKHeaders = [":method": method, ":path": path, ":scheme": "http", ":authority": "x",
                                     "content-type": contentType, "te": "trailers"]
        for (name, value) in extra { headers.add(name: name, value: value) }
        return headers
    }

    /// A gRPC length-prefixed message.
    static func frame(_ message: [UInt8], flag: UInt8 = 0, length: UInt32? = nil) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(flag)
        buffer.writeInteger(length ?? UInt32(message.count))
        buffer.writeBytes(message)
        return buffer
    }

    func data(_ calls: inout GRPCUnaryCalls, _ buffer: ByteBuffer, end: Bool = true) -> GRPCUnaryCalls.Action? {
        calls.receiveData(buffer, stream: stream, endStream: end)
    }

    @Test func aCompleteRequestIsOneCallWithTheMessageBytes() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        #expect(calls.receiveHeaders(Self.request(), stream: stream, endStream: false) == nil)
        #expect(calls.openCalls == 1)
        #expect(data(&calls, Self.frame([1, 2, 3])) == .call(stream, .shouldRateLimit, ByteBuffer(bytes: [1, 2, 3])))
        #expect(calls.openCalls == 0)
    }

    @Test func aMessageSplitOverFramesIsJoined() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(contentType: "application/grpc+proto"), stream: stream, endStream: false)
        let whole = Self.frame(Array(0..<100))
        #expect(data(&calls, whole.getSlice(at: 0, length: 3)!, end: false) == nil)
        #expect(data(&calls, whole.getSlice(at: 3, length: 60)!, end: false) == nil)
        #expect(data(&calls, whole.getSlice(at: 63, length: 42)!, end: false) == nil)
        // Trailers from the client end the request.
        #expect(calls.receiveHeaders([:], stream: stream, endStream: true) == .call(stream, .shouldRateLimit, ByteBuffer(bytes: Array(0..<100))))
    }

    /// What partial requests hold counts in the server's input budget: bytes kept between frames, given
    /// back when the call ends however it ends.
    @Test func partialRequestsAreCountedUntilTheirCallEnds() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        let whole = Self.frame(Array(repeating: 7, count: 500))
        _ = calls.receiveHeaders(Self.request(), stream: stream, endStream: false)
        _ = data(&calls, whole.getSlice(at: 0, length: 200)!, end: false)
        #expect(calls.heldBytes == 200)
        _ = data(&calls, whole.getSlice(at: 200, length: 100)!, end: false)
        #expect(calls.heldBytes == 300)
        let other = HTTP2StreamID(3)
        _ = calls.receiveHeaders(Self.request(), stream: other, endStream: false)
        _ = calls.receiveData(whole.getSlice(at: 0, length: 50)!, stream: other, endStream: false)
        #expect(calls.heldBytes == 350)
        #expect(data(&calls, whole.getSlice(at: 300, length: 205)!) == .call(stream, .shouldRateLimit, ByteBuffer(bytes: Array(repeating: 7, count: 500))))
        #expect(calls.heldBytes == 50)
        calls.streamClosed(other)
        #expect(calls.heldBytes == 0)
        // A message complete in one frame is answered at once, and never held.
        _ = calls.receiveHeaders(Self.request(), stream: HTTP2StreamID(5), endStream: false)
        _ = calls.receiveData(whole, stream: HTTP2StreamID(5), endStream: true)
        #expect(calls.heldBytes == 0)
    }

    @Test func anEmptyMessageIsACall() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(), stream: stream, endStream: false)
        #expect(data(&calls, Self.frame([])) == .call(stream, .shouldRateLimit, ByteBuffer()))
    }

    @Test func theHealthCheckIsACallOfItsOwnMethod() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(path: "/grpc.health.v1.Health/Check"), stream: stream, endStream: false)
        #expect(data(&calls, Self.frame([])) == .call(stream, .healthCheck, ByteBuffer()))
        // Watch (a stream of answers) is not served.
        #expect(calls.receiveHeaders(Self.request(path: "/grpc.health.v1.Health/Watch"), stream: HTTP2StreamID(3), endStream: false)
            == .fail(HTTP2StreamID(3), GRPCStatus(.unimplemented, "unknown method /grpc.health.v1.Health/Watch"), reset: true))
    }

    @Test func healthCheckAnswersServingForTheServerAndTheServiceAndNotFoundOtherwise() throws {
        // HealthCheckResponse{status: SERVING} is field 1, varint 1.
        #expect(try HealthCheck.answer(ByteBuffer()) == [0x08, 0x01])
        let named = ByteBuffer(bytes: [0x0A, 43] + Array("envoy.service.ratelimit.v3.RateLimitService".utf8))
        #expect(try HealthCheck.answer(named) == [0x08, 0x01])
        #expect(throws: GRPCStatus(.notFound, "unknown service other")) {
            try HealthCheck.answer(ByteBuffer(bytes: [0x0A, 5] + Array("other".utf8)))
        }
    }

    @Test func whatIsNotAGRPCRequestGetsAnHTTPStatus() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        #expect(calls.receiveHeaders(Self.request(method: "GET"), stream: stream, endStream: true)
            == .refuse(stream, httpStatus: 405, reset: false))
        #expect(calls.receiveHeaders(Self.request(contentType: "application/json"), stream: HTTP2StreamID(3), endStream: false)
            == .refuse(HTTP2StreamID(3), httpStatus: 415, reset: true))
        #expect(calls.receiveHeaders(Self.request(contentType: "application/grpc+json"), stream: HTTP2StreamID(5), endStream: true)
            == .refuse(HTTP2StreamID(5), httpStatus: 415, reset: false))
        #expect(calls.openCalls == 0)
    }

    @Test func anUnknownMethodIsUnimplemented() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        #expect(calls.receiveHeaders(Self.request(path: "/other.Service/Method"), stream: stream, endStream: false)
            == .fail(stream, GRPCStatus(.unimplemented, "unknown method /other.Service/Method"), reset: true))
        // Its data, should any come, is not a call.
        #expect(data(&calls, Self.frame([1])) == nil)
    }

    @Test func malformedMessagesEndTheCallWithInternal() {
        func finish(_ buffer: ByteBuffer, encoding: String? = nil) -> GRPCUnaryCalls.Action? {
            var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
            _ = calls.receiveHeaders(
                Self.request(extra: encoding.map { [("grpc-encoding", $0)] } ?? []), stream: stream, endStream: false)
            return data(&calls, buffer)
        }
        func failure(_ code: GRPCStatus.Code, _ message: String) -> GRPCUnaryCalls.Action {
            .fail(stream, GRPCStatus(code, message), reset: false)
        }
        #expect(finish(ByteBuffer()) == failure(.internalError, "no request message"))
        #expect(finish(ByteBuffer(bytes: [0, 0, 0])) == failure(.internalError, "the request message is cut short"))
        #expect(finish(Self.frame([1, 2], length: 3)) == failure(.internalError, "the request message is cut short"))
        var two = Self.frame([1])
        var second = Self.frame([2])
        two.writeBuffer(&second)
        #expect(finish(two) == failure(.internalError, "more than one request message in a unary call"))
        #expect(finish(Self.frame([1], flag: 1), encoding: "gzip") == failure(.unimplemented, "compression gzip is not supported"))
        #expect(finish(Self.frame([1], flag: 1)) == failure(.internalError, "a compressed message without grpc-encoding"))
        #expect(finish(Self.frame([1], flag: 1), encoding: "identity") == failure(.internalError, "a compressed message without grpc-encoding"))
        #expect(finish(Self.frame([1], flag: 2)) == failure(.internalError, "invalid message flag 2"))
        // An encoding announced but not used is fine.
        #expect(finish(Self.frame([7]), encoding: "gzip") == .call(stream, .shouldRateLimit, ByteBuffer(bytes: [7])))

        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        #expect(calls.receiveHeaders(Self.request(), stream: stream, endStream: true) == failure(.internalError, "no request message"))
    }

    @Test func anOversizedMessageIsRefusedAsSoonAsItsLengthArrives() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(), stream: stream, endStream: false)
        #expect(data(&calls, Self.frame([0], length: 1025), end: false)
            == .fail(stream, GRPCStatus(.resourceExhausted, "request message of 1025 bytes; at most 1024"), reset: true))
        #expect(calls.openCalls == 0)
        // Exactly the limit is fine.
        _ = calls.receiveHeaders(Self.request(), stream: HTTP2StreamID(3), endStream: false)
        let largest = Self.frame(Array(repeating: 9, count: 1024))
        #expect(calls.receiveData(largest, stream: HTTP2StreamID(3), endStream: true)
            == .call(HTTP2StreamID(3), .shouldRateLimit, ByteBuffer(bytes: Array(repeating: 9, count: 1024))))
    }

    @Test func theConnectionWindowIsToppedUpOnceHalfUsed() {
        let window = GRPCUnaryCalls.connectionWindow
        #expect(GRPCUnaryCalls.windowIncrement(inboundWindow: window) == nil)
        #expect(GRPCUnaryCalls.windowIncrement(inboundWindow: window / 2 + 1) == nil)
        #expect(GRPCUnaryCalls.windowIncrement(inboundWindow: window / 2) == window / 2)
        #expect(GRPCUnaryCalls.windowIncrement(inboundWindow: 0) == window)
    }

    @Test func aLongUnknownPathIsQuotedShortened() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        let path = "/" + String(repeating: "x", count: 10_000)
        guard case .fail(_, let status, _) = calls.receiveHeaders(Self.request(path: path), stream: stream, endStream: true) else {
            Issue.record("not refused")
            return
        }
        #expect(status.message == "unknown method " + String(path.prefix(GRPCUnaryCalls.maxStatusMessage)) + "…")
    }

    @Test func quiescingLetsOpenCallsFinishAndRefusesNewOnes() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(), stream: stream, endStream: false)
        calls.quiesce()
        #expect(!calls.canClose)
        #expect(calls.receiveHeaders(Self.request(), stream: HTTP2StreamID(3), endStream: false)
            == .fail(HTTP2StreamID(3), GRPCStatus(.unavailable, "the server is shutting down"), reset: true))
        #expect(data(&calls, Self.frame([4])) == .call(stream, .shouldRateLimit, ByteBuffer(bytes: [4])))
        #expect(calls.canClose)
    }

    @Test func aResetStreamIsForgotten() {
        var calls = GRPCUnaryCalls(maxMessageBytes: 1024)
        _ = calls.receiveHeaders(Self.request(), stream: stream, endStream: false)
        calls.streamClosed(stream)
        #expect(calls.openCalls == 0)
        #expect(data(&calls, Self.frame([1])) == nil)
    }

    @Test func statusMessagesArePercentEncoded() {
        #expect(GRPCStatus(.internalError, "50% off: é\n").encodedMessage == "50%25 off: %C3%A9%0A")
    }
}
