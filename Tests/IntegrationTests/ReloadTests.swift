import Foundation
import TestSupport
import Testing

/// SIGHUP on the real binary: new rules at once, state and connections kept, bad files refused.
@Suite("configuration reload", .serialized, .timeLimit(.minutes(2)))
struct ReloadTests {
    static func rules(limit: Int) -> String {
        """
        [[rules]]
        name = "users"
        match = "user:*"
        algorithm = "fixed_window"
        limit = \(limit)
        window = "1h"
        """
    }


    @Test func aChangedLimitTakesEffectAndKeepsState() throws {
        let config = try temporaryFile(Self.rules(limit: 5))
        defer { try? FileManager.default.removeItem(atPath: config) }
        let daemon = try DaemonProcess(arguments: ["--config", config])
        let client = try LineClient(port: daemon.port)
        #expect(try client.request("CHECK user:1 3").hasPrefix("ALLOW 2 "))

        try Self.rules(limit: 10).write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("reloaded configuration"))
        // The same connection, the same key: 3 already used of the new 10.
        #expect(try client.request("CHECK user:1 1").hasPrefix("ALLOW 6 "))

        try "[[rules]]\nname = \"users\"\nmatch = \"user:*\"\nalgorithm = \"magic\"\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("configuration not reloaded"))
        #expect(daemon.log.contains("magic"))
        #expect(try client.request("CHECK user:1 1").hasPrefix("ALLOW 5 "))
    }

    @Test func restartOnlySettingsAreReportedAsSuch() throws {
        let config = try temporaryFile(Self.rules(limit: 5))
        defer { try? FileManager.default.removeItem(atPath: config) }
        let daemon = try DaemonProcess(arguments: ["--config", config, "--shards", "1"])
        try ("[server]\nshards = 2\nshutdown_timeout = \"3s\"\n" + Self.rules(limit: 5))
            .write(toFile: config, atomically: true, encoding: .utf8)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("reloaded configuration"))
        // --shards on the command line still overrides the file, so only the timeout changed.
        #expect(daemon.log.contains("shutdown_timeout changed"))
        #expect(!daemon.log.contains("shards changed"))
        #expect(try LineClient(port: daemon.port).request("PING") == "PONG")
    }
}
