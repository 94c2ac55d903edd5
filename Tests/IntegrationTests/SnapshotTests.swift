import Foundation
import TestSupport
import Testing

/// State outliving the process: the real binary, stopped and started again on the same snapshot file.
@Suite("snapshots and shutdown", .serialized, .timeLimit(.minutes(3)))
struct SnapshotTests {
    /// 10 per hour: nothing visibly refills during a test.
    static let config = slowRuleConfig

    func withFiles(_ body: (_ config: String, _ snapshot: String) throws -> Void) throws {
        let config = try temporaryFile(Self.config)
        let snapshot = NSTemporaryDirectory() + "ratelimitd-\(UUID().uuidString).snap"
        defer {
            for path in [config, snapshot] { try? FileManager.default.removeItem(atPath: path) }
            for leftover in (try? FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory())) ?? []
            where leftover.hasPrefix((snapshot as NSString).lastPathComponent) {
                try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + leftover)
            }
        }
        try body(config, snapshot)
    }

    @Test func quotaSurvivesAGracefulRestart() throws {
        try withFiles { config, snapshot in
            let first = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK user:1 7").hasPrefix("ALLOW 3 "))
            #expect(try client.request("CHECK login:x 2 5/15m sliding_window_log").hasPrefix("ALLOW 3 "))
            #expect(try first.signalAndWait(SIGTERM) == 0)
            #expect(first.log.contains("saved final snapshot"))

            let second = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            #expect(second.log.contains("restored snapshot"))
            let again = try LineClient(port: second.port)
            #expect(try again.request("CHECK user:1 4").hasPrefix("DENY 3 "))
            #expect(try again.request("CHECK user:1 3").hasPrefix("ALLOW 0 "))
            #expect(try again.request("CHECK login:x 0 5/15m sliding_window_log").hasPrefix("ALLOW 3 "))
            let stats = try again.statistics()
            #expect(stats["keys"] == 2)
            #expect(stats["snapshot_keys"] == 2)
        }
    }

    @Test func timeSpentDownCounts() throws {
        try withFiles { config, snapshot in
            let first = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            // A bucket of 10 refilling one unit a second, emptied just before the shutdown.
            #expect(try LineClient(port: first.port).request("CHECK slowfill 10 10/10s").hasPrefix("ALLOW 0 "))
            #expect(try first.signalAndWait(SIGTERM) == 0)
            usleep(2_000_000)
            let second = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            let reply = try LineClient(port: second.port).request("CHECK slowfill 0 10/10s")
            // Two seconds down and some for the restart: a few units back. Not 0 (time down ignored), not 10
            // (state forgotten).
            let remaining = Int(reply.split(separator: " ")[1]) ?? -1
            #expect(reply.hasPrefix("ALLOW "))
            #expect((2...5).contains(remaining), "\(reply)")
        }
    }

    @Test func aKillLosesAtMostTheLastInterval() throws {
        try withFiles { config, snapshot in
            let first = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot, "--snapshot-interval", "200ms"])
            let client = try LineClient(port: first.port)
            #expect(try client.request("CHECK user:2 9").hasPrefix("ALLOW 1 "))
            // Wait for a periodic save to hold the key, then kill without warning.
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, (try? Data(contentsOf: URL(fileURLWithPath: snapshot)))?.count ?? 0 < 40 {
                usleep(50_000)
            }
            usleep(300_000)
            #expect(try first.signalAndWait(SIGKILL) == 128 + SIGKILL)

            let second = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            let again = try LineClient(port: second.port)
            #expect(try again.request("CHECK user:2 2").hasPrefix("DENY 1 "))
        }
    }

    @Test func aCorruptSnapshotStopsStartUpUnlessDiscarded() throws {
        try withFiles { config, snapshot in
            let first = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
            _ = try LineClient(port: first.port).request("CHECK user:3 5")
            #expect(try first.signalAndWait(SIGTERM) == 0)
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: snapshot)))
            bytes[bytes.count / 2] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: snapshot))

            let refused = try DaemonProcess.runToExit(["--config", config, "--snapshot", snapshot, "--listen", "127.0.0.1:0"])
            #expect(refused.status == 1)
            #expect(refused.output.contains(snapshot))
            #expect(refused.output.contains("checksum mismatch"))
            #expect(refused.output.contains("--discard-bad-snapshot"))

            let fresh = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot, "--discard-bad-snapshot"])
            #expect(fresh.log.contains("moved aside"))
            #expect(try LineClient(port: fresh.port).request("CHECK user:3 0").hasPrefix("ALLOW 10 "))
            #expect(!FileManager.default.fileExists(atPath: snapshot))
        }
    }
}

@Suite("shutdown with busy clients", .serialized, .timeLimit(.minutes(2)))
struct BusyShutdownTests {
    @Test func aPipeliningClientGetsCleanRepliesThenEOFAndTheDaemonExitsZero() throws {
        let daemon = try DaemonProcess(arguments: [])
        let client = try LineClient(port: daemon.port)
        let sender = Thread { try? client.send(String(repeating: "CHECK busy 0\n", count: 300_000)) }
        sender.start()
        usleep(300_000)
        kill(daemon.process.processIdentifier, SIGTERM)
        var replies = 0
        while let line = try client.readLine() {
            #expect(line == "ALLOW 100 0")
            replies += 1
        }
        #expect(replies > 0)
        #expect(try daemon.signalAndWait(0) == 0)
        #expect(daemon.log.contains("stopped"))
    }
}
