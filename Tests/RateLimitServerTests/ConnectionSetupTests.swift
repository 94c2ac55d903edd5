import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import RateLimitServer
import ShardStore
import Synchronization
import Testing
import TestSupport

@testable import RateLimitServer

/// Connections that cannot be set up are closed, counted per listener and logged with their cause, never
/// dropped in silence.
@Suite("setting up connections")
struct ConnectionSetupTests {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
        var snapshot: [String] { all.withLock { $0 } }
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String { "setsockopt: Permission denied (errno: 13)" }
    }

    func makeSetup(_ lines: Lines, clock: ManualDecisionClock) -> ConnectionSetup {
        let logger = Logger(label: "test") { _ in
            KeyValueLogHandler(journal: true) { line in lines.all.withLock { $0.append(line) } }
        }
        return ConnectionSetup(logger: logger, now: { clock.nanosecondsNow() })
    }

    @Test func aFailedSetupClosesCountsAndLogsOncePerIntervalWithTheCause() throws {
        let lines = Lines()
        let clock = ManualDecisionClock()
        let setup = makeSetup(lines, clock: clock)
        let channel = EmbeddedChannel()
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()

        let failed = setup.setUp(channel, listener: .client) { _ in throw Refused() }
        #expect(throws: Refused.self) { try failed.wait() }
        #expect(setup.failures(on: .client) == 1)
        #expect(setup.failures(on: .metrics) == 0)
        #expect(lines.snapshot == [
            "<3>error could not set up a connection; closed it cause=\"setsockopt: Permission denied (errno: 13)\" "
                + "listener=client peer=127.0.0.1:40000\n"
        ])

        // A flood of failures is counted in full but logged once per ten seconds.
        for _ in 0..<5 { setup.record(Refused(), listener: .metrics, peer: nil) }
        #expect(setup.failures(on: .metrics) == 5)
        #expect(setup.totalFailures == 6)
        #expect(lines.snapshot.count == 1)
        clock.advance(byNanoseconds: 10_000_000_000)
        setup.record(Refused(), listener: .metrics, peer: nil)
        #expect(lines.snapshot.count == 2)
        #expect(lines.snapshot.last?.contains("listener=metrics not_logged=5") == true, "\(lines.snapshot)")
    }

    @Test func aSuccessfulSetupRunsTheListenersConfigurationAndCountsNothing() throws {
        let lines = Lines()
        let setup = makeSetup(lines, clock: ManualDecisionClock())
        let channel = EmbeddedChannel()
        let configured = Mutex(false)
        try setup.setUp(channel, listener: .client) { _ in configured.withLock { $0 = true } }.wait()
        #expect(configured.withLock { $0 })
        #expect(setup.totalFailures == 0)
        #expect(lines.snapshot.isEmpty)
    }

    /// The socket option that once reset every client of an unprivileged daemon: TCP_NODELAY must be set at
    /// the TCP level. Asked at the socket level, its number means SO_DEBUG, which needs CAP_NET_ADMIN (and
    /// root, which has it, would not notice).
    @Test func acceptedSocketsGetNoDelayAtTheTCPLevelAndNotSODebug() async throws {
        let lines = Lines()
        let setup = makeSetup(lines, clock: ManualDecisionClock())
        let seen = Mutex<(noDelay: Int, debug: Int)?>(nil)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                setup.setUp(channel, listener: .client) { channel in
                    let options = channel.syncOptions!
                    let noDelay = try options.getOption(.tcpOption(.tcp_nodelay))
                    let debug = try options.getOption(ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_DEBUG)))
                    seen.withLock { $0 = (noDelay, debug) }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        _ = try LineClient(port: server.localAddress!.port!)
        for _ in 0..<500 where seen.withLock({ $0 == nil }) { try await Task.sleep(for: .milliseconds(10)) }
        try await server.close()
        try await group.shutdownGracefully()
        let options = try #require(seen.withLock { $0 })
        #expect(options.noDelay != 0)
        #expect(options.debug == 0)
        #expect(setup.totalFailures == 0)
    }

    @Test func statsAndMetricsReportSetupFailuresPerListener() async throws {
        try await withServer(shards: 1) { port, server in
            server.connectionSetup.record(Refused(), listener: .metrics, peer: nil)
            let stats = try LineClient(port: port).statistics()
            #expect(stats["connection_setup_failures"] == 1)
            let reading = server.readMetrics().connectionSetupFailures
            #expect(reading.map(\.listener) == ["client", "metrics", "envoy", "http"])
            #expect(reading.map(\.count) == [0, 1, 0, 0])
        }
    }
}
