import NIOCore
import NIOHTTP1
import RateLimitServer
import RateLimiting
import ShardStore
import WireProtocol

/// Answers the HTTP listener's requests: `GET /check` (or `HEAD`) decided through the server's decider,
/// like `CHECK` on the client port, under the same rules and token. Everything but the socket, so one
/// request's whole path can be tested on its own.
struct HTTPChecker: Sendable {
    let ruleBook: RuleBook
    let decider: any Decider
    let clock: any DecisionClock
    let auth: AuthToken?
    /// The status of a denial when the request names none (`[http] deny_status`).
    let denyStatus: Int

    enum Outcome {
        case respond(CheckResponse)
        /// The decider answers later (shared mode); a denial then answers `denyStatus`.
        case later(denyStatus: Int)
    }

    static let path = "/check"

    /// `rules` is the connection's copy of the rule book's edition, refreshed here when a reload moved it
    /// on. A deferred decision comes to `waiter` with `ticket`.
    func answer(
        _ head: HTTPRequestHead, peer: SocketAddress?, rules: inout RuleBook.Edition, ticket: UInt64,
        waiter: any DecisionWaiter
    ) -> Outcome {
        let (path, query) = Self.split(head.uri)
        guard path == Self.path else {
            return .respond(CheckResponse(
                status: .notFound, headers: [], body: "not found; checks are GET /check?key=<key>[&cost=<n>]\n"))
        }
        guard head.method == .GET || head.method == .HEAD else {
            return .respond(CheckResponse(
                status: .methodNotAllowed, headers: [("Allow", "GET, HEAD")], body: "only GET and HEAD /check\n"))
        }
        if let auth {
            let authorization = head.headers.first(name: "authorization")
            guard auth.matches(authorization: authorization) else {
                auth.recordFailure(on: .http, peer: peer, reason: authorization == nil ? "no bearer token" : "wrong bearer token")
                let error = authorization == nil
                    ? ProtocolError(.noauth, "authentication required; send Authorization: Bearer <token>")
                    : ProtocolError.wrongToken
                var response = CheckResponse.error(error, status: .unauthorized)
                response.headers.append(("WWW-Authenticate", "Bearer"))
                return .respond(response)
            }
        }
        let request: CheckQuery
        do {
            request = try CheckQuery.parse(query) {
                ClientAddress.resolve(
                    forwardedFor: head.headers.first(name: "x-forwarded-for"), realIP: head.headers.first(name: "x-real-ip"),
                    peer: peer?.ipAddress)
            }
        } catch {
            return .respond(.error(error))
        }
        ruleBook.refresh(&rules)
        let denyStatus = request.denyStatus ?? self.denyStatus
        let result = request.key.withUnsafeBytes { [rules] key -> Result<ShardResult?, ProtocolError> in
            guard let (limit, slot) = rules.limit(for: key, given: request.limit) else { return .failure(.noRule(key: key)) }
            return .success(decider.run(
                .check(cost: request.cost, limit: limit), key: key, hash: KeyHash.hash(key), now: clock.nanosecondsNow(),
                slot: slot, ticket: ticket, waiter: waiter))
        }
        switch result {
        case .failure(let error): return .respond(.error(error))
        case .success(nil): return .later(denyStatus: denyStatus)
        case .success(.some(let answer)): return .respond(Self.response(to: answer, denyStatus: denyStatus))
        }
    }

    static func response(to result: ShardResult, denyStatus: Int) -> CheckResponse {
        switch result {
        case .decision(let decision): .decision(decision, denyStatus: denyStatus)
        // Only RESET answers this, and the listener never asks one.
        case .reset: CheckResponse(status: .internalServerError, headers: [], body: "unexpected answer\n")
        }
    }

    static func split(_ uri: String) -> (path: Substring, query: Substring) {
        // By bytes: finding a Character in a String walks grapheme clusters.
        guard let mark = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (uri[...], "") }
        return (uri[..<mark], uri[uri.utf8.index(after: mark)...])
    }
}

extension HTTPChecker {
    init(server: RateLimitServer, denyStatus: Int) {
        self.init(
            ruleBook: server.ruleBook, decider: server.decider, clock: server.configuration.clock, auth: server.auth,
            denyStatus: denyStatus)
    }
}
