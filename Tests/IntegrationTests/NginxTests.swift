import Foundation
import TestSupport
import Testing

/// `contrib/nginx/ratelimitd.lua` in a real nginx (Debian's, with libnginx-mod-http-lua), loaded from where
/// `scripts/install` puts it, configured as `contrib/nginx/ratelimitd.conf` (README's copy), as the
/// unprivileged user.
@Suite("nginx with the Lua module", .serialized, .timeLimit(.minutes(3)))
struct NginxTests {
    /// nginx with `site` (a file for nginx's http block) on its own prefix: one worker, logs in the prefix.
    static func nginx(site: String, frontPort: Int) throws -> GatewayProcess {
        let main = """
            load_module /usr/lib/nginx/modules/ndk_http_module.so;
            load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
            worker_processes 1;
            pid {dir}/nginx.pid;
            error_log {dir}/error.log notice;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path {dir}/body;
                proxy_temp_path {dir}/proxy;
                fastcgi_temp_path {dir}/fastcgi;
                uwsgi_temp_path {dir}/uwsgi;
                scgi_temp_path {dir}/scgi;
                include {dir}/site.conf;
            }

            """
        let nginx = try #require(ExternalTool.find("nginx"), "nginx is not installed (scripts/test installs it)")
        return try GatewayProcess(
            "nginx", executable: nginx,
            arguments: ["-p", "{dir}", "-e", "{dir}/error.log", "-c", "{dir}/nginx.conf", "-g", "daemon off;"],
            files: ["nginx.conf": main, "site.conf": site], readyPort: frontPort)
    }

