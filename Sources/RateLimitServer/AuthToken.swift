import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The token every listener that decides asks for (`auth_token_file`): `AUTH <token>` on the client port,
/// `authorization: Bearer <token>` on the gRPC port. Replaced on SIGHUP; connections already authenticated
/// stay so, as in Redis when `requirepass` changes. Failures are counted per listener and logged (never the
/// token), at most one line per 10 s.
public final class AuthToken: Sendable {
    private let token: NIOLockedValueBox<[UInt8]>
    private let failures = ListenerCounts()
    private let logThrottle: LogThrottle
    private let logger: Logger

    public init(_ token: [UInt8], logger: Logger, now: @escaping @Sendable () -> Int64) {
        self.token = NIOLockedValueBox(token)
        self.logger = logger
        self.logThrottle = LogThrottle(now: now)
    }

    public func replace(with token: [UInt8]) {
        self.token.withLockedValue { $0 = token }
    }

    /// Whether `candidate` is the token, in time that depends on the token's length only: every byte is
    /// compared whatever the first difference, so timing tells an attacker nothing of how much was right.
    public func matches(_ candidate: some Collection<UInt8>) -> Bool {
        let token = self.token.withLockedValue { $0 }
        var difference = UInt8(truncatingIfNeeded: token.count ^ candidate.count)
        var index = candidate.startIndex
        for byte in token {
            let other = index == candidate.endIndex ? ~byte : candidate[index]
            difference |= byte ^ other
            if index != candidate.endIndex { candidate.formIndex(after: &index) }
        }
        return difference == 0 && token.count == candidate.count
    }

    /// An HTTP `authorization` header's value: `Bearer <token>` (the scheme in any letter case).
    public func matches(authorization: String?) -> Bool {
        guard let value = authorization?.utf8, value.count > 7,
            value.prefix(7).map({ $0 | 0x20 }).elementsEqual("bearer ".utf8)
        else { return false }
        return matches(value.dropFirst(7))
    }

    /// Counts a failed authentication on `listener` and logs it.
    public func recordFailure(on listener: Listener, peer: SocketAddress?, reason: String) {
        failures.add(on: listener)
        logThrottle.log(logger, .warning, "authentication failed", listener: listener, peer: peer, ["reason": "\(reason)"])
    }

    public func failures(on listener: Listener) -> Int {
        failures.count(on: listener)
    }

    public var totalFailures: Int { failures.total }
}
