import ArgumentParser
import EnvoyRateLimitAPI
import EnvoyRateLimitClient
import GRPCCore
import GRPCNIOTransportHTTP2
import Histogram
import Synchronization

/// `ratelimit-bench grpc`: Envoy's `ShouldRateLimit` as Envoy calls it, unary calls over HTTP/2, a fixed
/// number outstanding at all times; each call one descriptor `[(k, <key>)]` of domain `bench`.
struct GRPCLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpc", abstract: "Call the Envoy rate limit service for a while; report calls/s and latency.")

    @Option var host = "127.0.0.1"
    @Option var port = 8081
    @Option(help: "HTTP/2 connections (Envoy keeps few and multiplexes).") var connections = 1
    @Option(help: "Calls outstanding at all times, over all connections.") var concurrency = 50
    @Option(help: "Distinct keys.") var keys = 100_000
    @Option(help: "Seconds to measure.") var duration = 5.0
    @Option(help: "Seconds to run before measuring.") var warmup = 1.0
    @Flag(help: "Print one CSV line: ops_per_sec,p50_us,p90_us,p99_us,p999_us,allowed,denied,errors.")
    var csv = false

    func run() async throws {
        let clients = try (0..<connections).map { _ in
            GRPCClient(transport: try .http2NIOPosix(target: .ipv4(address: host, port: port), transportSecurity: .plaintext))
        }
        let counters = LiveCounters()
        let results = Mutex(ConnectionResult())
        var measured = (from: UInt64(0), to: UInt64(0))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { try await client.runConnections() } }
            let workers = try await withThrowingTaskGroup(of: ConnectionResult.self) { calls in
                for worker in 0..<concurrency {
                    let stub = Envoy_Service_Ratelimit_V3_RateLimitService.Client(wrapping: clients[worker % clients.count])
                    calls.addTask {
                        var result = ConnectionResult()
                        var chooser = KeyChooser(count: keys, distribution: .uniform, seed: UInt64(worker + 1))
                        while !counters.stopping.load(ordering: .relaxed) {
                            var request = Envoy_Service_Ratelimit_V3_RateLimitRequest()
                            request.domain = "bench"
                            var descriptor = Envoy_Extensions_Common_Ratelimit_V3_RateLimitDescriptor()
                            var entry = Envoy_Extensions_Common_Ratelimit_V3_RateLimitDescriptor.Entry()
                            entry.key = "k"
                            entry.value = "\(chooser.next())"
                            descriptor.entries = [entry]
                            request.descriptors = [descriptor]
                            let started = monotonicNanos()
                            let code: Envoy_Service_Ratelimit_V3_RateLimitResponse.Code?
                            do { code = try await stub.shouldRateLimit(request).overallCode } catch { code = nil }
                            guard counters.recording.load(ordering: .relaxed) else { continue }
                            result.latency.record(monotonicNanos() - started)
                            switch code {
                            case .ok: result.allowed += 1
                            case .overLimit: result.denied += 1
                            case nil: result.errors += 1
                            default: result.other += 1
                            }
                            counters.replies.add(1, ordering: .relaxed)
                        }
                        return result
                    }
                }
                try await Task.sleep(for: .seconds(warmup))
                counters.recording.store(true, ordering: .relaxed)
                measured.from = monotonicNanos()
                try await Task.sleep(for: .seconds(duration))
                counters.recording.store(false, ordering: .relaxed)
                measured.to = monotonicNanos()
                counters.stopping.store(true, ordering: .relaxed)
                var all: [ConnectionResult] = []
                for try await result in calls { all.append(result) }
                return all
            }
            for worker in workers { results.withLock { $0.merge(worker) } }
            for client in clients { client.beginGracefulShutdown() }
            try await group.waitForAll()
        }
        let result = results.withLock { $0 }
        let seconds = Double(measured.to - measured.from) / 1e9
        let rate = Double(result.total) / seconds
        func micros(_ percentile: Double) -> String { Format.fixed(Double(result.latency.valueAtPercentile(percentile)) / 1000) }
        let percentiles = [50, 90, 99, 99.9].map(micros)
        if csv {
            print(([Format.fixed(rate, 0)] + percentiles + ["\(result.allowed)", "\(result.denied)", "\(result.errors)"])
                .joined(separator: ","))
        } else {
            print("ratelimit-bench grpc: \(connections) connections, \(concurrency) concurrent calls, \(keys) keys, \(Format.fixed(seconds)) s")
            print("  calls/s   " + Format.fixed(rate, 0))
            print("  latency   p50 \(percentiles[0]) us  p90 \(percentiles[1]) us  p99 \(percentiles[2]) us  p99.9 \(percentiles[3]) us")
            print("  replies   ok \(result.allowed)  over_limit \(result.denied)  errors \(result.errors)")
        }
    }
}
