import ArgumentParser
import Histogram

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ratelimit-bench load`: a timed closed-loop run.
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send CHECKs for a while; report ops/s and latency percentiles.")

    @Option var host = "127.0.0.1"
    @Option var port = 7283
    @Option(help: "Client connections.") var connections = 50
    @Option(help: "Requests kept outstanding per connection.") var pipeline = 16
    @Option(help: "Distinct keys.") var keys = 100_000
    @Option(help: "Key distribution: uniform or zipf (theta 0.99).") var distribution = "uniform"
    @Option(help: "allow: keys under a generous rule (prefix bench:); deny: 16 hot keys over a 10/1s limit.")
    var mode = "allow"
    @Option(help: "Wire protocol: line or resp.") var wire = "line"
    @Option(help: "Seconds to measure.") var duration = 5.0
    @Option(help: "Seconds to run before measuring.") var warmup = 1.0
    @Option(help: "Client threads (redis-benchmark uses one).") var threads = 1
    @Flag(help: "Print one CSV line: ops_per_sec,p50_us,p90_us,p99_us,p999_us,allowed,denied,errors.")
    var csv = false

    func run() async throws {
        guard let wire = RequestWriter.Wire(rawValue: wire) else { throw ValidationError("--wire is line or resp") }
        guard let distribution = KeyChooser.Distribution(rawValue: distribution) else {
            throw ValidationError("--distribution is uniform or zipf")
        }
        let writer: RequestWriter
        let keyCount: Int
        switch mode {
        case "allow":
            writer = RequestWriter(wire: wire, prefix: "bench:", tail: ["1"])
            keyCount = keys
        case "deny":
            writer = RequestWriter(wire: wire, prefix: "hot:", tail: ["1", "10/1s"])
            keyCount = 16
        default:
            throw ValidationError("--mode is allow or deny")
        }
        let load = LoadRun(
            host: host, port: port, connections: connections, pipeline: pipeline, threads: threads, writer: writer,
            keys: { index in .random(KeyChooser(count: keyCount, distribution: distribution, seed: UInt64(index + 1))) })
        let counters = LiveCounters()
        let started = monotonicNanos()
        var measuredFrom: UInt64 = 0
        var measuredTo: UInt64 = 0
        let showProgress = !csv
        let result = try await load.run(counters: counters) {
            try await Task.sleep(for: .seconds(warmup))
            counters.recording.store(true, ordering: .relaxed)
            measuredFrom = monotonicNanos()
            var last = counters.replies.load(ordering: .relaxed)
            var lastTime = measuredFrom
            while monotonicNanos() - measuredFrom < UInt64(duration * 1e9) {
                try await Task.sleep(for: .milliseconds(250))
                let now = monotonicNanos()
                let replies = counters.replies.load(ordering: .relaxed)
                if showProgress, now - lastTime >= 1_000_000_000 {
                    let rate = Double(replies - last) / (Double(now - lastTime) / 1e9)
                    let elapsed = Double(now - started) / 1e9
                    Progress.show("\(Format.fixed(elapsed))s  \(Format.fixed(rate, 0)) ops/s")
                    last = replies
                    lastTime = now
                }
            }
            measuredTo = monotonicNanos()
        }
        if showProgress { Progress.clear() }
        let seconds = Double(measuredTo - measuredFrom) / 1e9
        // Replies recorded after the deadline (the pipelines draining) are few; count the measured window.
        let rate = Double(result.total) / seconds
        let h = result.latency
        func micros(_ percentile: Double) -> Double { Double(h.valueAtPercentile(percentile)) / 1000 }
        let percentiles = [50, 90, 99, 99.9].map { Format.fixed(micros($0)) }
        if csv {
            let fields = [Format.fixed(rate, 0)] + percentiles + ["\(result.allowed)", "\(result.denied)", "\(result.errors)"]
            print(fields.joined(separator: ","))
        } else {
            let setup = "\(wire.rawValue), \(connections) connections, pipeline \(pipeline), \(keyCount) "
                + "\(distribution.rawValue) keys, mode \(mode), \(Format.fixed(seconds)) s"
            print("ratelimit-bench: " + setup)
            print("  ops/s     " + Format.fixed(rate, 0))
            print("  latency   p50 \(percentiles[0]) us  p90 \(percentiles[1]) us  p99 \(percentiles[2]) us  "
                + "p99.9 \(percentiles[3]) us  max \(Format.fixed(Double(h.max) / 1000)) us")
            print("  replies   allowed \(result.allowed)  denied \(result.denied)  errors \(result.errors)  "
                + "other \(result.other)")
        }
    }
}

/// The live progress line on standard error.
enum Progress {
    static func show(_ text: String) {
        write(2, "\r" + text + "   ")
    }

    static func clear() {
        write(2, "\r" + String(repeating: " ", count: 40) + "\r")
    }

    private static func write(_ fd: Int32, _ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = Glibc.write(fd, bytes.baseAddress, bytes.count) }
    }
}
