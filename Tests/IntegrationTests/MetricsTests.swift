import Foundation
import TestSupport
import Testing

/// `GET /metrics` on the real binary, read as Prometheus would.
@Suite("metrics endpoint", .serialized, .timeLimit(.minutes(2)))
struct MetricsTests {
    /// The response to one HTTP request: status line and body lines.
    func get(_ path: String, port: Int, method: String = "GET") throws -> (status: String, body: [String]) {
        let client = try LineClient(port: port)
        try client.send("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        let lines = try client.readUntilClosed().map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
        let blank = lines.firstIndex(of: "") ?? lines.count
        return (lines.first ?? "", Array(lines[min(blank + 1, lines.count)...]))
    }

    func value(_ body: [String], _ series: String) -> Double? {
        body.first { $0.hasPrefix(series + " ") }.flatMap { Double($0.dropFirst(series.count + 1)) }
    }

    @Test func decisionsErrorsKeysAndLatencyArePublished() throws {
        let config = try temporaryFile("""
            [[rules]]
            name = "login"
            match = "login:*"
            algorithm = "fixed_window"
            limit = 2
            window = "1h"

            [[rules]]
            name = "default"
            match = "*"
            algorithm = "token_bucket"
            limit = 100
            window = "1m"
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let daemon = try DaemonProcess(arguments: ["--config", config])
        let metricsPort = try daemon.metricsPort()
        let client = try LineClient(port: daemon.port)
        for _ in 0..<3 { _ = try client.request("CHECK login:ann 1") }  // 2 allowed, 1 denied
        for index in 0..<5 { _ = try client.request("CHECK user:\(index) 1") }
        _ = try client.request("CHECK x 1 10/1s")
        _ = try client.request("CHECK bad-cost -1")
        _ = try client.request("FROB")

        let (status, body) = try get("/metrics", port: metricsPort)
        #expect(status == "HTTP/1.1 200 OK")
        #expect(value(body, #"ratelimitd_decisions_total{rule="login",result="allow"}"#) == 2)
        #expect(value(body, #"ratelimitd_decisions_total{rule="login",result="deny"}"#) == 1)
        #expect(value(body, #"ratelimitd_decisions_total{rule="default",result="allow"}"#) == 5)
        #expect(value(body, #"ratelimitd_decisions_total{rule="(request)",result="allow"}"#) == 1)
        #expect(value(body, #"ratelimitd_errors_total{code="bad_cost"}"#) == 1)
        #expect(value(body, #"ratelimitd_errors_total{code="unknown_command"}"#) == 1)
        #expect(value(body, "ratelimitd_keys") == 7)
        #expect(value(body, "ratelimitd_connections") == 1)
        #expect(value(body, "ratelimitd_connections_accepted_total") == 1)
        #expect(value(body, "ratelimitd_decision_duration_seconds_count") == 9)
        #expect(value(body, #"ratelimitd_decision_duration_seconds_bucket{le="+Inf"}"#) == 9)
        #expect(body.contains("# TYPE ratelimitd_decision_duration_seconds histogram"))
        #expect(body.contains { $0.hasPrefix("# TYPE ratelimitd_decisions_total counter") })
        // No replication configured, no replication series.
        #expect(!body.contains { $0.hasPrefix("ratelimitd_replication") })

        // Counters only grow across scrapes.
        _ = try client.request("CHECK login:bob 1")
        let again = try get("/metrics", port: metricsPort).body
        #expect(value(again, #"ratelimitd_decisions_total{rule="login",result="allow"}"#) == 3)
    }

    @Test func otherPathsAndMethodsAreRefused() throws {
        let daemon = try DaemonProcess(arguments: [])
        let port = try daemon.metricsPort()
        #expect(try get("/", port: port).status == "HTTP/1.1 404 Not Found")
        #expect(try get("/metrics", port: port, method: "POST").status == "HTTP/1.1 405 Method Not Allowed")
        let head = try get("/metrics", port: port, method: "HEAD")
        #expect(head.status == "HTTP/1.1 200 OK" && head.body.isEmpty)
    }

    @Test func anEmptyAddressTurnsMetricsOff() throws {
        let daemon = try DaemonProcess(arguments: ["--metrics-listen", ""])
        #expect(!daemon.log.contains("metrics on"))
        #expect(try LineClient(port: daemon.port).request("PING") == "PONG")
    }

    @Test func aBusyPortStopsStartUpWithTheReasonInsteadOfHanging() throws {
        let first = try DaemonProcess(arguments: [])
        let started = Date()
        let result = try DaemonProcess.runToExit(["--listen", "127.0.0.1:\(first.port)", "--metrics-listen", "127.0.0.1:0"])
        #expect(result.status == 1)
        #expect(result.output.contains("Address already in use"), "\(result.output)")
        #expect(Date().timeIntervalSince(started) < 15)
    }

    @Test func aBusyMetricsPortStopsStartUpWithTheReason() throws {
        let first = try DaemonProcess(arguments: [])
        let port = try first.metricsPort()
        let result = try DaemonProcess.runToExit(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:\(port)"])
        #expect(result.status == 1)
        #expect(result.output.contains("cannot listen for metrics on 127.0.0.1:\(port)"), "\(result.output)")
    }
}
