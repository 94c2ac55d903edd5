import Foundation

/// Runs the real `ratelimitd` binary for a test: on a port the kernel picks, with its log in a file, as an
/// unprivileged user when the tests run as root (`Unprivileged`), and stopped (SIGTERM, then SIGKILL) when
/// the test is done with it.
public final class DaemonProcess: @unchecked Sendable {
    // @unchecked: `process` and `logPath` are set once in init; Process itself is thread-safe for
    // terminate/isRunning, and tests use one DaemonProcess from one task.
    public let process: Process
    public let logPath: String
    public private(set) var port = 0

    /// The `ratelimitd` built next to the test bundle (`swift build` puts every product in one folder).
    public static var binaryPath: String {
        let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = testBinary.deletingLastPathComponent()
        // On Linux the test bundle is an executable inside the build folder; elsewhere it may be a bundle.
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("ratelimitd").path),
            directory.path != "/"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("ratelimitd").path
    }

    /// Starts the daemon with `arguments` (plus `--listen 127.0.0.1:0` unless `listen` is false) and waits
    /// until it logs the address it listens on.
    /// `executable` runs instead of the daemon itself (a tracer such as strace, whose arguments start it),
    /// also as the unprivileged user.
    /// With `waitForListening` false it returns at once, `port` 0: for tests that watch start-up themselves.
    public init(
        arguments: [String], listen: Bool = true, environment: [String: String] = [:], executable: String? = nil,
        waitForListening: Bool = true
    ) throws {
        logPath = NSTemporaryDirectory() + "ratelimitd-test-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        // Metrics on a free port too, so daemons in parallel tests never contend for the default one.
        let metrics = arguments.contains("--metrics-listen") ? [] : ["--metrics-listen", "127.0.0.1:0"]
        let command = Unprivileged.command(
            executable ?? DaemonProcess.binaryPath, (listen ? ["--listen", "127.0.0.1:0"] : []) + arguments + metrics)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process = try ExternalTool.launch {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: command.executable)
            process.arguments = command.arguments
            if !environment.isEmpty {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            }
            process.standardError = log
            process.standardOutput = FileHandle.nullDevice
            return process
        }
        if waitForListening { port = try waitForPort() }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: logPath)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The metrics port from the log line `metrics on http://127.0.0.1:PORT/metrics` (waiting for it).
    public func metricsPort() throws -> Int {
        try portFromLog(after: "metrics on http://127.0.0.1:", what: "serve metrics")
    }

    private func waitForPort() throws -> Int {
        try portFromLog(after: "listening on 127.0.0.1:", what: "start listening")
    }

    /// The port number that follows `marker` in the log, waiting up to 30 s for it to appear.
    private func portFromLog(after marker: String, what: String) throws -> Int {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let range = log.range(of: marker), let port = Int(log[range.upperBound...].prefix { $0.isNumber }) {
                return port
            }
            if !process.isRunning {
                throw LineClient.Failure(description: "ratelimitd exited with \(process.terminationStatus): \(log)")
            }
            usleep(20_000)
        }
        stop()
        throw LineClient.Failure(description: "ratelimitd did not \(what) within 30 s: \(log)")
    }

    /// Waits until the log holds `text` at least `occurrences` times (the event a test synchronises on);
    /// false if it does not within `timeoutSeconds`.
    public func waitForLog(_ text: String, occurrences: Int = 1, timeoutSeconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            if log.components(separatedBy: text).count - 1 >= occurrences { return true }
            usleep(20_000)
        }
        return false
    }

    /// Sends `signal` and waits for the daemon to exit; returns its exit status (or the signal that ended
    /// it, as 128 + signal, the way a shell reports it).
    @discardableResult
    public func signalAndWait(_ signal: Int32, timeoutSeconds: Double = 30) throws -> Int32 {
        kill(process.processIdentifier, signal)
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        guard !process.isRunning else {
            throw LineClient.Failure(description: "ratelimitd did not exit within \(timeoutSeconds) s of signal \(signal)")
        }
        process.waitUntilExit()
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    public func stop() {
        process.stopGently()
    }

    /// Runs the binary to completion (for `--check-config`, `--version`, bad start-ups) and returns its exit
    /// status and combined output.
    public static func runToExit(_ arguments: [String], timeoutSeconds: Double = 30) throws -> (status: Int32, output: String) {
        let command = Unprivileged.command(binaryPath, arguments)
        return try ExternalTool.runProgram(command.executable, command.arguments, timeoutSeconds: timeoutSeconds)
    }
}

/// Writes `text` to a fresh temporary file and returns its path.
public func temporaryFile(_ text: String, suffix: String = ".toml") throws -> String {
    let path = NSTemporaryDirectory() + "ratelimitd-\(UUID().uuidString)\(suffix)"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// A configuration whose one rule barely refills during a test: a token bucket of 10 per hour for every key.
public let slowRuleConfig = """
    [[rules]]
    name = "slow"
    match = "*"
    algorithm = "token_bucket"
    limit = 10
    window = "1h"
    """
