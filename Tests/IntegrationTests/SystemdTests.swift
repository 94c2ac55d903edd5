import Foundation
import TestSupport
import Testing

/// What the daemon tells systemd, read from a notify socket the test creates.
@Suite("systemd notifications", .serialized, .timeLimit(.minutes(2)))
struct SystemdTests {
    @Test func readyComesOnceTheStateIsRestoredAndThePortAcceptsThenStopping() throws {
        let snapshot = NSTemporaryDirectory() + "ratelimitd-\(UUID().uuidString).snap"
        let config = try temporaryFile(slowRuleConfig)
        defer { for path in [snapshot, config] { try? FileManager.default.removeItem(atPath: path) } }
        let first = try DaemonProcess(arguments: ["--config", config, "--snapshot", snapshot])
        #expect(try LineClient(port: first.port).request("CHECK user:1 7").hasPrefix("ALLOW 3 "))
        #expect(try first.signalAndWait(SIGTERM) == 0)

        let notify = try NotifySocket()
        let port = try RedisServerProcess.freePort()
        let daemon = try DaemonProcess(
            arguments: ["--listen", "127.0.0.1:\(port)", "--config", config, "--snapshot", snapshot], listen: false,
            environment: ["NOTIFY_SOCKET": notify.path], waitForListening: false)
        // Nothing but READY tells the test the daemon is up: the moment it arrives, the port must accept,
        // with the restored state.
        let ready = notify.waitFor("READY=1", within: 10)
        #expect(ready.last?.contains("READY=1") == true, "\(ready)")
        #expect(try LineClient(port: port).request("CHECK user:1 0").hasPrefix("ALLOW 3 "))
        #expect(ready.last?.contains("MAINPID=\(daemon.process.processIdentifier)") == true)
        #expect(ready.last?.contains("STATUS=serving on 127.0.0.1:\(port)") == true)
        kill(daemon.process.processIdentifier, SIGTERM)
        let stopping = notify.waitFor("STOPPING=1", within: 10)
        #expect(stopping.last?.contains("STOPPING=1") == true, "\(stopping)")
        #expect(try daemon.signalAndWait(SIGTERM) == 0)
    }

    @Test func aReloadIsBracketedByReloadingAndReady() throws {
        let config = try temporaryFile(slowRuleConfig)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let notify = try NotifySocket()
        let daemon = try DaemonProcess(arguments: ["--config", config], environment: ["NOTIFY_SOCKET": notify.path])
        _ = notify.waitFor("READY=1", within: 10)
        kill(daemon.process.processIdentifier, SIGHUP)
        let reloading = notify.waitFor("RELOADING=1", within: 10)
        #expect(reloading.last?.contains("MONOTONIC_USEC=") == true, "\(reloading)")
        let ready = notify.waitFor("READY=1", within: 10)
        #expect(ready.last?.contains("READY=1") == true, "\(ready)")
    }

    @Test func theWatchdogIsPingedAtHalfItsInterval() throws {
        let notify = try NotifySocket()
        let daemon = try DaemonProcess(
            arguments: [], environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])
        _ = notify.waitFor("READY=1", within: 10)
        let started = Date()
        var pings = 0
        while Date().timeIntervalSince(started) < 1.5 {
            if notify.receive(within: 0.5)?.contains("WATCHDOG=1") == true { pings += 1 }
        }
        // Every 200 ms: about 7 in 1.5 s; a loaded machine may delay some.
        #expect(pings >= 3, "\(pings) pings")
        _ = daemon
    }

    @Test func withoutNotifySocketNothingIsSentAndItStillRuns() throws {
        let daemon = try DaemonProcess(arguments: [], environment: ["NOTIFY_SOCKET": ""])
        #expect(try LineClient(port: daemon.port).request("PING") == "PONG")
    }
}
