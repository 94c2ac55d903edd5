import Foundation

/// How the tests start the daemon when they run as root: as `nobody`, with no supplementary groups, the
/// way systemd's `DynamicUser` runs it. Root may do what the deployed service may not (a socket option
/// that needs CAP_NET_ADMIN once reset every client of the installed service while every test passed), so
/// no integration test runs the daemon as root. A test that needs root for itself (strace, nspawn) says so.
public enum Unprivileged {
    /// `nobody` on Debian; no file on the machine belongs to it.
    public static let uid: UInt32 = 65534
    public static let gid: UInt32 = 65534

    /// Whether the daemon is started as another user: only when the tests run as root.
    public static var dropsPrivileges: Bool { geteuid() == 0 }

    /// The program and arguments that run `executable arguments` as the unprivileged user (unchanged when
    /// the tests do not run as root). setpriv execs, so the process ID is the daemon's own.
    public static func command(_ executable: String, _ arguments: [String]) -> (executable: String, arguments: [String]) {
        guard dropsPrivileges else { return (executable, arguments) }
        return (
            "/usr/bin/setpriv",
            ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--", executable] + arguments
        )
    }

    /// Gives the unprivileged user a file or directory the test created for the daemon to write.
    public static func handOver(_ path: String) throws {
        guard dropsPrivileges else { return }
        guard chown(path, uid, gid) == 0 else {
            throw LineClient.Failure(description: "chown \(path): \(String(cString: strerror(errno)))")
        }
    }
}
