import Foundation
import TestSupport
import Testing

/// `auth_token_file` against the real binary: the line protocol, Redis clients (redis-cli, redis-py over
/// RESP2 and RESP3), gRPC with grpcio and a real Envoy, reloads, and the file's own checks.
@Suite("authentication", .serialized, .timeLimit(.minutes(3)))
struct AuthTests {
    static let token = "s3cret-Token_42"

    /// A token file the daemon's user owns, mode 600 unless told otherwise.
    static func tokenFile(_ contents: String = token + "\n", mode: Int = 0o600) throws -> String {
        let path = try temporaryFile(contents, suffix: ".token")
        try Unprivileged.handOver(path)
        chmod(path, mode_t(mode))
        return path
    }

    @Test func everyCommandButAFewWaitsForTheTokenAndAWrongOneIsCountedNotLogged() throws {
        let daemon = try DaemonProcess(arguments: ["--auth-token-file", try Self.tokenFile()])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("PING") == "PONG")
        for request in ["CHECK user:1 1", "RESET user:1", "STATS", "CHECK user:1 1 5/1s"] {
            #expect(try client.request(request) == "ERR noauth authentication required; send AUTH <token>", "\(request)")
        }
        #expect(try client.request("AUTH not-the-token") == "ERR wrong_token invalid username-password pair or user is disabled.")
        #expect(try client.request("AUTH someone \(Self.token)") == "ERR wrong_token invalid username-password pair or user is disabled.")
        #expect(try client.request("CHECK user:1 1") == "ERR noauth authentication required; send AUTH <token>")
        #expect(try client.request("AUTH \(Self.token)") == "OK")
        #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
        // Authentication belongs to a connection: another one starts without it.
        let other = try LineClient(port: daemon.port)
        #expect(try other.request("CHECK user:1 1") == "ERR noauth authentication required; send AUTH <token>")
        #expect(try other.request("AUTH default \(Self.token)") == "OK")
        // The same key, one unit of it spent by the first connection (the reset time depends on the clock).
        #expect(try other.request("CHECK user:1 1").hasPrefix("ALLOW 98 "))
        let stats = try client.statistics()
        #expect(stats["auth_failures"] == 2, "\(stats)")
        #expect(daemon.waitForLog("authentication failed"), "\(daemon.log)")
        #expect(daemon.log.contains("listener=client"), "\(daemon.log)")
        #expect(!daemon.log.contains(Self.token) && !daemon.log.contains("not-the-token"), "\(daemon.log)")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_auth_failures_total{listener=\"client\"} 2"), "\(metrics)")
        #expect(try client.request("QUIT") == "BYE")
    }

    @Test(.enabled(if: ExternalTool.required || ExternalTool.available("redis-cli")))
    func redisCLIAuthenticatesWithDashA() throws {
        let daemon = try DaemonProcess(arguments: ["--auth-token-file", try Self.tokenFile()])
        let port = "\(daemon.port)"
        let with = try ExternalTool.run("redis-cli", ["-p", port, "--no-auth-warning", "-a", Self.token, "CHECK", "cli:1", "1"])
        #expect(with.output == "ALLOW\n99\n600\n", "\(with.output)")
        let resp3 = try ExternalTool.run("redis-cli", ["-3", "-p", port, "--no-auth-warning", "--user", "default", "--pass", Self.token, "CHECK", "cli:1", "1"])
        #expect(resp3.output.hasPrefix("ALLOW\n98\n"), "\(resp3.output)")
        let without = try ExternalTool.run("redis-cli", ["-p", port, "CHECK", "cli:1", "1"])
        #expect(without.output.contains("NOAUTH authentication required"), "\(without.output)")
        let wrong = try ExternalTool.run("redis-cli", ["-p", port, "--no-auth-warning", "-a", "wrong", "CHECK", "cli:1", "1"])
        #expect(wrong.output.contains("WRONGPASS"), "\(wrong.output)")
    }

    @Test(.enabled(if: ExternalTool.required || ExternalTool.available("python3")))
    func redisPyConnectsWithAPasswordOverRESP2AndRESP3() throws {
        let daemon = try DaemonProcess(arguments: ["--auth-token-file", try Self.tokenFile()])
        let script = """
            import sys, redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
            port, token = int(sys.argv[1]), sys.argv[2]
            # redis-py retries an AuthenticationError (a ConnectionError) ten times; once is what is tested.
            once = Retry(NoBackoff(), 0)
            for protocol in (2, 3):
                client = redis.Redis(port=port, password=token, protocol=protocol)
                assert client.execute_command("CHECK", "py:%d" % protocol, 1) == [b"ALLOW", 99, 600], protocol
                for bad in (redis.Redis(port=port, password="wrong", protocol=protocol, retry=once),
                            redis.Redis(port=port, username="other", password=token, protocol=protocol, retry=once)):
                    try:
                        bad.execute_command("CHECK", "py:x", 1)
                        raise SystemExit("no error for wrong credentials over RESP%d" % protocol)
                    except redis.AuthenticationError as error:
                        assert "invalid username-password pair" in str(error), str(error)
            try:
                redis.Redis(port=port, protocol=2, retry=once).execute_command("CHECK", "py:x", 1)
                raise SystemExit("no error without a password")
            except redis.AuthenticationError as error:
                assert "authentication required" in str(error), str(error)
            print("ok")
            """
        let result = try ExternalTool.run(
            "python3", ["-c", script, "\(daemon.port)", Self.token], environment: Self.pythonEnvironment)
        #expect(result.status == 0 && result.output == "ok\n", "\(result.output)")
        // Two wrong tokens and two unknown users, one each over RESP2 (AUTH) and RESP3 (HELLO 3 AUTH).
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("AUTH \(Self.token)") == "OK")
        #expect(try client.statistics()["auth_failures"] == 4)
    }

    static var pythonEnvironment: [String: String] {
        ProcessInfo.processInfo.environment["RATELIMITD_PYTHONPATH"].map { ["PYTHONPATH": $0] } ?? [:]
    }

    @Test func aReloadedTokenIsAskedOfNewAuthenticationsAndAuthenticatedConnectionsStay() throws {
        let path = try Self.tokenFile()
        let daemon = try DaemonProcess(arguments: ["--auth-token-file", path])
        let before = try LineClient(port: daemon.port)
        #expect(try before.request("AUTH \(Self.token)") == "OK")
        try "next-token\n".write(toFile: path, atomically: false, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("reloaded the auth token"), "\(daemon.log)")
        #expect(try before.request("CHECK reload:1 1") == "ALLOW 99 600")
        let after = try LineClient(port: daemon.port)
        #expect(try after.request("AUTH \(Self.token)").hasPrefix("ERR wrong_token"))
        #expect(try after.request("AUTH next-token") == "OK")
        // A file that no longer holds a token is refused, and the token in force stays.
        try "two words\n".write(toFile: path, atomically: false, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("configuration not reloaded"), "\(daemon.log)")
        #expect(try LineClient(port: daemon.port).request("AUTH next-token") == "OK")
    }

    @Test func theFileIsCheckedAndAFileOthersCanReadIsWarnedOf() throws {
        for (contents, message) in [
            ("", "must hold one token of 1 to 512 printable ASCII bytes without spaces"),
            ("two words", "must hold one token"),
            (String(repeating: "x", count: 513), "must hold one token"),
        ] {
            let result = try DaemonProcess.runToExit(["--auth-token-file", try Self.tokenFile(contents), "--check-config"])
            #expect(result.status == 1 && result.output.contains(message), "\(contents.prefix(20)): \(result.output)")
        }
        let missing = try DaemonProcess.runToExit(["--auth-token-file", "/nonexistent/token", "--check-config"])
        #expect(missing.status == 1 && missing.output.contains("auth_token_file: /nonexistent/token does not exist"), "\(missing.output)")
        let directory = try DaemonProcess.runToExit(["--auth-token-file", "/tmp", "--check-config"])
        #expect(directory.status == 1 && directory.output.contains("/tmp is not a regular file (a directory)"), "\(directory.output)")
        let exposed = try DaemonProcess.runToExit(
            ["--auth-token-file", try Self.tokenFile(mode: 0o644), "--listen", "0.0.0.0:0", "--check-config"])
        #expect(exposed.status == 0, "\(exposed.output)")
        #expect(exposed.output.contains("can be read by its group or by everyone; chmod 600 it"), "\(exposed.output)")
        // With a token, listening beyond loopback is not warned of.
        #expect(!exposed.output.contains("nothing authenticates clients"), "\(exposed.output)")
        #expect(exposed.output.contains("auth_token_file = "), "\(exposed.output)")
        let file = try DaemonProcess.runToExit([
            "--config", try temporaryFile("[server]\nauth_token_file = \"\(try Self.tokenFile())\"\n"), "--check-config",
        ])
        #expect(file.status == 0 && file.output.contains("clients must AUTH"), "\(file.output)")
    }

    @Test func withoutATokenAuthIsAnErrorAndTheDefaultUserPassesAsInRedis() throws {
        let daemon = try DaemonProcess(arguments: [])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("AUTH whatever").hasPrefix("ERR no_token AUTH <token> called but no auth_token_file is configured"))
        #expect(try client.request("AUTH default whatever") == "OK")
        #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
    }
}
