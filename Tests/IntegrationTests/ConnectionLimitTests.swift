import Foundation
import TestSupport
import Testing

/// Connections a hostile (or merely careless) client opens cannot take the daemon over: past
/// `max_connections` one more is told so and closed while those inside are served, and running out of
/// descriptors pauses accepting instead of spinning on `accept`.
@Suite("connection limits", .serialized, .timeLimit(.minutes(2)))
struct ConnectionLimitTests {

    @Test func oneConnectionOverTheLimitIsToldBusyInItsProtocolAndTheOthersServeOn() throws {
        let daemon = try DaemonProcess(arguments: ["--max-connections", "3"])
        var inside = try (0..<3).map { _ in try LineClient(port: daemon.port) }
        for client in inside { #expect(try client.request("PING") == "PONG") }

        let line = try LineClient(port: daemon.port)
        #expect(try line.request("PING") == "ERR busy too many connections")
        #expect(try line.readLine() == nil, "closed after the reply")
        let resp = try LineClient(port: daemon.port)
        #expect(try resp.request("*1\r\n$4\r\nPING\r") == "-ERR busy too many connections\r")
        #expect(try resp.readLine() == nil)
        // The metrics listener counts too: HTTP 503.
        let metricsURL = "http://127.0.0.1:\(try daemon.metricsPort())/metrics"
        let refused = try ExternalTool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", metricsURL])
        #expect(refused.output == "503", "\(refused.output)")

        // Those inside are unaffected.
        for client in inside { #expect(try client.request("CHECK inside 1 100/1h").hasPrefix("ALLOW")) }
        let stats = try inside[0].statistics()
        #expect(stats["rejected_connections"] == 3 && stats["connections"] == 3, "\(stats)")

        // A freed place is usable as soon as the daemon has seen the close.
        inside.removeLast()
        let deadline = Date().addingTimeInterval(10)
        var reply = ""
        while Date() < deadline {
            reply = (try? LineClient(port: daemon.port).request("PING")) ?? ""
            if reply == "PONG" { break }
            usleep(20_000)
        }
        #expect(reply == "PONG")
        // Tries made before the daemon saw the close were refused too: STATS and /metrics agree on them.
        let total = try #require(try inside[0].statistics()["rejected_connections"])
        inside.removeAll()
        let metrics = try ExternalTool.run("curl", ["-fsS", metricsURL]).output
        #expect(metrics.contains("ratelimitd_rejected_connections_total{listener=\"client\"} \(total - 1)"), "\(metrics)")
        #expect(metrics.contains("ratelimitd_rejected_connections_total{listener=\"metrics\"} 1"), "\(metrics)")
    }

    @Test func theLimitIsValidatedLikeEverySetting() throws {
        let flag = try DaemonProcess.runToExit(["--max-connections", "0", "--check-config"])
        #expect(flag.status == 1 && flag.output.contains("--max-connections must be from 1 to 1000000, got 0"), "\(flag.output)")
        let file = try DaemonProcess.runToExit(["--config", try temporaryFile("[server]\nmax_connections = \"many\"\n"), "--check-config"])
        #expect(file.status == 1 && file.output.contains("max_connections: must be an integer from 1 to 1000000"), "\(file.output)")
        let shown = try DaemonProcess.runToExit(["--max-connections", "250", "--check-config"])
        #expect(shown.status == 0 && shown.output.contains("max_connections = 250"), "\(shown.output)")
    }

    @Test func anIdleConnectionIsClosedAndABusyOneIsNot() throws {
        let daemon = try DaemonProcess(arguments: ["--idle-timeout", "300ms"])
        let idle = try LineClient(port: daemon.port)
        let busy = try LineClient(port: daemon.port)
        // The metrics listener's connections are watched too.
        let idleMetrics = try LineClient(port: try daemon.metricsPort())
        #expect(try idle.request("PING") == "PONG")
        let started = Date()
        // Traffic every 100 ms keeps a connection open past the timeout.
        for _ in 0..<12 {
            #expect(try busy.request("PING") == "PONG")
            usleep(100_000)
        }
        #expect(try idle.readLine() == nil, "the idle connection was closed")
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(try busy.request("PING") == "PONG")
        #expect(try idleMetrics.readLine() == nil, "the idle metrics connection was closed")
        #expect(try LineClient(port: daemon.port).statistics()["idle_closed"] == 2)
    }

    /// Slowloris: 50 line and 50 RESP clients trickle a byte of an endless request every 200 ms, and a
    /// metrics client stops halfway through its headers. Each is told `ERR timeout` in its protocol (the HTTP
    /// one is closed) between one and two timeouts after its first byte, while a client beside them is served.
    @Test func requestsThatNeverCompleteAreClosedAfterTheRequestTimeout() throws {
        let daemon = try DaemonProcess(arguments: ["--request-timeout", "1s"])
        let started = Date()
        let line = try (0..<50).map { _ in try LineClient(port: daemon.port) }
        let resp = try (0..<50).map { _ in try LineClient(port: daemon.port) }
        let metrics = try LineClient(port: try daemon.metricsPort())
        try metrics.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for client in line { try client.send("CHECK slow:") }
        for client in resp { try client.send("*3\r\n$5\r\nCHECK\r\n$4000\r\n") }
        let bystander = try LineClient(port: daemon.port)
        for _ in 0..<15 {
            for client in line + resp { try? client.send("x") }
            #expect(try bystander.request("CHECK bystander 1 1000/1h").hasPrefix("ALLOW"))
            usleep(200_000)
        }
        for client in line {
            #expect(try client.readUntilClosed() == ["ERR timeout request incomplete after 1s; closing the connection"])
        }
        for client in resp {
            #expect(try client.readUntilClosed() == ["-ERR timeout request incomplete after 1s; closing the connection\r"])
        }
        #expect(try metrics.readUntilClosed() == [])
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed >= 1 && elapsed < 10, "\(elapsed)")
        let stats = try bystander.statistics()
        #expect(stats["request_timeouts"] == 101 && stats["idle_closed"] == 0 && stats["connections"] == 1, "\(stats)")
    }

    /// A client that pipelines `STATS` and never reads the replies is closed once they have waited the
    /// request timeout, which frees the kernel's buffers it held.
    @Test func repliesLeftUnreadCloseTheConnection() throws {
        let daemon = try DaemonProcess(arguments: ["--request-timeout", "1s"])
        let greedy = try LineClient(port: daemon.port)
        let chunk = String(repeating: "STATS\n", count: 100_000)
        var sent = 0
        // The daemon stops reading once its replies back up, so a send blocks until the close ends it.
        while sent < 100, (try? greedy.send(chunk)) != nil { sent += 1 }
        #expect(sent < 100, "the connection was never closed")
        let stats = try LineClient(port: daemon.port).statistics()
        #expect(stats["reply_timeouts"] == 1 && stats["request_timeouts"] == 0, "\(stats)")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_reply_timeouts_total 1"), "\(metrics)")
    }

    @Test func theRequestTimeoutIsValidatedAndZeroMeansNever() throws {
        let never = try DaemonProcess.runToExit(["--request-timeout", "0", "--check-config"])
        #expect(never.status == 0 && never.output.contains("request_timeout = never"), "\(never.output)")
        let byDefault = try DaemonProcess.runToExit(["--check-config"])
        #expect(byDefault.output.contains("request_timeout = 10s"), "\(byDefault.output)")
        let bad = try DaemonProcess.runToExit(["--request-timeout", "ages", "--check-config"])
        #expect(bad.status == 1 && bad.output.contains("--request-timeout must be 0 (never) or a duration from 1ms to 365d, such as 10s"), "\(bad.output)")
        let file = try DaemonProcess.runToExit(["--config", try temporaryFile("[server]\nrequest_timeout = \"forever\"\n"), "--check-config"])
        #expect(file.status == 1 && file.output.contains("request_timeout: must be \"0\" (never) or a duration string"), "\(file.output)")
    }

    @Test func theIdleTimeoutIsValidatedAndZeroMeansNever() throws {
        let never = try DaemonProcess.runToExit(["--idle-timeout", "0", "--check-config"])
        #expect(never.status == 0 && never.output.contains("idle_timeout = never"), "\(never.output)")
        let byDefault = try DaemonProcess.runToExit(["--check-config"])
        #expect(byDefault.output.contains("idle_timeout = 5m"), "\(byDefault.output)")
        let bad = try DaemonProcess.runToExit(["--idle-timeout", "soon", "--check-config"])
        #expect(bad.status == 1 && bad.output.contains("--idle-timeout must be 0 (never) or a duration"), "\(bad.output)")
        let file = try DaemonProcess.runToExit(["--config", try temporaryFile("[server]\nidle_timeout = 30\n"), "--check-config"])
        #expect(file.status == 1 && file.output.contains("idle_timeout: must be \"0\" (never) or a duration string"), "\(file.output)")
    }

    /// Under `prlimit --nofile=64`, 80 connections at once: accepting pauses (logged once, no CPU spent
    /// spinning), the connection already open is served meanwhile, and accepting resumes once they go.
    @Test(.enabled(if: ExternalTool.required || ExternalTool.available("prlimit")))
    func runningOutOfDescriptorsPausesAcceptingWithoutSpinning() throws {
        let port = try RedisServerProcess.freePort()
        let prlimit: String = try #require(ExternalTool.find("prlimit"))
        let daemon = try DaemonProcess(arguments: [
            "--nofile=64:64", DaemonProcess.binaryPath, "--listen", "127.0.0.1:\(port)", "--shards", "1",
        ], listen: false, executable: prlimit)
        let first = try LineClient(port: port)
        #expect(try first.request("PING") == "PONG")

        var flood: [LineClient] = []
        for _ in 0..<80 { flood.append(try LineClient(port: port)) }
        #expect(daemon.waitForLog("cannot accept connections: out of descriptors"), "\(daemon.log)")
        // Paused, not spinning: well under a second of CPU over two seconds.
        let pid = daemon.process.processIdentifier
        let before = try Self.cpuSeconds(pid)
        usleep(2_000_000)
        let used = try Self.cpuSeconds(pid) - before
        #expect(used < 0.5, "used \(used) s of CPU in 2 s")
        #expect(daemon.log.components(separatedBy: "cannot accept connections").count == 2, "logged once: \(daemon.log)")
        #expect(try first.request("PING") == "PONG", "a connection already open is served")
        #expect(try first.statistics()["accept_pauses"] == 1)

        flood.removeAll()
        let deadline = Date().addingTimeInterval(15)
        var reply = ""
        while Date() < deadline {
            reply = (try? LineClient(port: port, timeoutSeconds: 2).request("PING")) ?? ""
            if reply == "PONG" { break }
            usleep(50_000)
        }
        #expect(reply == "PONG")
        #expect(daemon.waitForLog("accepting connections again"), "\(daemon.log)")
    }

    /// User plus system CPU time of `pid`, from /proc.
    static func cpuSeconds(_ pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields = stat[stat.index(after: stat.lastIndex(of: ")")!)...].split(separator: " ")
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
