import Foundation

/// A Debian 12 system booted under its own systemd with `systemd-nspawn`, with ratelimitd installed into
/// it by `scripts/install` and enabled, as an operator would: the unit, the dynamic user, the hardening, the
/// journal, all real. It shares the host's network, so the daemon's ports are loopback ports here; the
/// test reaches inside with `nsenter` (`run`). Needs root (nspawn, nsenter) and the cached root file system
/// `scripts/test` builds (`RATELIMITD_SYSTEMD_ROOTFS`); each container boots a fresh copy of it.
public final class SystemdContainer: @unchecked Sendable {
    // @unchecked: one test drives one container from one task.
    public let port: Int
    public let metricsPort: Int
    public let root: String
    private let directory: String
    private let nspawn: Process
    private let consoleLog: String
    /// The container's init, as a host PID (nsenter's target).
    public private(set) var leader: Int32 = 0

    /// The cached root file system, or why there is none.
    public static var cachedRootFileSystem: String? {
        ProcessInfo.processInfo.environment["RATELIMITD_SYSTEMD_ROOTFS"].flatMap {
            FileManager.default.fileExists(atPath: "\($0)/lib/systemd/systemd") ? $0 : nil
        }
    }

    /// Copies the cached system, installs the daemon built for these tests into it with `scripts/install`,
    /// points the installed configuration at free ports, enables the unit, lets `prepare` change the tree
    /// (given its root) and boots.
    public init(repositoryRoot: String, prepare: (String) throws -> Void = { _ in }) throws {
        guard let cache = Self.cachedRootFileSystem else {
            throw LineClient.Failure(
                description: "RATELIMITD_SYSTEMD_ROOTFS names no root file system: scripts/test builds it")
        }
        directory = NSTemporaryDirectory() + "rl-nspawn-\(UUID().uuidString.prefix(8))"
        root = directory + "/root"
        consoleLog = directory + "/console.log"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Self.check(ExternalTool.run("cp", ["-a", cache, root], timeoutSeconds: 120), "copying the root file system")
        try Self.check(
            ExternalTool.runProgram(
                "\(repositoryRoot)/scripts/install", [],
                environment: ["DESTDIR": root, "RATELIMITD_BINARY": DaemonProcess.binaryPath]),
            "scripts/install")
        port = try RedisServerProcess.freePort()
        metricsPort = try RedisServerProcess.freePort()
        let config = "\(root)/etc/ratelimitd/ratelimitd.toml"
        let installed = try String(contentsOfFile: config, encoding: .utf8)
        guard installed.contains("\n[server]\n"), installed.contains("\n[metrics]\n") else {
            throw LineClient.Failure(description: "the installed configuration has no [server] or [metrics] table")
        }
        try installed
            .replacingOccurrences(of: "\n[server]\n", with: "\n[server]\nlisten = \"127.0.0.1:\(port)\"\n")
            .replacingOccurrences(of: "\n[metrics]\n", with: "\n[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"\n")
            .write(toFile: config, atomically: false, encoding: .utf8)
        try Self.check(ExternalTool.run("systemctl", ["--root=\(root)", "enable", "ratelimitd"]), "enabling the unit")
        try prepare(root)

        _ = FileManager.default.createFile(atPath: consoleLog, contents: nil)
        let executable = try ExternalTool.find("systemd-nspawn").orThrow("systemd-nspawn")
        var arguments = [
            // No machined and no transient scope: the test machine runs no systemd of its own.
            "--register=no", "--keep-unit", "--boot", "--directory=\(root)", "--console=passive", "--quiet",
        ]
        // A debug build links the Swift runtime from the toolchain; the installed release build does not.
        if let runtime = Self.swiftRuntimeDirectory { arguments.append("--bind-ro=\(runtime)") }
        let console = try FileHandle(forWritingTo: URL(fileURLWithPath: consoleLog))
        nspawn = try ExternalTool.launch {
            let nspawn = Process()
            nspawn.executableURL = URL(fileURLWithPath: executable)
            nspawn.arguments = arguments
            nspawn.standardOutput = console
            nspawn.standardError = console
            nspawn.standardInput = FileHandle.nullDevice
            return nspawn
        }
        // The container's init is nspawn's child once it runs systemd and systemd's control socket is up
        // (before that, systemctl has nothing to talk to).
        let deadline = Date().addingTimeInterval(30)
        while leader == 0, Date() < deadline, nspawn.isRunning {
            let child = Int32(try ExternalTool.run("pgrep", ["-P", "\(nspawn.processIdentifier)"]).output
                .split(separator: "\n").first ?? "") ?? 0
            let comm = (try? String(contentsOfFile: "/proc/\(child)/comm", encoding: .utf8)) ?? ""
            if child != 0, comm == "systemd\n", FileManager.default.fileExists(atPath: "/proc/\(child)/root/run/systemd/private") {
                leader = child
            } else {
                usleep(50_000)
            }
        }
        guard leader != 0 else {
            stop()
            throw LineClient.Failure(description: "the container did not start: \(console)")
        }
        // Blocks until boot has finished: every unit started or failed.
        let boot = try run(["systemctl", "is-system-running", "--wait"], timeoutSeconds: 90)
        guard boot.output.contains("running") || boot.output.contains("degraded") else {
            stop()
            throw LineClient.Failure(description: "the container did not boot: \(boot.output)\n\(self.console)")
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var console: String { (try? String(contentsOfFile: consoleLog, encoding: .utf8)) ?? "" }

    /// Runs a command inside the container (all of its namespaces, as its root) and returns its status and
    /// combined output.
    @discardableResult
    public func run(_ command: [String], timeoutSeconds: Double = 60) throws -> (status: Int32, output: String) {
        try ExternalTool.run("nsenter", ["--target", "\(leader)", "--all", "--"] + command, timeoutSeconds: timeoutSeconds)
    }

    /// `systemctl show -p NAME --value` of the daemon's unit.
    public func property(_ name: String) throws -> String {
        try run(["systemctl", "show", "ratelimitd", "-p", name, "--value"]).output
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The daemon's main PID inside the container (0 when it is not running).
    public func mainPID() throws -> Int { Int(try property("MainPID")) ?? 0 }

    /// The journal's messages for `arguments` (e.g. `-t ratelimitd`), one per line.
    public func journal(_ arguments: [String]) throws -> [String] {
        try run(["journalctl", "--no-pager", "-o", "cat"] + arguments).output.split(separator: "\n").map(String.init)
    }

    /// Halts the container (systemd stops every unit, as at a shutdown) and waits for it, then kills what is
    /// left.
    public func stop() {
        nspawn.stopGently(within: 30)
    }

    /// The folder of the Swift runtime this test process loaded, if it loaded one from a file.
    static var swiftRuntimeDirectory: String? {
        // Read to the end: /proc files report a size of 0, which a whole-file read takes at its word.
        guard let data = FileHandle(forReadingAtPath: "/proc/self/maps")?.readDataToEndOfFile() else { return nil }
        let maps = String(decoding: data, as: UTF8.self)
        for line in maps.split(separator: "\n") {
            guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last,
                path.hasSuffix("/libswiftCore.so")
            else { continue }
            return (String(path) as NSString).deletingLastPathComponent
        }
        return nil
    }

    private static func check(_ result: (status: Int32, output: String), _ what: String) throws {
        guard result.status == 0 else {
            throw LineClient.Failure(description: "\(what) failed (\(result.status)): \(result.output)")
        }
    }
}

extension Optional {
    func orThrow(_ name: String) throws -> Wrapped {
        guard let self else { throw LineClient.Failure(description: "\(name) is not installed (scripts/test installs it)") }
        return self
    }
}
