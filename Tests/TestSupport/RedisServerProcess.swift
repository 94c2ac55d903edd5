import Foundation

/// A throwaway `redis-server` for a test: loopback only, on a free port, no persistence, in a directory of
/// its own, stopped when the test is done. It can be stopped and started again on the same port, to
/// play an outage.
public final class RedisServerProcess: @unchecked Sendable {
    // @unchecked: one test drives it from one task; Process is safe to signal from any thread.
    public let port: Int
    private let directory: String
    private let extraArguments: [String]
    private var process: Process?

    public static var isAvailable: Bool { ExternalTool.available("redis-server") }

    /// `arguments` are added to the command line (`["--requirepass", "secret"]`). A cluster node needs a
    /// port of at most 55535 (its bus listens 10000 above): `clusterPort` picks a free one there.
    public init(arguments: [String] = [], clusterPort: Bool = false) throws {
        extraArguments = arguments
        port = try clusterPort ? Self.freePort(in: 20_000...55_535) : Self.freePort()
        directory = NSTemporaryDirectory() + "ratelimitd-redis-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try start()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var url: String { "redis://127.0.0.1:\(port)" }

    /// Starts the server (again) and waits until it answers PING.
    public func start() throws {
        guard let path = ExternalTool.find("redis-server") else {
            throw LineClient.Failure(description: "redis-server is not installed (scripts/test installs it)")
        }
        let arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", directory, "--logfile", "\(directory)/redis.log",
        ] + extraArguments
        let process = try ExternalTool.launch {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return process
        }
        self.process = process
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            // A server with a password answers -NOAUTH: up all the same.
            if let reply = try? command("PING"), reply == "+PONG" || reply.hasPrefix("-NOAUTH") { return }
            guard process.isRunning else { break }
            usleep(20_000)
        }
        stop()
        throw LineClient.Failure(description: "redis-server did not start on port \(port): \(log)")
    }

    /// Stops the server; its data is gone, as after a restart without persistence. SIGKILL, because a
    /// child of the test runner can inherit a signal mask that holds SIGTERM back, and there is nothing
    /// to save.
    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGCONT)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Freezes or thaws the server (SIGSTOP, SIGCONT): connections stay open and nothing answers.
    public func pause(_ paused: Bool) {
        guard let process else { return }
        kill(process.processIdentifier, paused ? SIGSTOP : SIGCONT)
    }

    /// Sends one inline command and returns the first line of the reply (`:12`, `+OK`, `$-1`, `-ERR …`).
    public func command(_ line: String) throws -> String {
        let client = try LineClient(port: port, timeoutSeconds: 5)
        let reply = try client.request(line)
        return reply.hasSuffix("\r") ? String(reply.dropLast()) : reply
    }

    /// An integer reply (`PTTL`, `DBSIZE`, `EXISTS`).
    public func integer(_ line: String) throws -> Int {
        let reply = try command(line)
        guard reply.hasPrefix(":"), let value = Int(reply.dropFirst()) else {
            throw LineClient.Failure(description: "\(line): expected an integer, got \(reply)")
        }
        return value
    }

    public var log: String { (try? String(contentsOfFile: "\(directory)/redis.log", encoding: .utf8)) ?? "" }

    /// A port in `range` that it and the one 10000 above are free now (tried at random, bound, released).
    public static func freePort(in range: ClosedRange<Int>) throws -> Int {
        for _ in 0..<100 {
            let port = Int.random(in: range)
            if canBind(port), canBind(port + 10_000) { return port }
        }
        throw LineClient.Failure(description: "cannot find a free port in \(range)")
    }

    private static func canBind(_ port: Int) -> Bool {
        onLoopback(port: port) { fd, address, length in bind(fd, address, length) == 0 }
    }

    /// `body` with a fresh TCP socket and the address of `port` on 127.0.0.1; the socket is closed after.
    public static func onLoopback(
        port: Int, _ body: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Bool
    ) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }

    /// A port nothing listens on now: bound to 0, read, released.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LineClient.Failure(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Bool in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else { throw LineClient.Failure(description: "cannot find a free port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