    /// README's site, with free ports, asking the daemon on `daemonPort`, with `more` replacements.
    static func site(daemonPort: Int, more: [(String, String)] = []) throws -> (text: String, front: Int) {
        let front = try RedisServerProcess.freePort()
        let application = try RedisServerProcess.freePort()
        let share = try InstalledTree.share(repository: Gateways.root)
        let text = try Gateways.contrib("nginx/ratelimitd.conf", [
            ("/usr/local/share/ratelimitd/nginx/", "\(share)/nginx/"),
            ("listen 127.0.0.1:8080;", "listen 127.0.0.1:\(front);"),
            ("127.0.0.1:8090", "127.0.0.1:\(application)"),
            ("port = 7283", "port = \(daemonPort)"),
        ] + more)
        return (text, front)
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func countsDownThenAnswers429WithRetryAfterOnTheDaemonsBucket() throws {
        let (daemon, _) = try Gateways.daemon()
        let (site, front) = try Self.site(daemonPort: daemon.port)
        let nginx = try Self.nginx(site: site, frontPort: front)
        let exchanges = try Gateways.countDown(port: front)
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(nginx.output("error.log"))")
        #expect(exchanges.prefix(5).map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0"])
        #expect(exchanges.prefix(5).map(\.body) == Array(repeating: "hello from the application\n", count: 5))
        for (index, exchange) in exchanges.prefix(5).enumerated() {
            let reset = Int(exchange.headers["ratelimit-reset"] ?? "") ?? -1
            #expect((index + 1) * 720 - 1...(index + 1) * 720 ~= reset, "\(exchange.headers)")
        }
        let denied = try #require(exchanges.last)
        #expect(719...720 ~= Int(denied.headers["retry-after"] ?? "") ?? -1, "\(denied.headers)")
        #expect(denied.headers["ratelimit-remaining"] == "0")
        // The same bucket the line protocol sees.
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("CHECK ip:127.0.0.1 0").hasPrefix("ALLOW 0 "))
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func aWorkerKeepsOneConnectionAcrossRequests() throws {
        let (daemon, _) = try Gateways.daemon()
        let line = try LineClient(port: daemon.port)
        let before = try line.statistics()["total_connections"]
        let (site, front) = try Self.site(daemonPort: daemon.port)
        let nginx = try Self.nginx(site: site, frontPort: front)
        var statuses: [Int: Int] = [:]
        for _ in 0..<100 { statuses[try HTTPExchange.get("http://127.0.0.1:\(front)/").status, default: 0] += 1 }
        #expect(statuses == [200: 5, 429: 95], "\(nginx.output("error.log"))")
        // One worker: one connection, opened by its first request and taken from the pool by the other 99.
        #expect(try line.statistics()["total_connections"] == before.map { $0 + 1 })
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func anUnreachableOrSilentDaemonFailsOpenOrClosedAsConfigured() throws {
        let dead = try RedisServerProcess.freePort()
        let silent = try Gateways.silentPort()
        defer { close(silent.fd) }
        for (port, failOpen, why) in [
            (dead, true, "connection refused"), (silent.port, true, "timeout"),
            (dead, false, "connection refused"), (silent.port, false, "timeout"),
        ] {
            let (site, front) = try Self.site(
                daemonPort: port, more: failOpen ? [] : [("fail_open = true", "fail_open = false")])
            let nginx = try Self.nginx(site: site, frontPort: front)
            let started = Date()
            let exchanges = try (0..<3).map { _ in try HTTPExchange.get("http://127.0.0.1:\(front)/") }
            let elapsed = Date().timeIntervalSince(started)
            #expect(exchanges.map(\.status) == Array(repeating: failOpen ? 200 : 503, count: 3), "\(nginx.output("error.log"))")
            #expect(exchanges.allSatisfy { $0.headers["ratelimit-remaining"] == nil })
            let log = nginx.output("error.log")
            let logged = log.components(separatedBy: "ratelimitd: ").count - 1
            // At most once a second per worker.
            #expect(logged >= 1 && logged <= Int(elapsed) + 1, "\(log)")
            #expect(log.contains("ratelimitd: cannot connect to 127.0.0.1:\(port): \(why)")
                || log.contains("ratelimitd: no answer from 127.0.0.1:\(port): \(why)"), "\(log)")
        }
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func theModuleAsksTheDaemonOnItsUnixSocket() throws {
        let directory = try Gateways.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socket = directory + "/ratelimitd.sock"
        let (daemon, _) = try Gateways.daemon(["--unix-socket", socket])
        #expect(daemon.log.contains("listening on 127.0.0.1:\(daemon.port) and \(socket)"), "\(daemon.log)")
        let (site, front) = try Self.site(
            daemonPort: daemon.port, more: [("host = \"127.0.0.1\", port = \(daemon.port)", "host = \"unix:\(socket)\"")])
        let nginx = try Self.nginx(site: site, frontPort: front)
        let exchanges = try Gateways.countDown(port: front)
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(nginx.output("error.log"))")
        #expect(exchanges.prefix(5).map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0"])
        // One connection, on the socket: the TCP port's client is the only other.
        let line = try LineClient(port: daemon.port)
        #expect(try line.statistics()["total_connections"] == 2)
        #expect(try daemon.signalAndWait(SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed at exit")
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func aPooledConnectionTheDaemonClosedLeavesThePool() throws {
        let (daemon, _) = try Gateways.daemon(["--idle-timeout", "200ms"])
        let (site, front) = try Self.site(daemonPort: daemon.port)
        let nginx = try Self.nginx(site: site, frontPort: front)
        #expect(try HTTPExchange.get("http://127.0.0.1:\(front)/").headers["ratelimit-remaining"] == "4")
        // The daemon closes the pooled connection once it has been idle long enough.
        let line = try LineClient(port: daemon.port)
        var closed = false
        for _ in 0..<100 where !closed {
            closed = try line.statistics()["idle_closed"] == 1
            if !closed { usleep(20_000) }
        }
        try #require(closed, "the pooled connection was not closed: \(daemon.log)")
        // nginx dropped it from the pool when it closed: the next request opens another, not failing open.
        let next = try HTTPExchange.get("http://127.0.0.1:\(front)/")
        #expect(next.status == 200 && next.headers["ratelimit-remaining"] == "3", "\(nginx.output("error.log"))")
        #expect(!nginx.output("error.log").contains("ratelimitd: "), "\(nginx.output("error.log"))")
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func anErrorReplyFailsOpenOrClosedAndIsLogged() throws {
        let (daemon, _) = try Gateways.daemon()
        // No rule matches this key: the daemon answers ERR no_rule.
        for failOpen in [true, false] {
            let (site, front) = try Self.site(
                daemonPort: daemon.port,
                more: [("key = \"ip:\" ..", "key = \"unruled:\" ..")] + (failOpen ? [] : [("fail_open = true", "fail_open = false")]))
            let nginx = try Self.nginx(site: site, frontPort: front)
            let exchange = try HTTPExchange.get("http://127.0.0.1:\(front)/")
            #expect(exchange.status == (failOpen ? 200 : 503) && exchange.headers["ratelimit-remaining"] == nil)
            #expect(nginx.output("error.log").contains(
                "ratelimitd: 127.0.0.1:\(daemon.port) answered: ERR no_rule no rule matches key 'unruled:127.0.0.1'"),
                "\(nginx.output("error.log"))")
        }
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func theTokenIsSentOncePerConnection() throws {
        let (daemon, _) = try Gateways.daemon(["--auth-token-file", try AuthTests.tokenFile()])
        for (token, works) in [(AuthTests.token, true), ("not-the-token", false)] {
            let (site, front) = try Self.site(
                daemonPort: daemon.port, more: [("fail_open = true }", "fail_open = true, token = \"\(token)\" }")])
            let nginx = try Self.nginx(site: site, frontPort: front)
            let exchanges = try (0..<3).map { _ in try HTTPExchange.get("http://127.0.0.1:\(front)/") }
            #expect(exchanges.map { $0.headers["ratelimit-remaining"] } == (works ? ["4", "3", "2"] : [nil, nil, nil]),
                    "\(nginx.output("error.log"))")
            #expect(nginx.output("error.log").contains("AUTH refused") == !works, "\(nginx.output("error.log"))")
        }
        // One connection authenticated once, then three refused ones (not pooled).
        let line = try LineClient(port: daemon.port)
        #expect(try line.request("AUTH \(AuthTests.token)") == "OK")
        let stats = try line.statistics()
        #expect(stats["auth_failures"] == 3 && stats["total_connections"] == 5, "\(stats)")
    }
}
