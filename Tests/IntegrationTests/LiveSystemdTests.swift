import Foundation
import TestSupport
import Testing

/// The service as an operator runs it: installed by `scripts/install` into a Debian 12 system booted under
/// its own systemd (252) with `systemd-nspawn`, the unit enabled, the daemon its dynamic user behind every
/// hardening setting, and the checks made from outside over loopback, as a client would. Needs root (nspawn
/// and nsenter) and the root file system `scripts/test` builds; with `RATELIMITD_REQUIRE_TOOLS=1` a missing
/// one fails the suite rather than skipping it.
@Suite(
    "live systemd: the installed unit under systemd 252", .serialized, .timeLimit(.minutes(5)),
    .enabled(if: ExternalTool.required || (geteuid() == 0 && SystemdContainer.cachedRootFileSystem != nil)))
struct LiveSystemdTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func boot() throws -> SystemdContainer {
        try #require(geteuid() == 0, "booting a container needs root (systemd-nspawn, nsenter)")
        let container = try SystemdContainer(repositoryRoot: Self.root)
        let state = try container.property("ActiveState")
        let unitLog = try container.journal(["-u", "ratelimitd"])
        try #require(state == "active", "\(state): \(unitLog)")
        return container
    }

    /// Waits, up to `seconds`, for `condition`; returns whether it came.
    func wait(seconds: Double, for condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    @Test func theUnitIsActiveOnlyOnceThePortAnswersAndServesAsItsDynamicUser() throws {
        let container = try boot()
        #expect(try LineClient(port: container.port).request("PING") == "PONG")
        #expect(try LineClient(port: container.port).request("CHECK user:1 1") == "ALLOW 99 600")

        // `systemctl restart` of a Type=notify unit returns when READY=1 arrives: at that moment, with no
        // retry, the port must answer.
        let restart = try container.run(["systemctl", "restart", "ratelimitd"])
        #expect(restart.status == 0, "\(restart.output)")
        #expect(try LineClient(port: container.port).request("PING") == "PONG")
        let metrics = try ExternalTool.run("curl", ["-fsS", "http://127.0.0.1:\(container.metricsPort)/metrics"])
        #expect(metrics.output.contains("ratelimitd_connection_setup_failures_total{listener=\"client\"} 0"))
        #expect(try container.property("StatusText") == "serving on 127.0.0.1:\(container.port)")
    }

    @Test func everyHardeningSettingOfTheUnitIsInForce() throws {
        let container = try boot()
        // Each setting as systemd loaded it, against the unit file as shipped.
        let unit = try String(contentsOfFile: "\(Self.root)/scripts/ratelimitd.service", encoding: .utf8)
        let hardening = unit.components(separatedBy: "\nDynamicUser=")[1].components(separatedBy: "\n[Install]")[0]
        let settings = ("DynamicUser=" + hardening).split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains("=") }
        #expect(settings.count >= 30, "\(settings)")
        // How systemctl show writes what the file says differently.
        let shown: [String: String] = [
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallErrorNumber": "1",
        ]
        for setting in settings {
            let name = String(setting.prefix { $0 != "=" })
            let value = String(setting.dropFirst(name.count + 1))
            if name == "SystemCallFilter" { continue }
            #expect(try container.property(name) == shown[name] ?? value, "\(name)")
        }
        let filter = Set(try container.property("SystemCallFilter").split(separator: " ").map(String.init))
        #expect(filter.contains("accept4") && filter.contains("epoll_wait"))
        // @privileged and @resources members are out.
        for call in ["setpriority", "setrlimit", "mount", "reboot", "setuid", "sched_setscheduler"] {
            #expect(!filter.contains(call), "\(call)")
        }

        // And in the process itself.
        let pid = try container.mainPID()
        try #require(pid > 0)
        let status = try container.run(["cat", "/proc/\(pid)/status"]).output
        func field(_ name: String) -> String {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { String($0.dropFirst(name.count + 1)) }?
                .trimmingCharacters(in: .whitespaces) ?? "missing"
        }
        let uids = field("Uid").split(separator: "\t")
        #expect(uids.count == 4 && uids.allSatisfy { $0 != "0" && $0 == uids[0] }, "DynamicUser: \(uids)")
        let gids = field("Gid").split(separator: "\t")
        #expect(gids.count == 4 && gids.allSatisfy { $0 != "0" && $0 == gids[0] }, "DynamicUser: \(gids)")
        #expect(field("Groups") == gids.first.map(String.init), "no group but its own")
        for capabilities in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            #expect(field(capabilities) == "0000000000000000", "\(capabilities)")
        }
        #expect(field("NoNewPrivs") == "1")
        #expect(field("Seccomp") == "2")
        let mounts = try container.run(["cat", "/proc/\(pid)/mountinfo"]).output.split(separator: "\n").map {
            $0.split(separator: " ").map(String.init)
        }
        func mount(at point: String) -> [String]? { mounts.last { $0.count > 5 && $0[4] == point } }
        #expect(mount(at: "/")?[5].split(separator: ",").contains("ro") == true, "ProtectSystem=strict")
        #expect(mount(at: "/var/lib/private/ratelimitd")?[5].split(separator: ",").contains("rw") == true)
        #expect(mount(at: "/home")?[3].hasSuffix("inaccessible/dir") == true, "ProtectHome")
        #expect(mount(at: "/tmp")?[3].contains("ratelimitd.service") == true, "PrivateTmp")
        #expect(mount(at: "/dev")?.contains("tmpfs") == true, "PrivateDevices")
        #expect(mount(at: "/proc")?.last?.contains("hidepid=invisible") == true, "ProtectProc")
        let namespaces = try container.run(["readlink", "/proc/\(pid)/ns/user", "/proc/1/ns/user"]).output
            .split(separator: "\n")
        #expect(namespaces.count == 2 && namespaces[0] != namespaces[1], "PrivateUsers: \(namespaces)")
        // LimitNOFILE=65536, or the container's own hard limit where that is lower (systemd cannot raise it).
        let limits = try container.run(["cat", "/proc/\(pid)/limits", "/proc/1/limits"]).output.split(separator: "\n")
            .filter { $0.hasPrefix("Max open files") }.map { $0.split(separator: " ").compactMap { Int($0) } }
        #expect(limits.count == 2 && limits[0].first == min(65536, limits[1].last ?? 0), "\(limits)")

        let security = try container.run(["systemd-analyze", "security", "--no-pager", "ratelimitd"]).output
        let line = security.split(separator: "\n").first { $0.contains("Overall exposure level") }
        let score = line.flatMap { $0.split(separator: " ").compactMap { Double($0) }.first }
        #expect(score.map { $0 <= 2.0 } == true, "\(security)")
    }

    @Test func reloadKeepsStateAndConnectionsAndStopAndStartGoThroughTheSnapshot() throws {
        let container = try boot()
        let client = try LineClient(port: container.port)
        // 100 a day: nothing refills during the test, so the remaining count is exact.
        #expect(try client.request("CHECK user:1 40 100/1d").hasPrefix("ALLOW 60 "))

        // A new rule, so that the reload shows.
        let config = "\(container.root)/etc/ratelimitd/ratelimitd.toml"
        let rule = "\n[[rules]]\nname = \"reloaded\"\nmatch = \"reload:*\"\nalgorithm = \"fixed_window\"\nlimit = 7\nwindow = \"1h\"\n"
        try (try String(contentsOfFile: config, encoding: .utf8) + rule).write(toFile: config, atomically: false, encoding: .utf8)
        let reload = try container.run(["systemctl", "reload", "ratelimitd"])
        #expect(reload.status == 0, "\(reload.output)")
        #expect(try wait(seconds: 20) { try container.journal(["-t", "ratelimitd"]).contains { $0.contains("reloaded configuration") } })
        // The same connection, the same state, the new rule.
        #expect(try client.request("CHECK user:1 0 100/1d").hasPrefix("ALLOW 60 "))
        #expect(try client.request("CHECK reload:a 1").hasPrefix("ALLOW 6 "))
        let pid = try container.mainPID()

        let stop = try container.run(["systemctl", "stop", "ratelimitd"])
        #expect(stop.status == 0, "\(stop.output)")
        #expect(try container.property("ActiveState") == "inactive")
        let saved = try container.journal(["-t", "ratelimitd"]).last { $0.contains("saved final snapshot") }
        #expect(saved?.contains("keys=2") == true, "\(saved ?? "no snapshot line")")
        #expect(saved?.contains("path=/var/lib/ratelimitd/state.snap") == true)
        #expect(try container.run(["test", "-s", "/var/lib/private/ratelimitd/state.snap"]).status == 0)

        let start = try container.run(["systemctl", "start", "ratelimitd"])
        #expect(start.status == 0, "\(start.output)")
        #expect(try container.mainPID() != pid)
        let again = try LineClient(port: container.port)
        #expect(try again.request("CHECK user:1 0 100/1d").hasPrefix("ALLOW 60 "))
        #expect(try container.journal(["-t", "ratelimitd"]).contains { $0.hasPrefix("info restored snapshot") && $0.contains("keys=2") })

        // Start, reload, stop and start again: the journal holds the daemon's own lines only, none above info.
        let lines = try container.journal(["-t", "ratelimitd"])
        #expect(lines.count >= 8, "\(lines)")
        for line in lines {
            #expect(line.hasPrefix("info ") || line.hasPrefix("notice "), "not the daemon's own info line: \(line)")
        }
        #expect(try container.journal(["-t", "ratelimitd", "-p", "warning"]).isEmpty)
        // Nor did systemd find anything to say about the unit file.
        let boot = try container.journal(["-b"])
        #expect(!boot.contains { $0.contains("ratelimitd.service:") && !$0.hasPrefix("ratelimitd.service: ") }, "\(boot)")
    }

    /// README's drop-in: the token file stays root's (mode 600) and systemd hands it to the dynamic user as a
    /// credential.
    static let tokenDropIn = """
        # /etc/systemd/system/ratelimitd.service.d/token.conf
        [Service]
        LoadCredential=token:/etc/ratelimitd/token
        ExecStart=
        ExecStart=/usr/local/bin/ratelimitd --config /etc/ratelimitd/ratelimitd.toml --auth-token-file ${CREDENTIALS_DIRECTORY}/token

        """

    @Test func aTokenFileOnlyRootCanReadReachesTheServiceAsACredential() throws {
        let container = try boot()
        let token = "9c1f4e7a2b8d3c6f0e5a1d9b7c3e2f8a"
        let path = "\(container.root)/etc/ratelimitd/token"
        try (token + "\n").write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, 0o600)
        try FileManager.default.createDirectory(
            atPath: "\(container.root)/etc/systemd/system/ratelimitd.service.d", withIntermediateDirectories: true)
        try Self.tokenDropIn.write(
            toFile: "\(container.root)/etc/systemd/system/ratelimitd.service.d/token.conf", atomically: false, encoding: .utf8)
        #expect(try container.run(["systemctl", "daemon-reload"]).status == 0)
        let restart = try container.run(["systemctl", "restart", "ratelimitd"])
        #expect(restart.status == 0, "\(restart.output)")
        let client = try LineClient(port: container.port)
        #expect(try client.request("CHECK user:1 1") == "ERR noauth authentication required; send AUTH <token>")
        #expect(try client.request("AUTH \(token)") == "OK")
        #expect(try client.request("CHECK user:1 1") == "ALLOW 99 600")
        // The credential is the dynamic user's alone, so nothing is warned about.
        #expect(try container.journal(["-t", "ratelimitd", "-p", "warning"]).isEmpty)
        let readme = try String(contentsOfFile: "\(Self.root)/README.md", encoding: .utf8)
        #expect(readme.contains("```ini\n" + Self.tokenDropIn + "```\n"), "README's drop-in differs from the tested one")
    }

    /// nginx as Debian runs it (its own unit, workers as www-data) in front of the installed service, with
    /// the shipped site files copied from where `scripts/install` put them into `/etc/nginx/conf.d/`, as
    /// README says: the Lua module on the service's unix socket (its dynamic user's, under PrivateUsers),
    /// and `auth_request` on the HTTP check port.
    @Test func nginxUnderSystemdAsksTheInstalledServiceThroughTheInstalledClients() throws {
        let lua = (front: try RedisServerProcess.freePort(), application: try RedisServerProcess.freePort())
        let authRequest = try RedisServerProcess.freePort()
        let http = try RedisServerProcess.freePort()
        var port = 0
        let container = try SystemdContainer(repositoryRoot: Self.root) { root in
            let share = "\(root)/usr/local/share/ratelimitd/nginx"
            let config = "\(root)/etc/ratelimitd/ratelimitd.toml"
            port = Int(try String(contentsOfFile: config, encoding: .utf8)
                .components(separatedBy: "listen = \"127.0.0.1:")[1].prefix { $0.isNumber }) ?? 0
            // What an operator adds: a rule for the addresses nginx sends, and the HTTP check port.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: config))
            handle.seekToEndOfFile()
            handle.write(Data((Gateways.rules + "\n\n[http]\nlisten = \"127.0.0.1:\(http)\"\n").utf8))
            let text = try String(contentsOfFile: config, encoding: .utf8)
            try #require(text.contains("# unix_socket = \"/run/ratelimitd/ratelimitd.sock\""))
            try text.replacingOccurrences(
                of: "# unix_socket = \"/run/ratelimitd/ratelimitd.sock\"", with: "unix_socket = \"/run/ratelimitd/ratelimitd.sock\""
            ).write(toFile: config, atomically: false, encoding: .utf8)
            try handle.close()
            func install(_ file: String, _ replacing: [(String, String)]) throws {
                var text = try String(contentsOfFile: "\(share)/\(file)", encoding: .utf8)
                for (from, to) in replacing {
                    try #require(text.contains(from), "\(file) lacks \(from)")
                    text = text.replacingOccurrences(of: from, with: to)
                }
                try text.write(toFile: "\(root)/etc/nginx/conf.d/\(file)", atomically: false, encoding: .utf8)
            }
            // The Lua module on the service's unix socket, as README's variant has it.
            try install("ratelimitd.conf", [
                ("127.0.0.1:8080", "127.0.0.1:\(lua.front)"), ("127.0.0.1:8090", "127.0.0.1:\(lua.application)"),
                ("host = \"127.0.0.1\", port = 7283", "host = \"unix:/run/ratelimitd/ratelimitd.sock\""),
            ])
            try install("auth_request.conf", [
                ("127.0.0.1:8082", "127.0.0.1:\(authRequest)"), ("127.0.0.1:8090", "127.0.0.1:\(lua.application)"),
                ("127.0.0.1:7284", "127.0.0.1:\(http)"),
            ])
            // Debian's default site would take port 80 of the machine (the container shares its network).
            try FileManager.default.removeItem(atPath: "\(root)/etc/nginx/sites-enabled/default")
        }
        #expect(try container.run(["systemctl", "is-active", "ratelimitd", "nginx"]).output == "active\nactive\n")
        let workers = try container.run(["ps", "-o", "user=", "-C", "nginx"]).output
        #expect(workers.split(separator: "\n").contains("www-data"), "\(workers)")

        let exchanges = try Gateways.countDown(port: lua.front)
        let nginxLog = (try? container.journal(["-u", "nginx"])) ?? []
        #expect(exchanges.map(\.status) == [200, 200, 200, 200, 200, 429], "\(nginxLog)")
        #expect(exchanges.prefix(5).map { $0.headers["ratelimit-remaining"] } == ["4", "3", "2", "1", "0"])
        #expect(719...720 ~= Int(exchanges.last?.headers["retry-after"] ?? "") ?? -1, "\(exchanges.last?.headers ?? [:])")
        // auth_request keys on the same address through the HTTP check port: that client is spent already.
        let limited = try HTTPExchange.get("http://127.0.0.1:\(authRequest)/")
        #expect(limited.status == 429 && limited.body == "rate limited\n", "\(limited)")
        #expect(719...720 ~= Int(limited.headers["retry-after"] ?? "") ?? -1, "\(limited.headers)")
        #expect(try LineClient(port: port).request("CHECK ip:127.0.0.1 0").hasPrefix("ALLOW 0 "))
    }

    @Test func aFrozenDaemonIsKilledAndRestartedByTheWatchdog() throws {
        let container = try boot()
        #expect(try container.property("WatchdogUSec") == "10s")
        let pid = try container.mainPID()
        // `kill -STOP 0` would stop the container's own process group.
        try #require(pid > 0)
        let started = Date()
        #expect(try container.run(["kill", "-STOP", "\(pid)"]).status == 0)
        // The ping is due every 5 s and systemd waits 10 s from the last one; RestartSec=1s; a margin of 10 s.
        let restarted = try wait(seconds: 21) {
            let now = try container.mainPID()
            let state = try container.property("ActiveState")
            return now != 0 && now != pid && state == "active"
        }
        let unitLog = try container.journal(["-u", "ratelimitd"])
        #expect(restarted, "\(unitLog)")
        #expect(Date().timeIntervalSince(started) <= 21)
        #expect(try container.property("NRestarts") == "1")
        #expect(try container.journal(["-u", "ratelimitd"]).contains { $0.contains("Watchdog timeout") })
        #expect(try LineClient(port: container.port).request("PING") == "PONG")
    }
}
