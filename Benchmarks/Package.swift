// swift-tools-version:6.1
// Micro-benchmarks on ordo-one/benchmark (statistics, allocations, instructions). Run from the
// repository root:
//   swift package --package-path Benchmarks benchmark
// The macro comparisons (side by side, ratios) are `rivellum-bench` in the main package.
import PackageDescription

let package = Package(
    name: "RivellumBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "rivellum", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "EngineBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "Engine", package: "rivellum"),
                .product(name: "FaultFS", package: "rivellum"),
            ],
            path: "Benchmarks/EngineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")])
    ]
)
