import ArgumentParser

@main
struct RateLimitBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ratelimit-bench",
        abstract: "Load generator for ratelimitd: closed-loop, pipelined, with HDR latency percentiles.",
        subcommands: [Load.self, GRPCLoad.self, Fill.self],
        defaultSubcommand: Load.self
    )
}
