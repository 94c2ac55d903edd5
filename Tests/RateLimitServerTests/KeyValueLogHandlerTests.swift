import Logging
import RateLimitServer
import Synchronization
import Testing

@Suite("log lines")
struct KeyValueLogHandlerTests {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
    }

    func logger(journal: Bool, _ lines: Lines) -> Logger {
        Logger(label: "test") { _ in
            KeyValueLogHandler(journal: journal) { line in lines.all.withLock { $0.append(line) } }
        }
    }

    @Test func oneEventIsOneLineWithSortedKeyValues() throws {
        let lines = Lines()
        logger(journal: false, lines).info(
            "restored snapshot\nfrom disk", metadata: ["path": "/var/lib/x y.snap", "keys": "3", "note": "say \"hi\""])
        let line = try #require(lines.all.withLock { $0.first })
        #expect(line.hasSuffix(" info restored snapshot\\nfrom disk keys=3 note=\"say \\\"hi\\\"\" path=\"/var/lib/x y.snap\"\n"))
        #expect(line.filter { $0 == "\n" }.count == 1)
        // 2026-11-29T03:07:06.123Z
        let stamp = line.prefix(while: { $0 != " " })
        #expect(stamp.count == 24 && stamp.hasSuffix("Z") && stamp.contains("T"), "\(stamp)")
    }

    @Test func theJournalGetsAPriorityAndNoTimestamp() throws {
        let lines = Lines()
        let log = logger(journal: true, lines)
        log.warning("Redis replication failing", metadata: ["pending": "4"])
        log.info("listening on 127.0.0.1:7283")
        #expect(lines.all.withLock { $0 } == [
            "<4>warning Redis replication failing pending=4\n", "<6>info listening on 127.0.0.1:7283\n",
        ])
    }

    @Test func levelsBelowTheThresholdAreDropped() {
        let lines = Lines()
        var log = logger(journal: true, lines)
        log.logLevel = .info
        log.debug("per request detail")
        #expect(lines.all.withLock { $0.isEmpty })
    }
}
