import Foundation
import TestSupport
import Testing

/// Envoy's gRPC rate limit service: driven by a real Envoy, and by Python stubs generated from Envoy's own
/// API definitions (xds-protos) with grpcio, against the real binary.
@Suite("Envoy rate limit service", .serialized, .timeLimit(.minutes(3)))
struct EnvoyTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The rules `Envoy/rls_checks.py` checks against.
    static let shopRules = """
        domain: shop
        descriptors:
          - key: user
            descriptors:
              - key: action
                value: buy
                rate_limit: {unit: day, requests_per_unit: 2, name: user_buys}
          - key: path
            value: /api/*
            rate_limit: {unit: day, requests_per_unit: 3}
          - key: internal
            rate_limit: {unlimited: true}
          - key: canary
            shadow_mode: true
            rate_limit: {unit: day, requests_per_unit: 1}
          - key: tier
            value: gold
            rate_limit: {unit: day, requests_per_unit: 10, name: gold, replaces: [{name: user_buys}]}
          - key: bucket
            rate_limit: {unit: day, requests_per_unit: 5, algorithm: token_bucket}
          - key: blocked
            rate_limit: {unit: second, requests_per_unit: 0}
          - key: group
            value: g*
            share_threshold: true
            rate_limit: {unit: day, requests_per_unit: 2}

        """

    static let readmeExample = envoyproxyReadmeExample

    func rulesDirectory(_ files: [String: String]) throws -> String {
        let directory = NSTemporaryDirectory() + "rl-envoy-rules-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(directory)/\(name)", atomically: true, encoding: .utf8) }
        return directory
    }


    func startDaemon(rules: String, _ extra: [String] = []) throws -> (DaemonProcess, port: Int) {
        let port = try RedisServerProcess.freePort()
        let daemon = try DaemonProcess(arguments: [
            "--envoy-listen", "127.0.0.1:\(port)", "--envoy-config", rules, "--config", try temporaryFile(slowRuleConfig),
        ] + extra)
        #expect(daemon.waitForLog("envoy rate limit service (gRPC) on 127.0.0.1:\(port)"), "\(daemon.log)")
        return (daemon, port)
    }

    /// `rls_checks.py`'s before-reload phase against a daemon in shared mode on `redisURL`: every answer
    /// checked, then the daemon's STATS.
    func checksInSharedMode(redisURL: String) throws -> [String: Int64] {
        let directory = try rulesDirectory(["shop.yaml": Self.shopRules])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (daemon, port) = try startDaemon(
            rules: directory, ["--redis", redisURL, "--redis-mode", "shared", "--redis-timeout", "2s"])
        let checks = try runChecks(port: port, phase: "before-reload")
        #expect(checks.status == 0, "\(checks.output)\n\(daemon.log)")
        return try LineClient(port: daemon.port).statistics()
    }

    func runChecks(port: Int, phase: String) throws -> (status: Int32, output: String) {
        let path = try #require(ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"])
        return try ExternalTool.run(
            "python3", ["\(Self.root)/Tests/IntegrationTests/Envoy/rls_checks.py", "\(port)", phase],
            environment: ["PYTHONPATH": path])
    }

    @Test(.enabled(if: ExternalTool.required || ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"] != nil))
    func everyRuleAnswersAsEnvoyproxyRatelimitsAndAReloadKeepsTheCounts() throws {
        let directory = try rulesDirectory(["shop.yaml": Self.shopRules, "messaging.yml": Self.readmeExample])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (daemon, port) = try startDaemon(rules: directory)

        let before = try runChecks(port: port, phase: "before-reload")
        #expect(before.status == 0, "\(before.output)\n\(daemon.log)")
        #expect(before.output.split(separator: "\n").count == 46, "\(before.output)")

        // One source of counts: STATS and /metrics agree, by domain and rule, never by value.
        let stats = try LineClient(port: daemon.port).statistics()
        // 46 checks: eight of them malformed requests or calls, refused before any decision, and three
        // health checks.
        #expect(stats["envoy_requests"] == 35)
        #expect(stats["envoy_over_limit"] == 8)
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        let lines = metrics.split(separator: "\n").filter { $0.hasPrefix("ratelimitd_envoy_decisions_total{") }
        func count(_ labels: [String]) -> Int? {
            lines.first { line in labels.allSatisfy { line.contains($0) } }.flatMap { Int($0.split(separator: " ").last ?? "") }
        }
        #expect(count(["domain=\"shop\"", "rule=\"user_buys\"", "result=\"over_limit\""]) == 2, "\(lines)")
        #expect(count(["domain=\"shop\"", "rule=\"shop.canary\"", "result=\"shadow_over_limit\""]) == 1, "\(lines)")
        #expect(count(["domain=\"(unknown)\"", "rule=\"(none)\""]) == 1, "\(lines)")
        #expect(!lines.contains { $0.contains("/api/x") || $0.contains("u1") }, "values never become labels: \(lines)")

        // SIGHUP: a new rule, every count kept.
        try (Self.shopRules + """
              - key: added
                rate_limit: {unit: hour, requests_per_unit: 5, name: added}

            """).write(toFile: "\(directory)/shop.yaml", atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("reloaded Envoy rules"), "\(daemon.log)")
        let after = try runChecks(port: port, phase: "after-reload")
        #expect(after.status == 0, "\(after.output)\n\(daemon.log)")

        // A bad file on reload: refused with the reason, the rules in force stay.
        try "domain: shop\ndescriptors:\n  - key: x\n    ratelimit: {}\n".write(
            toFile: "\(directory)/shop.yaml", atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("configuration not reloaded"), "\(daemon.log)")
        #expect(daemon.log.contains("shop.yaml:4: descriptor shop: unknown field 'ratelimit'"), "\(daemon.log)")
        let still = try runChecks(port: port, phase: "before-reload")
        #expect(still.output.contains("FAILED nested 1"), "the old counts and rules are still in force: \(still.output)")

        // SIGTERM drains the gRPC server with the other listeners and exits cleanly.
        #expect(try daemon.signalAndWait(SIGTERM) == 0, "\(daemon.log)")
        #expect(daemon.log.contains("info stopped"), "\(daemon.log)")
    }

    @Test func aBusyGRPCPortStopsStartUpWithTheReason() throws {
        let directory = try rulesDirectory(["messaging.yml": Self.readmeExample])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (first, port) = try startDaemon(rules: directory)
        let result = try DaemonProcess.runToExit([
            "--listen", "127.0.0.1:0", "--metrics-listen", "", "--envoy-listen", "127.0.0.1:\(port)", "--envoy-config", directory,
        ])
        #expect(result.status == 1)
        #expect(result.output.contains("cannot listen for Envoy (gRPC) on 127.0.0.1:\(port)"), "\(result.output)")
        #expect(!result.output.contains("listening on"), "the client port never opened: \(result.output)")
        #expect(try first.signalAndWait(SIGTERM) == 0)
    }

    @Test func aBadFileStopsStartUpNamingTheFileTheDescriptorAndTheField() throws {
        let directory = try rulesDirectory([
            "good.yaml": Self.readmeExample,
            "bad.yaml": "domain: shop\ndescriptors:\n  - key: user\n    descriptors:\n      - key: action\n        rate_limit:\n          unit: fortnight\n          requests_per_unit: 1\n",
        ])
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try DaemonProcess.runToExit(["--envoy-listen", "127.0.0.1:0", "--envoy-config", directory, "--listen", "127.0.0.1:0"])
        #expect(result.status == 1)
        #expect(result.output.contains("\(directory)/bad.yaml:7: descriptor shop.user.action: invalid rate limit unit 'fortnight'"), "\(result.output)")
        let check = try DaemonProcess.runToExit(["--envoy-listen", "127.0.0.1:0", "--envoy-config", "\(directory)/good.yaml", "--check-config"])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("1 domain (messaging)"), "\(check.output)")
        let unused = try DaemonProcess.runToExit(["--envoy-config", "\(directory)/good.yaml", "--check-config"])
        #expect(unused.status == 1)
        #expect(unused.output.contains("set [envoy] listen or --envoy-listen"), "\(unused.output)")
    }

    /// In local mode, and in shared mode (every descriptor decided in Redis).
    @Test(.enabled(if: ExternalTool.required || EnvoyProcess.binary != nil), arguments: [false, true])
    func aRealEnvoyCountsDownThenAnswers429AndEachClientHasItsOwnQuota(shared: Bool) throws {
        let redis = shared ? try RedisServerProcess() : nil
        let (daemon, port) = try startDaemon(
            rules: "\(Self.root)/contrib/envoy/ratelimit.yaml", redis.map { ["--redis", $0.url, "--redis-mode", "shared", "--redis-timeout", "2s"] } ?? [])
        let envoy = try EnvoyProcess(configPath: "\(Self.root)/contrib/envoy/envoy.yaml", rateLimitPort: port)
        for remaining in ["2", "1", "0"] {
            let response = try envoy.get(headers: ["x-client": "alice"])
            #expect(response.status == 200, "\(response)\n\(daemon.log)")
            #expect(response.headers["x-ratelimit-remaining"] == remaining, "\(response.headers)")
            let limit = response.headers["x-ratelimit-limit"] ?? ""
            #expect(limit.hasPrefix("3, ") && limit.contains("1000;w=3600") && limit.contains("3;w=60;name=\"per_client\""), "\(limit)")
        }
        let denied = try envoy.get(headers: ["x-client": "alice"])
        #expect(denied.status == 429, "\(denied)")
        #expect(denied.headers["x-envoy-ratelimited"] == "true", "\(denied.headers)")
        #expect(denied.headers["x-ratelimit-remaining"] == "0")
        // The descriptor's state is an ordinary key, which the line protocol can reset (README "State keys").
        #expect(try LineClient(port: daemon.port).request("RESET envoy/edge/minute/client=alice") == "OK")
        let again = try envoy.get(headers: ["x-client": "alice"])
        #expect(again.status == 200 && again.headers["x-ratelimit-remaining"] == "2", "\(again)")
        // Another client keeps its own quota; the address limit (1000 an hour) is shared and far off.
        let bob = try envoy.get(headers: ["x-client": "bob"])
        #expect(bob.status == 200, "\(bob)")
        #expect(bob.headers["x-ratelimit-remaining"] == "2")
        // Without the header only the address limit applies: 1000 an hour, 6 used (the 429 consumed nothing;
        // a fixed window, so a new hour starting mid-test would give more back).
        let anonymous = try envoy.get()
        #expect(anonymous.status == 200)
        let remaining = Int(anonymous.headers["x-ratelimit-remaining"] ?? "") ?? 0
        #expect(remaining >= 994 && remaining <= 999, "\(anonymous.headers)")
        let stats = try LineClient(port: daemon.port).statistics()
        #expect(stats["envoy_requests"] == 7)
        #expect(stats["envoy_over_limit"] == 1)
        if shared {
            #expect(stats["shared_decided"] == 8 && stats["shared_fallbacks"] == 0, "the 7 requests and the RESET: \(stats)")
        }
        // Envoy health-checked the service over gRPC, and found it healthy.
        let counters = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(envoy.adminPort)/stats?filter=cluster.ratelimit.health_check"]).output
        #expect(counters.contains("cluster.ratelimit.health_check.success: "), "\(counters)")
        #expect(!counters.contains("cluster.ratelimit.health_check.success: 0"), "\(counters)")
        #expect(counters.contains("cluster.ratelimit.health_check.failure: 0"), "\(counters)")
    }

    /// The token of README's example ("Security").
    static let readmeToken = "9c1f4e7a2b8d3c6f0e5a1d9b7c3e2f8a"
    static let shippedGRPCService = """
                        grpc_service:
                          envoy_grpc:
                            cluster_name: ratelimit
                          timeout: 1s

        """
    /// README's `grpc_service` with the token, as it stands in `contrib/envoy/envoy.yaml` plus the metadata.
    static let readmeGRPCServiceWithToken = """
                        grpc_service:
                          envoy_grpc:
                            cluster_name: ratelimit
                          timeout: 1s
                          initial_metadata:
                          - key: authorization
                            value: "Bearer 9c1f4e7a2b8d3c6f0e5a1d9b7c3e2f8a"

        """

    /// With `auth_token_file`: grpcio without the token is refused `UNAUTHENTICATED` (health checks stay
    /// open), and a real Envoy configured as README shows sends it and is served.
    @Test(.enabled(if: ExternalTool.required || EnvoyProcess.binary != nil))
    func aTokenGuardsTheGRPCServiceAndEnvoySendsIt() throws {
        let tokenFile = try temporaryFile(Self.readmeToken + "\n", suffix: ".token")
        try Unprivileged.handOver(tokenFile)
        chmod(tokenFile, 0o600)
        let (daemon, port) = try startDaemon(
            rules: "\(Self.root)/contrib/envoy/ratelimit.yaml", ["--auth-token-file", tokenFile])
        let script = """
            import sys, grpc
            from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
            channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
            stub = rls_pb2_grpc.RateLimitServiceStub(channel)
            request = rls_pb2.RateLimitRequest(domain="edge")
            request.descriptors.add().entries.add(key="client", value="grpcio")
            for metadata in (None, [("authorization", "Bearer wrong")], [("authorization", "Basic " + sys.argv[2])]):
                try:
                    stub.ShouldRateLimit(request, metadata=metadata)
                    sys.exit("no error for %r" % (metadata,))
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
                    assert error.details() == "missing or wrong authorization: Bearer <token>", error.details()
            response = stub.ShouldRateLimit(request, metadata=[("authorization", "bearer " + sys.argv[2])])
            assert response.overall_code == rls_pb2.RateLimitResponse.OK, response
            health = channel.unary_unary("/grpc.health.v1.Health/Check")
            assert health(b"") == b"\\x08\\x01", "SERVING"
            print("ok")
            """
        let path = try #require(ProcessInfo.processInfo.environment["RATELIMITD_GRPC_PYTHONPATH"])
        let result = try ExternalTool.run(
            "python3", ["-c", script, "\(port)", Self.readmeToken], environment: ["PYTHONPATH": path])
        #expect(result.status == 0 && result.output == "ok\n", "\(result.output)")

        let envoy = try EnvoyProcess(
            configPath: "\(Self.root)/contrib/envoy/envoy.yaml", rateLimitPort: port,
            replacing: [(Self.shippedGRPCService, Self.readmeGRPCServiceWithToken)])
        for remaining in ["2", "1", "0"] {
            let response = try envoy.get(headers: ["x-client": "alice"])
            #expect(response.status == 200 && response.headers["x-ratelimit-remaining"] == remaining, "\(response)\n\(daemon.log)")
        }
        #expect(try envoy.get(headers: ["x-client": "alice"]).status == 429)
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("AUTH \(Self.readmeToken)") == "OK")
        let stats = try client.statistics()
        #expect(stats["auth_failures"] == 3 && stats["envoy_requests"] == 5, "\(stats)")
    }

    @Test func theReadmeShowsTheTestedEnvoyFilesVerbatim() throws {
        let readme = try String(contentsOfFile: "\(Self.root)/README.md", encoding: .utf8)
        for file in ["contrib/envoy/envoy.yaml", "contrib/envoy/ratelimit.yaml"] {
            let text = try String(contentsOfFile: "\(Self.root)/\(file)", encoding: .utf8)
            #expect(readme.contains("```yaml\n" + text + "```\n"), "README's copy of \(file) differs from the file")
        }
        #expect(readme.contains("```yaml\n" + Self.readmeGRPCServiceWithToken + "```\n"), "README's Envoy token example differs")
    }
}
