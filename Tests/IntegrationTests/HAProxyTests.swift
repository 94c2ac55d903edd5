import Foundation
import TestSupport
import Testing

/// `contrib/haproxy/ratelimitd.lua` in a real HAProxy (Debian's, built with Lua), loaded from where
/// `scripts/install` puts it, configured as `contrib/haproxy/haproxy.cfg` (README's copy), as the
/// unprivileged user.
@Suite("HAProxy with the Lua action", .serialized, .timeLimit(.minutes(3)))
struct HAProxyTests {
    static func haproxy(daemonPort: Int, more: [(String, String)] = []) throws -> (GatewayProcess, front: Int) {
        let front = try RedisServerProcess.freePort()
        let application = try RedisServerProcess.freePort()
        let share = try InstalledTree.share(repository: Gateways.root)
        let config = try Gateways.contrib("haproxy/haproxy.cfg", [
            ("/usr/local/share/ratelimitd/haproxy/", "\(share)/haproxy/"),
            ("bind 127.0.0.1:8083", "bind 127.0.0.1:\(front)"),
            ("127.0.0.1:8090", "127.0.0.1:\(application)"),
            ("setenv RATELIMITD_ADDR 127.0.0.1:7283", "setenv RATELIMITD_ADDR 127.0.0.1:\(daemonPort)"),
        ] + more)
        let haproxy = try #require(ExternalTool.find("haproxy"), "haproxy is not installed (scripts/test installs it)")
        let process = try GatewayProcess(
            "haproxy", executable: haproxy, arguments: ["-db", "-f", "{dir}/haproxy.cfg"],
            files: ["haproxy.cfg": config], readyPort: front)
        return (process, front)
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func countsDownThenAnswers429WithRetryAfterOnTheDaemonsBucket() throws {
        let (daemon, _) = try Gateways.daemon()
        // The line protocol spends one of the client's five first: HAProxy sees what is left of the same bucket.
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("CHECK ip:127.0.0.1 1").hasPrefix("ALLOW 4 "))
        let (haproxy, front) = try Self.haproxy(daemonPort: daemon.port)
        let exchanges = try Gateways.countDown(port: front, limit: 4)
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 429], "\(haproxy.output())")
        #expect(exchanges.prefix(4).map { $0.headers["ratelimit-remaining"] } == ["3", "2", "1", "0"])
        #expect(exchanges.prefix(4).map(\.body) == Array(repeating: "hello from the application", count: 4))
        let denied = try #require(exchanges.last)
        #expect(719...720 ~= Int(denied.headers["retry-after"] ?? "") ?? -1, "\(denied.headers)")
        #expect(denied.headers["ratelimit-remaining"] == "0")
        #expect(try line.request("CHECK ip:127.0.0.1 0").hasPrefix("ALLOW 0 "))
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func anErrorNeverFailsTheRequestTheConfigurationDecides() throws {
        let dead = try RedisServerProcess.freePort()
        let silent = try Gateways.silentPort()
        defer { close(silent.fd) }
        for (port, refuse) in [(dead, false), (silent.port, false), (dead, true), (silent.port, true)] {
            let (haproxy, front) = try Self.haproxy(
                daemonPort: port,
                more: refuse ? [("    # http-request deny deny_status 503 if", "    http-request deny deny_status 503 if")] : [])
            let exchanges = try (0..<3).map { _ in try HTTPExchange.get("http://127.0.0.1:\(front)/") }
            #expect(exchanges.map(\.status) == Array(repeating: refuse ? 503 : 200, count: 3), "\(haproxy.output())")
            #expect(haproxy.output().contains(
                port == dead ? "ratelimitd: cannot connect to 127.0.0.1:\(port)" : "ratelimitd: no answer from 127.0.0.1:\(port) within 20 ms"),
                "\(haproxy.output())")
        }
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func theActionAsksTheDaemonOnItsUnixSocket() throws {
        let directory = try Gateways.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/ratelimitd.sock"
        let (daemon, _) = try Gateways.daemon(["--unix-socket", socket, "--unix-socket-mode", "0600"])
        // 0600: only the daemon's own user may connect, and HAProxy runs as that user here.
        var status = stat()
        #expect(stat(socket, &status) == 0 && status.st_mode & 0o777 == 0o600)
        let (haproxy, front) = try Self.haproxy(
            daemonPort: daemon.port,
            more: [("setenv RATELIMITD_ADDR 127.0.0.1:\(daemon.port)", "setenv RATELIMITD_ADDR \(socket)")])
        let exchanges = try Gateways.countDown(port: front)
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(haproxy.output())")
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func aThreadKeepsOneConnectionAndReplacesOneTheDaemonClosed() throws {
        let (daemon, _) = try Gateways.daemon(["--idle-timeout", "300ms"])
        let line = try LineClient(port: daemon.port)
        let before = try line.statistics()["total_connections"] ?? 0
        // One thread, so one pool: its one connection serves every check.
        let (haproxy, front) = try Self.haproxy(daemonPort: daemon.port, more: [("global\n", "global\n    nbthread 1\n")])
        var statuses: [Int: Int] = [:]
        for _ in 0..<20 { statuses[try HTTPExchange.get("http://127.0.0.1:\(front)/").status, default: 0] += 1 }
        #expect(statuses == [200: 5, 429: 15], "\(haproxy.output())")
        #expect(try line.statistics()["total_connections"] == before + 1)
        // The daemon closes it once idle; the next check opens another within the request, no ERROR.
        var closed = false
        for _ in 0..<100 where !closed {
            closed = try line.statistics()["idle_closed"] == 1
            if !closed { usleep(20_000) }
        }
        try #require(closed, "the pooled connection was not closed: \(daemon.log)")
        let next = try HTTPExchange.get("http://127.0.0.1:\(front)/")
        #expect(next.status == 429 && next.headers["retry-after"] != nil, "\(haproxy.output())")
        #expect(!haproxy.output().contains("ratelimitd: "), "\(haproxy.output())")
        #expect(try line.statistics()["total_connections"] == before + 2)
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func anErrorReplyIsTheErrorVerdict() throws {
        let (daemon, _) = try Gateways.daemon()
        let (haproxy, front) = try Self.haproxy(
            daemonPort: daemon.port,
            more: [("set-var-fmt(txn.ratelimitd_key) ip:%[src]", "set-var-fmt(txn.ratelimitd_key) unruled:%[src]"),
                   ("    # http-request deny deny_status 503 if", "    http-request deny deny_status 503 if")])
        #expect(try HTTPExchange.get("http://127.0.0.1:\(front)/").status == 503)
        #expect(haproxy.output().contains(
            "ratelimitd: 127.0.0.1:\(daemon.port) answered: ERR no_rule no rule matches key 'unruled:127.0.0.1'"),
            "\(haproxy.output())")
    }

    @Test(.enabled(if: ExternalTool.available("haproxy")))
    func theTokenIsSentOncePerConnection() throws {
        let (daemon, _) = try Gateways.daemon(["--auth-token-file", try AuthTests.tokenFile()])
        let (haproxy, front) = try Self.haproxy(
            daemonPort: daemon.port,
            more: [("global\n", "global\n    nbthread 1\n    setenv RATELIMITD_TOKEN \(AuthTests.token)\n")])
        let exchanges = try (0..<3).map { _ in try HTTPExchange.get("http://127.0.0.1:\(front)/") }
        #expect(exchanges.map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2"], "\(haproxy.output())")
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("AUTH \(AuthTests.token)") == "OK")
        let stats = try line.statistics()
        #expect(stats["auth_failures"] == 0 && stats["total_connections"] == 2, "\(stats)")
    }
}
