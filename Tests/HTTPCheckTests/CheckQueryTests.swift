import RateLimiting
import Testing
import WireProtocol

@testable import HTTPCheck

/// `/check`'s query string: every value checked as `CHECK` checks the same word, with the same error codes.
@Suite("GET /check query")
struct CheckQueryTests {
    func parse(_ query: String, client: String? = "203.0.113.9") throws(ProtocolError) -> CheckQuery {
        try CheckQuery.parse(query[...]) { client }
    }

    func error(_ query: String, client: String? = "203.0.113.9") -> ProtocolError? {
        do {
            _ = try parse(query, client: client)
            return nil
        } catch {
            return error
        }
    }

    @Test func keyCostAndLimit() throws {
        #expect(try parse("key=user:1") == CheckQuery(key: Array("user:1".utf8)))
        #expect(try parse("key=user%3A1&cost=5").cost == 5)
        #expect(try parse("cost=0&key=a").cost == 0)
        let limited = try parse("key=a&limit=100/1m&algorithm=sliding_window_log")
        #expect(limited.limit == (try Limit(algorithm: .slidingWindowLog, limit: 100, windowNanos: 60_000_000_000)))
        #expect(try parse("key=a&limit=5/1s").limit?.algorithm == .tokenBucket)
        #expect(try parse("key=a&deny_status=403").denyStatus == 403)
        // `+` is a plus, as RFC 3986 reads it; a space could never be in a key.
        #expect(try parse("key=a+b").key == Array("a+b".utf8))
        #expect(try parse("&&key=a&").key == Array("a".utf8))
    }

    @Test func prefixKeysOnTheClientAddress() throws {
        #expect(try parse("prefix=ip:").key == Array("ip:203.0.113.9".utf8))
        #expect(try parse("prefix=", client: "2001:db8::1").key == Array("2001:db8::1".utf8))
        #expect(error("prefix=ip:", client: nil)?.code == .badKey)
        // An address that is no key byte for byte (a forged header) is refused, never truncated.
        #expect(error("prefix=ip:", client: "1.2.3.4 1 1000000/1s")?.code == .badKey)
    }

    @Test func mistakesAreRefusedWithTheLineProtocolsCodes() {
        #expect(error("") == ProtocolError(
            .wrongArguments, "give key=<key>, or prefix=<prefix> to key on the client's address"))
        #expect(error("key=a&prefix=b") == ProtocolError(.wrongArguments, "give key= or prefix=, not both"))
        #expect(error("key=a&key=b") == ProtocolError(.wrongArguments, "key is given twice"))
        #expect(error("key=a&cots=1") == ProtocolError(
            .wrongArguments, "unknown parameter 'cots'; /check takes key, prefix, cost, limit, algorithm, deny_status"))
        #expect(error("key=a%2") == ProtocolError(.wrongArguments, "key has a malformed percent-escape"))
        #expect(error("key=a%zz")?.code == .wrongArguments)
        #expect(error("key=a%20b") == ProtocolError(.badKey, "keys are printable ASCII without spaces or control bytes"))
        #expect(error("key=a%0Ab")?.code == .badKey)
        #expect(error("key=")?.code == .badKey)
        #expect(error("key=" + String(repeating: "k", count: 257))?.code == .badKey)
        #expect(error("key=a&cost=1000000001")?.code == .badCost)
        #expect(error("key=a&cost=-1")?.code == .badCost)
        #expect(error("key=a&limit=5")?.code == .badLimit)
        #expect(error("key=a&limit=5/1s&algorithm=magic")?.code == .badAlgorithm)
        #expect(error("key=a&algorithm=fixed_window") == ProtocolError(
            .wrongArguments, "algorithm= goes with limit=; a rule's algorithm is its own"))
        #expect(error("key=a&deny_status=200") == ProtocolError(
            .wrongArguments, "deny_status must be from 400 to 499, got '200'"))
        #expect(error("key=a&deny_status=+429")?.code == .wrongArguments)
    }

    @Test func theClientAddressIsTheFirstForwardedHopThenRealIPThenThePeer() {
        #expect(ClientAddress.resolve(forwardedFor: " 203.0.113.9 , 10.0.0.1", realIP: "10.0.0.2", peer: "127.0.0.1")
            == "203.0.113.9")
        #expect(ClientAddress.resolve(forwardedFor: "2001:db8::1", realIP: nil, peer: nil) == "2001:db8::1")
        #expect(ClientAddress.resolve(forwardedFor: " ,10.0.0.1", realIP: " 10.0.0.2 ", peer: "127.0.0.1") == "10.0.0.2")
        #expect(ClientAddress.resolve(forwardedFor: nil, realIP: "", peer: "127.0.0.1") == "127.0.0.1")
        #expect(ClientAddress.resolve(forwardedFor: nil, realIP: nil, peer: nil) == nil)
    }

    @Test func headersCountWholeSecondsRoundedUp() {
        #expect(CheckResponse.secondsRoundingUp(0) == 0)
        #expect(CheckResponse.secondsRoundingUp(1) == 1)
        #expect(CheckResponse.secondsRoundingUp(1_000) == 1)
        #expect(CheckResponse.secondsRoundingUp(1_001) == 2)
    }
}
