import Foundation
import TestSupport
import Testing

/// Keys as an attacker would send them, against the real binary: a flood of new keys cannot evict a key out
/// of quota into a fresh one, and a per-request limit cannot lock a rule's key out past the rule's window.
@Suite("key floods and limit changes", .timeLimit(.minutes(2)))
struct KeyFloodTests {
    /// Sends every request at once and returns the replies in order.
    static func pipeline(_ client: LineClient, _ requests: [String]) throws -> [String] {
        try client.send(requests.joined(separator: "\n") + "\n")
        return try client.readLines(requests.count)
    }

    @Test(arguments: ["deny", "allow"])
    func aFloodOfNewKeysNeverFreesAKeyOutOfQuota(_ whenFull: String) throws {
        let daemon = try DaemonProcess(arguments: ["--max-keys", "1000", "--shards", "1", "--when-full", whenFull])
        let client = try LineClient(port: daemon.port)
        let victim = try Self.pipeline(client, Array(repeating: "CHECK victim 1 5/1h", count: 6))
        #expect(victim.prefix(5).map { $0.hasPrefix("ALLOW") } == Array(repeating: true, count: 5))
        #expect(victim[5].hasPrefix("DENY 0 "), "\(victim)")
        // The issue's flood: 5,000 new keys, each spending its whole 5/1h.
        let flood = try Self.pipeline(client, (0..<5_000).map { "CHECK y:\($0) 5 5/1h" })
        #expect(flood.prefix(999).allSatisfy { $0 == "ALLOW 0 3600000" })
        let full = flood.dropFirst(999)
        if whenFull == "deny" {
            #expect(full.allSatisfy { $0.hasPrefix("DENY 0 ") }, "\(full.first ?? "")")
        } else {
            #expect(full.allSatisfy { $0 == "ALLOW 0 3600000" }, "\(full.first ?? "")")
        }
        // A flood that keeps quota (1 of 5) evicts only its own kind.
        let light = try Self.pipeline(client, (0..<5_000).map { "CHECK z:\($0) 1 5/1h" })
        #expect(light.allSatisfy { $0.hasPrefix(whenFull == "deny" ? "DENY 0 " : "ALLOW 4 ") }, "the table is full of limited keys")
        #expect(try client.request("CHECK victim 1 5/1h").hasPrefix("DENY 0 "))
        let stats = try client.statistics()
        #expect(stats["keys"] == 1000 && stats["evictions"] == 0 && stats["store_full"] == 9_001, "\(stats)")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_store_full_total 9001"), "\(metrics)")
    }

    @Test func keysWithQuotaLeftMakeRoomForNewOnes() throws {
        let daemon = try DaemonProcess(arguments: ["--max-keys", "100", "--shards", "1"])
        let client = try LineClient(port: daemon.port)
        #expect(try Self.pipeline(client, Array(repeating: "CHECK victim 1 5/1h", count: 6)).last?.hasPrefix("DENY 0 ") == true)
        let flood = try Self.pipeline(client, (0..<2_000).map { "CHECK z:\($0) 1 5/1h" })
        #expect(flood.allSatisfy { $0.hasPrefix("ALLOW 4 ") })
        #expect(try client.request("CHECK victim 1 5/1h").hasPrefix("DENY 0 "))
        let stats = try client.statistics()
        #expect(stats["evictions"] == 1_901 && stats["store_full"] == 0, "\(stats)")
    }

    /// The issue's long keys: 20,000 keys of 252 bytes into `--max-memory 1mb`. The key table stays within
    /// its megabyte (STATS and /metrics say so), evicting as it goes, and the victim out of quota stays so.
    @Test func maxMemoryBoundsLongKeys() throws {
        let daemon = try DaemonProcess(arguments: ["--max-memory", "1mb", "--shards", "1"])
        let client = try LineClient(port: daemon.port)
        #expect(try Self.pipeline(client, Array(repeating: "CHECK victim 1 5/1h", count: 6)).last?.hasPrefix("DENY 0 ") == true)
        let prefix = String(repeating: "k", count: 240)
        for batch in 0..<4 {
            let replies = try Self.pipeline(client, (0..<5_000).map { "CHECK \(prefix)\(String(format: "%012d", batch * 5_000 + $0)) 1 5/1h" })
            #expect(replies.allSatisfy { $0.hasPrefix("ALLOW 4 ") })
        }
        #expect(try client.request("CHECK victim 1 5/1h").hasPrefix("DENY 0 "))
        let stats = try client.statistics()
        let memory = try #require(stats["key_memory_bytes"])
        #expect(memory <= 1 << 20 && memory > 1 << 19, "\(stats)")
        #expect((stats["keys"] ?? 0) < 4_000 && (stats["evictions"] ?? 0) > 16_000, "\(stats)")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(try daemon.metricsPort())/metrics"]).output
        #expect(metrics.contains("ratelimitd_key_memory_bytes \(Double(memory))"), "\(metrics)")
        let check = try DaemonProcess.runToExit(["--max-memory", "lots", "--check-config"])
        #expect(check.status == 1 && check.output.contains("--max-memory must be 0 (no bound) or a size from 1mb"), "\(check.output)")
        let shown = try DaemonProcess.runToExit(["--check-config"])
        #expect(shown.output.contains("max_memory = 2147483648 bytes"), "\(shown.output)")
    }

    /// `CHECK user:9 1 1/365d` once locked the rule's key out for a year; now the rule's 100/1m sees an
    /// empty bucket of its own, whose first token comes 600 ms later.
    @Test func aPerRequestLimitCannotLockARulesKeyOutPastTheRulesWindow() throws {
        let daemon = try DaemonProcess(arguments: [])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK user:9 1 1/365d") == "ALLOW 0 31536000000")
        let started = Date()
        #expect(try client.request("CHECK user:9") == "DENY 0 600")
        var reply = ""
        while Date().timeIntervalSince(started) < 10 {
            reply = try client.request("CHECK user:9")
            if reply.hasPrefix("ALLOW") { break }
            usleep(50_000)
        }
        // The bucket is empty again after this one, full a minute on (less the poll's lateness).
        let reset = Int(reply.split(separator: " ").last ?? "") ?? 0
        #expect(reply.hasPrefix("ALLOW 0 ") && reset > 59_000 && reset <= 60_000, "\(reply)")
        #expect(Date().timeIntervalSince(started) >= 0.5)
    }
}
