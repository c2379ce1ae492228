// swift-tools-version: 6.2
// vxswitch benchmarks: their own package (as swift-nio's Benchmarks/), so the main build never resolves
// ordo-one/benchmark. Run from this directory:
//   swift package --disable-sandbox benchmark
// See docs/performance.md for the exact invocations, the machine and the results.
import PackageDescription

let package = Package(
    name: "vxswitch-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named: a bare `path:` takes its identity from the clone's folder name (a worktree is not "vxswitch").
        .package(name: "vxswitch", path: "../"),
        // The trait list is required: without it 1.38.1 asks for swift-runtime-interposer on Linux/6.3, which
        // has no local copy, and resolution fails (STYLE §12).
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Key generation and the two-thread runner, shared by the suites (the generator is VXTestSupport's).
        .target(
            name: "BenchmarkSupport",
            dependencies: [
                .product(name: "VXForwarding", package: "vxswitch"),
                .product(name: "VXPacket", package: "vxswitch"),
                .product(name: "VXTestSupport", package: "vxswitch"),
            ],
            path: "Benchmarks/BenchmarkSupport"
        ),
        .executableTarget(
            name: "ForwardingTableBenchmarks",
            dependencies: [
                .product(name: "VXForwarding", package: "vxswitch"),
                .product(name: "VXPacket", package: "vxswitch"),
                .product(name: "VXTestSupport", package: "vxswitch"),
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkSupport",
            ],
            path: "Benchmarks/ForwardingTableBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "PacketPathBenchmarks",
            dependencies: [
                .product(name: "VXForwarding", package: "vxswitch"),
                .product(name: "VXPacket", package: "vxswitch"),
                .product(name: "VXIO", package: "vxswitch"),
                .product(name: "VXDataplane", package: "vxswitch"),
                .product(name: "VXTestSupport", package: "vxswitch"),
                .product(name: "Benchmark", package: "benchmark"),
                "BenchmarkSupport",
            ],
            path: "Benchmarks/PacketPathBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "OffloadBenchmarks",
            dependencies: [
                .product(name: "VXOffload", package: "vxswitch"),
                .product(name: "VXPacket", package: "vxswitch"),
                .product(name: "VXTestSupport", package: "vxswitch"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/OffloadBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
