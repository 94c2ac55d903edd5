import Foundation
import TestSupport
import Testing

/// These start the real `ratelimitd` binary and talk to it over loopback TCP.
@Suite("ratelimitd binary", .serialized, .timeLimit(.minutes(3)))
struct DaemonTests {
    @Test func runsOnDocumentedDefaults() throws {
        let daemon = try DaemonProcess(arguments: [])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
        #expect(try client.request("PING") == "PONG")
        #expect(try client.request("QUIT") == "BYE")
    }

    /// Root may set socket options and make calls that the deployed service may not, so when the tests run
    /// as root the daemon they start is `nobody`, without groups or capabilities, and still serves.
    @Test func theDaemonUnderTestRunsUnprivilegedAndServes() throws {
        let daemon = try DaemonProcess(arguments: [])
        #expect(try LineClient(port: daemon.port).request("PING") == "PONG")
        let status = String(decoding: FileHandle(forReadingAtPath: "/proc/\(daemon.process.processIdentifier)/status")?
            .readDataToEndOfFile() ?? Data(), as: UTF8.self)
        let uid = status.split(separator: "\n").first { $0.hasPrefix("Uid:") }?.split(separator: "\t").dropFirst()
        #expect(uid?.allSatisfy { $0 == "\(Unprivileged.dropsPrivileges ? Unprivileged.uid : geteuid())" } == true, "\(status)")
        if Unprivileged.dropsPrivileges {
            #expect(status.contains("CapEff:\t0000000000000000"))
            let groups = status.split(separator: "\n").first { $0.hasPrefix("Groups:") }?.dropFirst(7)
            #expect(groups?.allSatisfy(\.isWhitespace) == true, "\(status)")
        }
        #expect(try LineClient(port: daemon.port).statistics()["connection_setup_failures"] == 0)
    }

    @Test func pipelinedOrderHoldsAcrossEveryShard() throws {
        let daemon = try DaemonProcess(arguments: ["--shards", "4"])
        let client = try LineClient(port: daemon.port)
        let count = 10_000
        // Each request has its own key and cost, so each reply is different and misordering shows.
        let requests = (0..<count).map { "CHECK pipe:\($0) \($0 % 500) 500/1h sliding_window_counter\n" }.joined()
        try client.send(requests)
        let replies = try client.readLines(count)
        for (index, reply) in replies.enumerated() {
            #expect(reply.hasPrefix("ALLOW \(500 - index % 500) "), "reply \(index): \(reply)")
        }
    }

    @Test func exactlyTheLimitUnderEightConnectionsOnOneKey() throws {
        let config = try temporaryFile("""
            [[rules]]
            name = "hot"
            match = "hot"
            algorithm = "fixed_window"
            limit = 1000
            window = "1d"

            [[rules]]
            name = "default"
            match = "*"
            algorithm = "token_bucket"
            limit = 100
            window = "1m"
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let daemon = try DaemonProcess(arguments: ["--config", config, "--shards", "2"])
        let clients = try (0..<8).map { _ in try LineClient(port: daemon.port) }
        let senders = clients.map { client in
            Thread { try? client.send(String(repeating: "CHECK hot 1\n", count: 3_000)) }
        }
        senders.forEach { $0.start() }
        var allowed = 0
        for client in clients {
            allowed += try client.readLines(3_000).filter { $0.hasPrefix("ALLOW ") }.count
        }
        // A day window could roll over mid-test only at midnight UTC; then each day's count is still exact.
        let dayRolled = ISO8601DateFormatter().string(from: Date()).contains("T00:00:0")
        #expect(allowed == 1_000 || (dayRolled && allowed <= 2_000))
    }

    @Test func rulesMatchLongestPrefixThenExact() throws {
        let config = try temporaryFile("""
            [[rules]]
            name = "api"
            match = "api:*"
            algorithm = "fixed_window"
            limit = 10
            window = "1h"

            [[rules]]
            name = "api-admin"
            match = "api:admin:*"
            algorithm = "fixed_window"
            limit = 3
            window = "1h"

            [[rules]]
            name = "root"
            match = "api:admin:root"
            algorithm = "leaky_bucket"
            limit = 1
            window = "1h"
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let daemon = try DaemonProcess(arguments: ["--config", config])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK api:users 1").hasPrefix("ALLOW 9 "))
        #expect(try client.request("CHECK api:admin:bob 1").hasPrefix("ALLOW 2 "))
        #expect(try client.request("CHECK api:admin:root 1") == "ALLOW 0 3600000")
        #expect(try client.request("CHECK api:admin:root 1").hasPrefix("DENY 0 "))
        #expect(try client.request("CHECK web:home 1") == "ERR no_rule no rule matches key 'web:home'")
    }

    @Test func checkConfigAcceptsAGoodFile() throws {
        let config = try temporaryFile("""
            [server]
            listen = "127.0.0.1:9999"
            shards = 3

            [[rules]]
            name = "login"
            match = "login:*"
            algorithm = "sliding_window_log"
            limit = 5
            window = "15m"
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let result = try DaemonProcess.runToExit(["--config", config, "--check-config"])
        #expect(result.status == 0)
        #expect(result.output.contains("configuration OK"))
        #expect(result.output.contains("shards = 3"))
        #expect(result.output.contains("rule \"login\": match \"login:*\" 5/15m sliding_window_log"))
        // Flags override the file.
        let overridden = try DaemonProcess.runToExit(["--config", config, "--shards", "1", "--check-config"])
        #expect(overridden.output.contains("shards = 1"))
    }

    @Test func checkConfigRefusesABadFileNamingFileRuleAndField() throws {
        let config = try temporaryFile("""
            [[rules]]
            name = "login"
            match = "login:*"
            algorithm = "sliding_window_log"
            limit = 5
            window = "15 minutes"
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let result = try DaemonProcess.runToExit(["--config", config, "--check-config"])
        #expect(result.status == 1)
        #expect(result.output.contains(config))
        #expect(result.output.contains("rules[1] \"login\""))
        #expect(result.output.contains("window"))
    }

    @Test func aBadFileStopsStartUp() throws {
        let config = try temporaryFile("[server]\nshards = \"many\"\n")
        defer { try? FileManager.default.removeItem(atPath: config) }
        let result = try DaemonProcess.runToExit(["--config", config, "--listen", "127.0.0.1:0"])
        #expect(result.status != 0)
        #expect(result.output.contains("[server]: shards"))
    }

    @Test func badFlagsAndTheVersion() throws {
        #expect(try DaemonProcess.runToExit(["--listen", "nowhere", "--check-config"]).status == 1)
        #expect(try DaemonProcess.runToExit(["--shards=-2", "--check-config"]).status == 1)
        #expect(try DaemonProcess.runToExit(["--shards", "5000", "--check-config"]).status == 1)
        // A malformed command line is a usage error (64, as ArgumentParser and sysexits have it).
        #expect(try DaemonProcess.runToExit(["--shards", "-2", "--check-config"]).status == 64)
        #expect(try DaemonProcess.runToExit(["--log-level", "loud", "--check-config"]).status == 1)
        let version = try DaemonProcess.runToExit(["--version"])
        #expect(version.status == 0 && version.output.hasPrefix("0."))
    }
}
