import Foundation
import TestSupport
import Testing

/// `GET /check` on the real binary with curl: statuses, headers, keys from the forwarded client, errors,
/// and the same token, connection limit and decisions (local or shared through Redis) as the client port.
@Suite("HTTP check endpoint", .serialized, .timeLimit(.minutes(3)))
struct HTTPEndpointTests {
    @Test func statusesHeadersAndTheForwardedClient() throws {
        let (daemon, http) = try Gateways.daemon()
        let url = "http://127.0.0.1:\(http)/check"
        let exchanges = try Gateways.countDown(port: http, path: "/check?key=ip:a")
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429])
        #expect(exchanges.map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0", "0"])
        #expect(exchanges.first?.headers["content-type"] == "text/plain; charset=utf-8")
        #expect(exchanges.first?.headers["cache-control"] == "no-store")
        #expect(exchanges.first?.headers["retry-after"] == nil)
        let denied = try #require(exchanges.last)
        #expect(719...720 ~= Int(denied.headers["retry-after"] ?? "") ?? -1)
        #expect(denied.headers["retry-after"] == denied.headers["ratelimit-reset"])
        #expect(denied.body.hasPrefix("DENY 0 "))

        // prefix= keys on the first X-Forwarded-For hop, then X-Real-IP, then the peer.
        let forwarded = try HTTPExchange.get("\(url)?prefix=ip:&cost=2", headers: ["X-Forwarded-For": "203.0.113.9, 10.0.0.1"])
        #expect(forwarded.status == 200 && forwarded.headers["ratelimit-remaining"] == "3")
        let real = try HTTPExchange.get("\(url)?prefix=ip:&cost=3", headers: ["X-Real-IP": "203.0.113.9"])
        #expect(real.status == 200 && real.headers["ratelimit-remaining"] == "0")
        let peer = try HTTPExchange.get("\(url)?prefix=ip:")
        #expect(peer.status == 200 && peer.headers["ratelimit-remaining"] == "4")
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("CHECK ip:203.0.113.9 0").hasPrefix("ALLOW 0 "))
        #expect(try line.request("CHECK ip:127.0.0.1 0").hasPrefix("ALLOW 4 "))

        // A cost that can never fit: 429 without Retry-After; deny_status per request.
        let never = try HTTPExchange.get("\(url)?key=ip:b&cost=6&deny_status=403")
        #expect(never.status == 403 && never.headers["retry-after"] == nil && never.body == "DENY 5 -1\n")
    }

    @Test func badRequestsAre400WithTheErrorLineAndChangeNothing() throws {
        let (daemon, http) = try Gateways.daemon()
        let url = "http://127.0.0.1:\(http)"
        let cases: [(String, Int, String)] = [
            ("/check?key=user:1", 400, "ERR no_rule no rule matches key 'user:1'\n"),
            ("/check?key=ip:a&cost=lots", 400, "ERR bad_cost cost must be an integer from 0 to 1000000000, got 'lots'\n"),
            ("/check?key=ip:a%20b", 400, "ERR bad_key keys are printable ASCII without spaces or control bytes\n"),
            ("/check?key=ip:a&limit=5", 400, "ERR bad_limit limit must be <limit>/<window> such as 100/1m (units ms, s, m, h, d), got '5'\n"),
            ("/check?key=ip:a&burst=9", 400, "ERR wrong_arguments unknown parameter 'burst'; /check takes key, prefix, cost, limit, algorithm, deny_status\n"),
            ("/check", 400, "ERR wrong_arguments give key=<key>, or prefix=<prefix> to key on the client's address\n"),
            ("/", 404, "not found; checks are GET /check?key=<key>[&cost=<n>]\n"),
        ]
        for (path, status, body) in cases {
            let exchange = try HTTPExchange.get(url + path)
            #expect(exchange.status == status && exchange.body == body, "\(path): \(exchange)")
        }
        #expect(try HTTPExchange.get(url + "/check?key=ip:a", method: "POST").status == 405)
        // A request's own limit is honoured as CHECK's is, with no rule.
        let own = try HTTPExchange.get(url + "/check?key=user:1&limit=2/1m&algorithm=fixed_window")
        #expect(own.status == 200 && own.headers["ratelimit-remaining"] == "1")
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("CHECK ip:a 0") == "ALLOW 5 0")
        #expect(try line.statistics()["connections"] == 1, "HTTP connections are not client connections")
    }

    @Test func theTokenTheConnectionLimitAndTheDenyStatusApply() throws {
        let tokenFile = try AuthTests.tokenFile()
        let (daemon, http) = try Gateways.daemon([
            "--auth-token-file", tokenFile, "--max-connections", "2", "--http-deny-status", "403",
        ])
        let url = "http://127.0.0.1:\(http)/check?key=ip:a&cost=5"
        let missing = try HTTPExchange.get(url)
        #expect(missing.status == 401 && missing.headers["www-authenticate"] == "Bearer")
        #expect(missing.body == "ERR noauth authentication required; send Authorization: Bearer <token>\n")
        #expect(try HTTPExchange.get(url, headers: ["Authorization": "Bearer nope"]).status == 401)
        let bearer = ["Authorization": "Bearer \(AuthTests.token)"]
        #expect(try HTTPExchange.get(url, headers: bearer).status == 200)
        #expect(try HTTPExchange.get(url, headers: bearer).status == 403)
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("AUTH \(AuthTests.token)") == "OK")
        #expect(try line.statistics()["auth_failures"] == 2)
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_auth_failures_total{listener=\"http\"} 2"), "\(metrics)")

        // max_connections counts every listener: with two client connections open, HTTP is refused (503).
        let other = try LineClient(port: daemon.port)
        #expect(try other.request("PING") == "PONG")
        let busy = try HTTPExchange.get(url, headers: bearer)
        #expect(busy.status == 503 && busy.body == "busy: too many connections\n", "\(busy)")
    }

    @Test(.enabled(if: ExternalTool.available("redis-server")))
    func sharedModeDecidesThroughRedisAndSIGTERMDrains() throws {
        let redis = try RedisServerProcess()
        let (daemon, http) = try Gateways.daemon(["--redis", redis.url, "--redis-mode", "shared", "--redis-timeout", "2s"])
        let exchanges = try Gateways.countDown(port: http, path: "/check?key=ip:a")
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(daemon.log)")
        #expect(exchanges.map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0", "0"])
        let stats = try LineClient(port: daemon.port).statistics()
        #expect(stats["shared_decided"] == 6 && stats["shared_fallbacks"] == 0 && stats["shared_errors"] == 0, "\(stats)")
        #expect(try daemon.signalAndWait(SIGTERM) == 0, "\(daemon.log)")
        #expect(daemon.log.contains("info stopped"), "\(daemon.log)")
    }
}
