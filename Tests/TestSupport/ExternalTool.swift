import Foundation

/// A program from outside the project that some integration tests drive (`redis-cli`, `redis-benchmark`,
/// `python3` with redis-py). `scripts/test` installs them and sets `RATELIMITD_REQUIRE_TOOLS=1`, which
/// turns a missing tool into a failure; a bare `swift test` on a machine without them skips those tests.
public enum ExternalTool {
    public static var required: Bool {
        ProcessInfo.processInfo.environment["RATELIMITD_REQUIRE_TOOLS"] == "1"
    }

    /// The tool's path on PATH, or nil.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Whether tests that need `names` should run: yes when all are there, and yes when they are required
    /// (so that the test fails loudly on what is missing).
    public static func available(_ names: String...) -> Bool {
        required || names.allSatisfy { find($0) != nil }
    }

    /// Runs a tool from PATH to completion with a deadline; returns its status and combined output.
    public static func run(
        _ name: String, _ arguments: [String], environment: [String: String] = [:], timeoutSeconds: Double = 60
    ) throws -> (status: Int32, output: String) {
        guard let path = find(name) else {
            throw LineClient.Failure(description: "\(name) is not installed (scripts/test installs it)")
        }
        return try runProgram(path, arguments, environment: environment, timeoutSeconds: timeoutSeconds)
    }

    /// Makes a process with `make` and starts it. Foundation sets up the child's descriptors from the
    /// parent's at spawn time; with tests on other threads opening and closing descriptors meanwhile, a spawn
    /// now and then fails with EBADF before anything runs. Then a fresh process is tried, up to five times.
    public static func launch(_ make: () throws -> Process) throws -> Process {
        var attempt = 0
        while true {
            let process = try make()
            do {
                try process.run()
                return process
            } catch where attempt < 5 && isBadDescriptor(error) {
                attempt += 1
                usleep(10_000)
            }
        }
    }

    static func isBadDescriptor(_ error: any Error) -> Bool {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        return underlying?.domain == NSPOSIXErrorDomain && underlying?.code == Int(EBADF)
    }

    /// Runs the program at `path` to completion with a deadline; returns its status and combined output.
    public static func runProgram(
        _ path: String, _ arguments: [String], environment: [String: String] = [:], timeoutSeconds: Double = 60
    ) throws -> (status: Int32, output: String) {
        // Output goes to a file, not a pipe, so a chatty program can never block on a full pipe.
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("tool-\(UUID().uuidString).out")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let handle = try FileHandle(forWritingTo: output)
        let process = try launch {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            return process
        }
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            // SIGTERM, then SIGKILL: a child that ignores SIGTERM (as it may inherit) must not hang the test.
            process.stopGently(within: 2)
            throw LineClient.Failure(description: "\(path) \(arguments) did not finish in \(timeoutSeconds) s")
        }
        try handle.close()
        return (process.terminationStatus, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }
}
