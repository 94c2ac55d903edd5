import Foundation
import TestSupport
import Testing

/// Memory follows the active keys: fresh keys are swept, and a flood of new keys is held at max_keys.
@Suite("bounded memory", .serialized, .timeLimit(.minutes(2)))
struct BoundedMemoryTests {
    @Test func aFloodOfNewKeysStaysAtMaxKeys() throws {
        let daemon = try DaemonProcess(arguments: ["--max-keys", "1000", "--shards", "2", "--sweep-interval", "200ms"])
        let client = try LineClient(port: daemon.port)
        let flood = 20_000
        try client.send((0..<flood).map { "CHECK flood:\($0) 1 10/1h fixed_window\n" }.joined())
        let replies = try client.readLines(flood)
        #expect(replies.allSatisfy { $0.hasPrefix("ALLOW 9 ") })
        let values = try client.statistics()
        #expect((values["keys"] ?? .max) <= 1_000)
        #expect((values["evictions"] ?? 0) >= flood - 1_000)
        let deadline = Date().addingTimeInterval(10)
        while !daemon.log.contains("evicted keys"), Date() < deadline { usleep(50_000) }
        #expect(daemon.log.contains("evicted keys to stay within max_keys"))
    }

    @Test func freshKeysAreSweptWithinAnInterval() throws {
        let daemon = try DaemonProcess(arguments: ["--sweep-interval", "300ms"])
        let client = try LineClient(port: daemon.port)
        try client.send((0..<500).map { "CHECK brief:\($0) 1 100/100ms fixed_window\n" }.joined())
        _ = try client.readLines(500)
        try client.send((0..<100).map { "CHECK lasting:\($0) 1 100/1h fixed_window\n" }.joined())
        _ = try client.readLines(100)
        #expect(try client.statistics()["keys"] == 600)
        let deadline = Date().addingTimeInterval(10)
        var keys: Int64 = 600
        while keys != 100, Date() < deadline {
            usleep(100_000)
            keys = try client.statistics()["keys"] ?? -1
        }
        #expect(keys == 100)
    }
}
