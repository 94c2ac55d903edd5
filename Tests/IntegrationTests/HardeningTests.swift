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

    /// Nothing authenticates clients yet, so a port other machines may reach is worth a warning, at start
    /// and in --check-config (checked there, so the test binds nothing beyond loopback).
    @Test func listeningBeyondLoopbackIsWarnedAbout() throws {
        let rules = "\(EnvoyTests.root)/contrib/envoy/ratelimit.yaml"
        let exposed = try DaemonProcess.runToExit([
            "--listen", "0.0.0.0:7283", "--envoy-listen", "[::]:8081", "--envoy-config", rules, "--check-config",
        ])
        #expect(exposed.status == 0)
        #expect(exposed.output.contains("warning: the client port listens on 0.0.0.0:7283, beyond loopback, and nothing authenticates clients"), "\(exposed.output)")
        #expect(exposed.output.contains("warning: the Envoy gRPC port listens on [::]:8081, beyond loopback"), "\(exposed.output)")
        for (listen, envoy) in [("127.0.0.1:7283", "127.0.0.2:8081"), ("[::1]:7283", "localhost:8081")] {
            let local = try DaemonProcess.runToExit([
                "--listen", listen, "--envoy-listen", envoy, "--envoy-config", rules, "--check-config",
            ])
            #expect(local.status == 0 && !local.output.contains("warning"), "\(local.output)")
        }
    }
}
