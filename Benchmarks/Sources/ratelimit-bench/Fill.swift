import ArgumentParser

/// `ratelimit-bench fill`: creates a given number of distinct keys, for memory measurements.
struct Fill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: """
            Send --keys CHECKs with key numbers 0, 1, 2, … (wrapped at --key-space) and exit: creates that \
            many keys for memory measurements, or a fixed amount of work for instruction and allocation counts.
            """)

    @Option var host = "127.0.0.1"
    @Option var port = 7283
    @Option(help: "Requests to send, one per key number 0, 1, 2, ….") var keys = 1_000_000
    @Option(help: "Wrap key numbers at this many distinct keys (default: every request a new key).")
    var keySpace: Int?
    @Option(help: "Key prefix; keys are the prefix and a zero-padded number.") var prefix = "k:"
    @Option(help: "Digits of the number (\"k:\" and 14 digits make 16-byte keys).") var digits = 14
    @Option(help: "The limit each CHECK gives, <limit>/<window>.") var limit = "1000/1h"
    @Option(help: "The algorithm each CHECK gives.") var algorithm = "token_bucket"
    @Flag(help: "Send only the cost, so the daemon's rules decide (otherwise each CHECK carries --limit and --algorithm).")
    var useRules = false
    @Option var connections = 8
    @Option var pipeline = 256

    func run() async throws {
        let writer = RequestWriter(
            wire: .line, prefix: prefix, tail: useRules ? ["1"] : ["1", limit, algorithm], digits: digits,
            wrap: keySpace ?? keys)
        let total = keys
        let stride = connections
        let load = LoadRun(
            host: host, port: port, connections: connections, pipeline: pipeline, threads: 1, writer: writer,
            keys: { index in .sequence(next: index, stride: stride, end: total) })
        let counters = LiveCounters()
        counters.recording.store(true, ordering: .relaxed)
        let started = monotonicNanos()
        // Each connection closes by itself once its slice of keys is answered.
        let result = try await load.run(counters: counters)
        let seconds = Double(monotonicNanos() - started) / 1e9
        let summary = "filled \(result.allowed) keys in \(Format.fixed(seconds, 2)) s"
        print(summary + " (denied \(result.denied), errors \(result.errors))")
        guard result.allowed + result.denied == keys, result.errors == 0, keySpace != nil || result.allowed == keys else {
            throw ExitCode(1)
        }
    }
}
