// swift-tools-version:6.0
import PackageDescription

// The load generator lives in a package of its own so that users building ratelimitd never build it (or
// its histogram dependency). It talks to the daemon over TCP only, so it needs none of the daemon's code but
// Envoy's API: the daemon's generated messages (EnvoyRateLimitAPI, a symbolic link to the same sources) and
// the grpc-swift 2 client stub generated beside them by scripts/generate-protos.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "ratelimitd-benchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ratelimit-bench", targets: ["ratelimit-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "EnvoyRateLimitAPI",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "EnvoyRateLimitClient",
            dependencies: [
                "EnvoyRateLimitAPI",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ratelimit-bench",
            dependencies: [
                "EnvoyRateLimitAPI", "EnvoyRateLimitClient",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
