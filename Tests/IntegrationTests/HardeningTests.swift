import Foundation
import TestSupport
import Testing

/// What a mistaken or hostile environment must not do to the daemon: a signal it gives no meaning to, and
/// a snapshot path that is not a file.
@Suite("hardening", .timeLimit(.minutes(1)))
struct HardeningTests {
    @Test func sigusr1AndSigusr2DoNotStopIt() throws {
        let daemon = try DaemonProcess(arguments: [])
        let client = try LineClient(port: daemon.port)
        kill(daemon.process.processIdentifier, SIGUSR1)
        kill(daemon.process.processIdentifier, SIGUSR2)
        // Signals are delivered by the next time it answers.
        #expect(try client.request("PING") == "PONG")
        #expect(try LineClient(port: daemon.port).request("PING") == "PONG")
        #expect(daemon.process.isRunning)
    }

    /// A device, a FIFO or a dangling symbolic link as the snapshot stops start-up at once, saying what it
    /// is: reading /dev/zero never ends, a FIFO without a writer blocks, and a link to nothing is a mistake,
    /// not a fresh start.
    @Test(arguments: ["device", "fifo", "dangling"])
    func aSnapshotPathThatIsNotARegularFileStopsStartUpWithTheReason(_ kind: String) throws {
        let path = NSTemporaryDirectory() + "rl-snap-\(kind)-\(UUID().uuidString.prefix(8))"
        defer { unlink(path) }
        let expected: String
        switch kind {
        case "device":
            #expect(symlink("/dev/zero", path) == 0)
            expected = "\(path) is not a regular file (a character device)"
        case "fifo":
            #expect(mkfifo(path, 0o666) == 0)
            chmod(path, 0o666)
            expected = "\(path) is not a regular file (a FIFO)"
        default:
            #expect(symlink(path + ".missing", path) == 0)
            expected = "\(path) is a symbolic link to a file that does not exist"
        }
        let started = Date()
        let run = try DaemonProcess.runToExit(["--listen", "127.0.0.1:0", "--metrics-listen", "", "--snapshot", path])
        #expect(run.status == 1, "\(run.output)")
        #expect(run.output.contains(expected), "\(run.output)")
        #expect(Date().timeIntervalSince(started) < 10)
    }
}
