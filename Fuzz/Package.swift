// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for ratelimitd's parsers: scripts/fuzz builds them with
// `swift build --sanitize=fuzzer --sanitize=address` and runs each on Corpus/<name>. Each is one function,
// FuzzEntries' (in the main package), so `scripts/test` replays the same corpus through the same checks.
let fuzzers = [
    ("FuzzLine", "lineProtocol"), ("FuzzRESP", "resp"), ("FuzzSnapshot", "snapshot"),
    ("FuzzRedisValue", "redisValue"), ("FuzzConfig", "config"), ("FuzzHTTPCheck", "httpCheck"),
]

let package = Package(
    name: "ratelimitd-fuzz",
    dependencies: [.package(name: "ratelimitd", path: "..")],
    targets: fuzzers.map { name, _ in
        .executableTarget(
            name: name,
            dependencies: [.product(name: "FuzzEntries", package: "ratelimitd")],
            path: "Sources/\(name)",
            swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
        )
    }
)
