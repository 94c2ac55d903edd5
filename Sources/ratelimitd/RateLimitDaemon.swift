import ArgumentParser
import DaemonConfig
import Logging
import NIOCore
import RateLimitServer
import RateLimiting

@main
struct RateLimitDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ratelimitd",
        abstract: "A rate-limit decision daemon: clients ask CHECK <key> <cost>, it answers ALLOW or DENY.",
        discussion: """
            With no file it listens on 127.0.0.1:7283 with one rule, "default": token_bucket, 100 per 1m, \
            for every key. Flags override the file. See protocol.md for the protocol.
            """,
        version: RatelimitdVersion.string
    )

    @Option(name: .long, help: ArgumentHelp("TOML configuration file.", valueName: "path"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Address to listen on (default 127.0.0.1:7283).", valueName: "host:port"))
    var listen: String?

    @Option(name: .long, help: ArgumentHelp("Shard workers; 0 means one per core (default 0).", valueName: "n"))
    var shards: Int?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default info).", valueName: "level"))
    var logLevel: String?

    @Flag(name: .long, help: "Validate the configuration, print what it resolves to, and exit: 0 valid, 1 invalid.")
    var checkConfig = false

    func run() throws {
        let settings: ResolvedSettings
        do {
            settings = try ResolvedSettings.resolve(
                configPath: config, listen: listen, shards: shards, logLevel: logLevel)
        } catch {
            printError("ratelimitd: invalid configuration: \(error)")
            throw ExitCode(1)
        }
        if checkConfig {
            print(settings.summary)
            return
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "ratelimitd")
        let server = RateLimitServer(configuration: settings.server, logger: logger)
        let listen = settings.listen
        try runBlocking {
            let channel: any Channel
            do {
                channel = try await server.start()
            } catch {
                logger.critical("cannot listen on \(listen): \(error)")
                try? await server.shutdown()
                throw ExitCode(1)
            }
            try await channel.closeFuture.get()
            try await server.shutdown()
        }
    }
}
