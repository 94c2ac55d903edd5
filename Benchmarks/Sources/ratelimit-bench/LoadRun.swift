import NIOCore
import NIOPosix

/// Connects `connections` clients, lets them run, and gathers what they measured.
struct LoadRun {
    var host: String
    var port: Int
    var connections: Int
    var pipeline: Int
    var threads: Int
    var writer: RequestWriter
    /// Makes the key source of connection `index`.
    var keys: @Sendable (Int) -> KeySource

    /// Runs until `body` returns, then lets the pipelines drain and merges the results. Without a body the
    /// connections run until their key sources are exhausted.
    func run(counters: LiveCounters, while body: (() async throws -> Void)? = nil) async throws -> ConnectionResult {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            let total = try await drive(group: group, counters: counters, while: body)
            try await group.shutdownGracefully()
            return total
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private func drive(
        group: MultiThreadedEventLoopGroup, counters: LiveCounters, while body: (() async throws -> Void)?
    ) async throws -> ConnectionResult {
        var futures: [EventLoopFuture<ConnectionResult>] = []
        for index in 0..<connections {
            let loop = group.next()
            let done = loop.makePromise(of: ConnectionResult.self)
            let pipeline = self.pipeline
            let writer = self.writer
            let source = keys(index)
            let channel = try await ClientBootstrap(group: loop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(LoadConnection(
                            pipeline: pipeline, writer: writer, keys: source, counters: counters, done: done))
                    }
                }
                .connect(host: host, port: port)
                .get()
            futures.append(done.futureResult)
            _ = channel
        }
        if let body {
            try await body()
            counters.stopping.store(true, ordering: .relaxed)
        }
        var total = ConnectionResult()
        for future in futures {
            total.merge(try await future.get())
        }
        return total
    }
}
