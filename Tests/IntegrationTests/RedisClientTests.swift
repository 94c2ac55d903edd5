import Foundation
import TestSupport
import Testing

/// Real Redis tooling against the real binary: redis-cli, redis-benchmark and redis-py must work with
/// their defaults.
@Suite("Redis clients", .serialized, .timeLimit(.minutes(3)))
struct RedisClientTests {
    @Test(.enabled(if: ExternalTool.available("redis-cli")))
    func redisCLIPrintsTheThreeFields() throws {
        let daemon = try DaemonProcess(arguments: [])
        let result = try ExternalTool.run("redis-cli", ["-p", "\(daemon.port)", "CHECK", "user:1", "1"])
        #expect(result.status == 0)
        #expect(result.output == "ALLOW\n99\n600\n")
        let error = try ExternalTool.run("redis-cli", ["-p", "\(daemon.port)", "CHECK", "user:1", "-1"])
        #expect(error.output.contains("ERR bad_cost"))
    }

    @Test(.enabled(if: ExternalTool.available("redis-benchmark")))
    func redisBenchmarkCompletesWithoutErrors() throws {
        let daemon = try DaemonProcess(arguments: [])
        let result = try ExternalTool.run(
            "redis-benchmark",
            ["-p", "\(daemon.port)", "-n", "20000", "-P", "16", "-r", "1000", "-q", "CHECK", "key:__rand_int__", "1"])
        #expect(result.status == 0)
        #expect(result.output.contains("requests per second"), "\(result.output)")
        #expect(!result.output.contains("ERR") && !result.output.contains("WARNING"), "\(result.output)")
    }

    @Test(.enabled(if: ExternalTool.available("python3")))
    func redisPyWorksWithRESP3DefaultsAndWithRESP2() throws {
        let daemon = try DaemonProcess(arguments: [])
        let script = """
            import sys, redis
            port = int(sys.argv[1])
            for label, client in (("default", redis.Redis(port=port)), ("resp2", redis.Redis(port=port, protocol=2))):
                hello = client.execute_command("HELLO")
                proto = hello[b"proto"] if isinstance(hello, dict) else hello[hello.index(b"proto") + 1]
                expected_proto = 2 if label == "resp2" else 3
                assert proto == expected_proto, (label, hello)
                key = "py:" + label
                assert client.execute_command("CHECK", key, 1) == [b"ALLOW", 99, 600], label
                try:
                    client.execute_command("CHECK", key, "lots")
                    raise SystemExit(label + ": no error for a bad cost")
                except redis.ResponseError as error:
                    assert str(error).startswith("bad_cost "), str(error)
                try:
                    client.execute_command("CHECK", "no spaces allowed", 1)
                    raise SystemExit(label + ": no error for a bad key")
                except redis.ResponseError as error:
                    assert str(error).startswith("bad_key "), str(error)
                pipe = client.pipeline(transaction=False)
                for i in range(1000):
                    pipe.execute_command("CHECK", "pipe:%s:%d" % (label, i), i % 100, "100/1h", "fixed_window")
                replies = pipe.execute()
                assert len(replies) == 1000
                for i, reply in enumerate(replies):
                    assert reply[0] == b"ALLOW" and reply[1] == 100 - i % 100, (i, reply)
                assert client.ping() is True
            print("redis-py OK", redis.__version__)
            """
        let path = try temporaryFile(script, suffix: ".py")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let pythonPath = ProcessInfo.processInfo.environment["RATELIMITD_PYTHONPATH"] ?? ""
        let result = try ExternalTool.run("python3", [path, "\(daemon.port)"], environment: ["PYTHONPATH": pythonPath])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("redis-py OK 8."), "\(result.output)")
    }
}
