import Foundation

/// The receiving end of sd_notify: a unix datagram socket at a temporary path, to hand a daemon as
/// `NOTIFY_SOCKET` and read what it tells systemd.
public final class NotifySocket: @unchecked Sendable {
    // @unchecked: one test reads it from one task.
    public let path: String
    private let fd: Int32

    public init() throws {
        path = NSTemporaryDirectory() + "rl-notify-\(UUID().uuidString.prefix(8)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw LineClient.Failure(description: "socket() failed") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else { throw LineClient.Failure(description: "cannot bind \(path)") }
        // The daemon may run as another user (`Unprivileged`), and sending needs write permission.
        try Unprivileged.handOver(path)
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// The next datagram, waiting up to `seconds`; nil if none came.
    public func receive(within seconds: Double) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count > 0 { return String(decoding: buffer[..<count], as: UTF8.self) }
        }
        return nil
    }

    /// Datagrams until one contains `field` (such as `READY=1`), waiting up to `seconds` in all.
    public func waitFor(_ field: String, within seconds: Double) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        var seen: [String] = []
        while Date() < deadline, let message = receive(within: deadline.timeIntervalSinceNow) {
            seen.append(message)
            if message.split(separator: "\n").contains(Substring(field)) { return seen }
        }
        return seen
    }
}
