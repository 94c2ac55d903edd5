import Foundation
import TestSupport

/// What the gateway tests share: the shipped example configurations from `contrib/`, with their ports
/// moved to free ones and the module paths pointed at the tree `scripts/install` made.
enum Gateways {
    static let root = EnvoyTests.root

    /// The rules every gateway test runs the daemon with: per client address, 5 an hour (a token bucket,
    /// so each request's reset is a whole multiple of 720 s while the test runs well under a second).
    static let rules = """
        [[rules]]
        name = "per_ip"
        match = "ip:*"
        algorithm = "token_bucket"
        limit = 5
        window = "1h"
        """

    /// The shipped file `path` (under `contrib/`) with each `(from, to)` replaced; each must be there.
    static func contrib(_ path: String, _ replacing: [(String, String)]) throws -> String {
        var text = try String(contentsOfFile: "\(root)/contrib/\(path)", encoding: .utf8)
        for (from, to) in replacing {
            guard text.contains(from) else { throw LineClient.Failure(description: "contrib/\(path) lacks \(from)") }
            text = text.replacingOccurrences(of: from, with: to)
        }
        return text
    }

    /// The daemon on free ports, with `rules` and the HTTP check endpoint: its line port, its HTTP port.
    static func daemon(_ extra: [String] = []) throws -> (daemon: DaemonProcess, http: Int) {
        let http = try RedisServerProcess.freePort()
        let daemon = try DaemonProcess(
            arguments: ["--config", try temporaryFile(rules), "--http-listen", "127.0.0.1:\(http)"] + extra)
        guard daemon.waitForLog("http checks on http://127.0.0.1:\(http)/check") else {
            throw LineClient.Failure(description: "no HTTP check endpoint: \(daemon.log)")
        }
        return (daemon, http)
    }

    /// A fresh directory the daemon's user may create its unix socket in (removed by the caller).
    static func socketDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "rl-socket-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Unprivileged.handOver(path)
        return path
    }

    /// A port that accepts connections (the kernel completes them from the backlog) and never answers:
    /// a daemon that is slower than any timeout. Closed when the returned descriptor is.
    static func silentPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else { throw LineClient.Failure(description: "cannot open a silent port") }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Requests through `port` until one is denied (at most `limit` + 1): the statuses and the headers of
    /// each.
    static func countDown(port: Int, path: String = "/", headers: [String: String] = [:], limit: Int = 5) throws -> [HTTPExchange] {
        var exchanges: [HTTPExchange] = []
        for _ in 0...limit {
            let exchange = try HTTPExchange.get("http://127.0.0.1:\(port)\(path)", headers: headers)
            exchanges.append(exchange)
            if exchange.status != 200 { break }
        }
        return exchanges
    }
}
