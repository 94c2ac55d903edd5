// swift-tools-version:6.0
import PackageDescription

// One set of settings for every target: Swift 6 language mode (strict concurrency) everywhere.
// RATELIMITD_TSAN=1 marks a thread-sanitizer build (see ShardLock).
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
] + (Context.environment["RATELIMITD_TSAN"] == "1" ? [.define("RATELIMITD_TSAN")] : [])

let package = Package(
    name: "ratelimitd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ratelimitd", targets: ["ratelimitd"]),
        .library(name: "RateLimiting", targets: ["RateLimiting"]),
        // What the libFuzzer package in Fuzz/ drives.
        .library(name: "FuzzEntries", targets: ["FuzzEntries"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // `Locked`: the standard library's Mutex, or in a thread-sanitizer build one the sanitizer can see.
        .target(name: "Locking", swiftSettings: swiftSettings),
        // glibc's malloc tuning, which Swift's Glibc module does not export.
        .target(name: "CMemory"),
        // Algorithms, limits, rules and rule matching: pure Swift, no NIO, no I/O, no clock reads.
        .target(name: "RateLimiting", swiftSettings: swiftSettings),
        // Shards (the key → state tables behind their locks), the key hash and router, the decision clock.
        .target(name: "ShardStore", dependencies: ["RateLimiting", "CMemory", "Locking"], swiftSettings: swiftSettings),
        // The line protocol: framing, parsing, the command table, error codes, reply encoding.
        .target(
            name: "WireProtocol",
            dependencies: [
                "RateLimiting",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // `nextTick`: the sleep of every periodic service, cut short by graceful shutdown.
        .target(
            name: "ServiceTicks",
            dependencies: [.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: swiftSettings
        ),
        // The TCP server: bootstrap, connection handler, hand-off to shard workers.
        .target(
            name: "RateLimitServer",
            dependencies: [
                "RateLimiting", "ShardStore", "WireProtocol", "ServiceTicks", "CMemory", "Locking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // GET /metrics: the server's counters published through swift-metrics into a Prometheus registry.
        .target(
            name: "MetricsExporter",
            dependencies: [
                "RateLimitServer", "Locking",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // hiredis, the system's C client for Redis (Debian: libhiredis-dev).
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        // Everything Redis: the hiredis connection, the value codec, the write-behind replicator, the
        // start-up restore. It depends on the shards' neutral change feed, never on the server.
        .target(
            name: "RedisReplication",
            dependencies: [
                "CHiredis", "DaemonConfig", "ServiceTicks", "ShardStore", "RateLimiting", "WireProtocol", "Locking",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Envoy's rate limit service API (envoy.service.ratelimit.v3), generated by scripts/generate-protos from
        // the minimal copies of Envoy's protos in Protos/ and committed, so no build runs protoc.
        .target(
            name: "EnvoyRateLimitAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
        // envoyproxy/ratelimit's YAML rules: loading, validation, descriptor matching, state keys.
        .target(
            name: "EnvoyRules",
            dependencies: [
                "RateLimiting",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Envoy's gRPC rate limit service (ShouldRateLimit): unary gRPC on swift-nio-http2's frames, on the
        // server's event loops, deciding from the shards.
        .target(
            name: "EnvoyService",
            dependencies: [
                "EnvoyRateLimitAPI", "EnvoyRules", "RateLimitServer", "ShardStore", "RateLimiting", "Locking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // GET /check for forward-auth gateways (Caddy, Traefik, nginx's auth_request): HTTP/1.1 with NIOHTTP1,
        // a side listener of the server, deciding through the server's decider.
        .target(
            name: "HTTPCheck",
            dependencies: [
                "RateLimitServer", "ShardStore", "RateLimiting", "WireProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The TOML configuration file and its validation.
        .target(
            name: "DaemonConfig",
            dependencies: [
                "RateLimiting",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ratelimitd",
            dependencies: [
                "DaemonConfig", "RateLimitServer", "RateLimiting", "CMemory", "RedisReplication", "MetricsExporter",
                "EnvoyRules", "EnvoyService", "HTTPCheck", "ShardStore", "Locking",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The fuzz targets' bodies (Fuzz/ builds them with libFuzzer; FuzzCorpusTests replays the corpus).
        .target(
            name: "FuzzEntries",
            dependencies: [
                "DaemonConfig", "EnvoyRules", "HTTPCheck", "RateLimiting", "RedisReplication", "ShardStore", "WireProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Test helpers shared by the server and integration tests: a blocking TCP client, a daemon launcher.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "RateLimitingTests", dependencies: ["RateLimiting", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ShardStoreTests",
            dependencies: ["ShardStore", "RateLimiting", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "WireProtocolTests",
            dependencies: ["WireProtocol", "RateLimiting", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RateLimitServerTests",
            dependencies: [
                "RateLimitServer", "ShardStore", "RateLimiting", "WireProtocol", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EnvoyRulesTests",
            dependencies: ["EnvoyRules", "RateLimiting", "TestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EnvoyServiceTests",
            dependencies: [
                "EnvoyService",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTPCheckTests",
            dependencies: [
                "HTTPCheck", "RateLimitServer", "RateLimiting", "ShardStore", "WireProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FuzzCorpusTests",
            dependencies: ["FuzzEntries"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "DaemonConfigTests",
            dependencies: ["DaemonConfig", "RateLimiting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RedisReplicationTests",
            dependencies: [
                "RedisReplication", "RateLimitServer", "ShardStore", "RateLimiting", "DaemonConfig", "TestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Starts the real `ratelimitd` binary; depends on it so `swift test` builds it first.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ratelimitd", "TestSupport"],
            exclude: ["Envoy/rls_checks.py"],
            swiftSettings: swiftSettings
        ),
    ]
)
