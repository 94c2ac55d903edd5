import Logging
import Testing

@testable import RateLimitServer

@Suite("the auth token")
struct AuthTokenTests {
    let auth = AuthToken(Array("secret".utf8), logger: Logger(label: "test"), now: { 0 })

    @Test(arguments: ["secret"])
    func theTokenMatches(_ candidate: String) {
        #expect(auth.matches(Array(candidate.utf8)))
        #expect(auth.matches(candidate.utf8))
    }

    @Test(arguments: ["", "s", "secre", "secret ", "secrets", "Secret", "secreT", "tercES", "secret\n", "xsecret"])
    func nothingElseDoes(_ candidate: String) {
        #expect(!auth.matches(Array(candidate.utf8)))
    }

    @Test func aBearerHeaderNamesTheSchemeInAnyCase() {
        #expect(auth.matches(authorization: "Bearer secret"))
        #expect(auth.matches(authorization: "bearer secret"))
        #expect(auth.matches(authorization: "BEARER secret"))
        for header in [nil, "", "Bearer", "Bearer ", "Bearer  secret", "Basic secret", "secret", "Bearer secret2", "Bearersecret"] {
            #expect(!auth.matches(authorization: header), "\(header ?? "nil")")
        }
    }

    @Test func aReplacedTokenIsTheOnlyOne() {
        let auth = AuthToken(Array("old".utf8), logger: Logger(label: "test"), now: { 0 })
        auth.replace(with: Array("new".utf8))
        #expect(auth.matches("new".utf8) && !auth.matches("old".utf8))
    }

    @Test func failuresAreCountedPerListener() {
        let auth = AuthToken(Array("t".utf8), logger: Logger(label: "test"), now: { 0 })
        auth.recordFailure(on: .client, peer: nil, reason: "wrong token")
        auth.recordFailure(on: .client, peer: nil, reason: "wrong token")
        auth.recordFailure(on: .envoy, peer: nil, reason: "wrong token")
        #expect(auth.failures(on: .client) == 2 && auth.failures(on: .envoy) == 1 && auth.totalFailures == 3)
    }
}
