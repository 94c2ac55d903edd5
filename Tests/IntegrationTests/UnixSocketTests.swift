import Foundation
import TestSupport
import Testing

/// `[server] unix_socket` on the real binary: the socket's mode, a stale file replaced, a live one never
/// taken, and the file removed at exit only while it is the daemon's own.
@Suite("unix socket", .serialized, .timeLimit(.minutes(2)))
struct UnixSocketTests {
    func mode(_ path: String) -> UInt32 {
        var status = stat()
        return stat(path, &status) == 0 ? UInt32(status.st_mode & 0o7777) : 0
    }

    @Test func aLiveSocketIsNeverTakenAndAStaleOneIsReplaced() throws {
        let folder = try Gateways.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let socket = folder + "/ratelimitd.sock"
        let first = try DaemonProcess(arguments: ["--unix-socket", socket, "--unix-socket-mode", "0660"])
        #expect(mode(socket) == 0o660)
        let second = try DaemonProcess.runToExit([
            "--listen", "127.0.0.1:0", "--metrics-listen", "", "--unix-socket", socket,
        ])
        #expect(second.status == 1)
        #expect(second.output.contains("cannot listen on the unix socket \(socket): another process is listening on it"), "\(second.output)")
        // The first daemon still has its socket.
        let ping = try ExternalTool.runProgram("/usr/bin/python3", ["-c", """
            import socket, sys
            s = socket.socket(socket.AF_UNIX)
            s.connect(sys.argv[1])
            s.sendall(b"PING\\n")
            print(s.recv(64).decode(), end="")
            """, socket], timeoutSeconds: 10)
        #expect(ping.output == "PONG\n", "\(ping.output)")

        // SIGKILL leaves the file behind: the next daemon replaces it.
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: socket))
        let third = try DaemonProcess(arguments: ["--unix-socket", socket])
        #expect(mode(socket) == 0o666)
        #expect(try third.signalAndWait(SIGTERM) == 0)
        #expect(!FileManager.default.fileExists(atPath: socket), "removed at exit")
    }

    @Test func aPathThatIsNotASocketStopsStartUp() throws {
        let folder = try Gateways.socketDirectory()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/not-a-socket"
        try "data".write(toFile: file, atomically: true, encoding: .utf8)
        let result = try DaemonProcess.runToExit(["--listen", "127.0.0.1:0", "--metrics-listen", "", "--unix-socket", file])
        #expect(result.status == 1)
        #expect(result.output.contains("cannot listen on the unix socket \(file)"), "\(result.output)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "data", "a file that is not a socket is left alone")
        let relative = try DaemonProcess.runToExit(["--listen", "127.0.0.1:0", "--unix-socket", "ratelimitd.sock", "--check-config"])
        #expect(relative.status == 1 && relative.output.contains("--unix-socket must be an absolute path"), "\(relative.output)")
    }
}
