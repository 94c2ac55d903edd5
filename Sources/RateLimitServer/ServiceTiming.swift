import ServiceLifecycle
import ServiceTicks
import Synchronization

/// Notes when graceful shutdown begins and tells systemd (`STOPPING=1`). List it last in the group: groups
/// tell services in reverse order, so it hears first, and what runs last (the final replication flush)
/// knows how much time is left.
public struct ShutdownClockService: Service {
    let server: RateLimitServer
    let notifier: SystemdNotifier

    public init(server: RateLimitServer, notifier: SystemdNotifier) {
        self.server = server
        self.notifier = notifier
    }

    public func run() async throws {
        try? await gracefulShutdown()
        server.noteShutdownBegan()
        notifier.notify("STOPPING=1\nSTATUS=shutting down")
    }
}

/// Pings systemd's watchdog (`WATCHDOG=1`) at half of `$WATCHDOG_USEC`, but only after every event loop has
/// run a task: a daemon whose loops are stuck stops pinging, and systemd restarts it.
public struct WatchdogService: Service {
    let server: RateLimitServer
    let notifier: SystemdNotifier

    public init(server: RateLimitServer, notifier: SystemdNotifier) {
        self.server = server
        self.notifier = notifier
    }

    public func run() async throws {
        guard let microseconds = notifier.watchdogMicroseconds else {
            try? await gracefulShutdown()
            return
        }
        let interval = Duration.microseconds(max(microseconds / 2, 1_000))
        // Each tick asks every loop to run a task and pings only if all of last tick's ran: never waits
        // on a loop, so a stuck one cannot hold up the shutdown either.
        var probe = server.probeEventLoops()
        while await nextTick(after: interval) {
            if probe.allRan { notifier.notify("WATCHDOG=1") }
            probe = server.probeEventLoops()
        }
    }
}

/// Counts the event loops that ran the task a watchdog probe gave them.
public final class EventLoopProbe: Sendable {
    private let expected: Int
    private let count = Atomic<Int>(0)

    init(expected: Int) {
        self.expected = expected
    }

    func ran() {
        count.add(1, ordering: .relaxed)
    }

    public var allRan: Bool { count.load(ordering: .relaxed) >= expected }
}
