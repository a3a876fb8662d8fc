// swift-tools-version:6.1
// The tools version is 6.1 so that the separate Benchmarks/ package (ordo-one/benchmark with
// `traits: ["MallocInterposer"]`) can join without changing this manifest.
import PackageDescription

/// swift-system: `FileDescriptor`, `Errno` and `FilePath` for the POSIX file system.
let systemPackage: Target.Dependency = .product(name: "SystemPackage", package: "swift-system")
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let propertyBased: Target.Dependency = .product(name: "PropertyBased", package: "swift-property-based")
/// swift-crypto: SHA-256 for the lane roots and the MetaRoot.
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
/// TOMLKit: scenario files and the node's config, decoded strictly (unknown keys rejected).
let tomlKit: Target.Dependency = .product(name: "TOMLKit", package: "TOMLKit")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let metrics: Target.Dependency = .product(name: "Metrics", package: "swift-metrics")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")
let hummingbird: Target.Dependency = .product(name: "Hummingbird", package: "hummingbird")
let hummingbirdCore: Target.Dependency = .product(name: "HummingbirdCore", package: "hummingbird")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
/// swift-nio-extras: the HTTP parts (swift-http-types) that Hummingbird's pipeline carries, for the connection guard.
let nioHTTPTypes: Target.Dependency = .product(name: "NIOHTTPTypes", package: "swift-nio-extras")
/// async-http-client: the HTTP client behind the network seam (`HTTPPeerTransport`).
let asyncHTTPClient: Target.Dependency = .product(name: "AsyncHTTPClient", package: "async-http-client")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")

let package = Package(
    name: "rivellum",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FaultFS", targets: ["FaultFS"]),
        .library(name: "Engine", targets: ["Engine"]),
        .library(name: "SimRunner", targets: ["SimRunner"]),
        .executable(name: "rivellum-sim", targets: ["rivellum-sim"]),
        .executable(name: "rivellum-node", targets: ["rivellum-node"]),
        .executable(name: "rivellum-bench", targets: ["rivellum-bench"]),
        .executable(name: "rivellum-killtest", targets: ["rivellum-killtest"]),
        .executable(name: "rivellum-loadtest", targets: ["rivellum-loadtest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // CRC32C (Castagnoli): SSE4.2 with three interleaved streams, chosen at run time by CPU
        // detection through a function attribute (no unsafe flags), slicing-by-8 otherwise.
        .target(name: "CCRC32C"),
        // RocksDB 7.8.3 from Debian's librocksdb-dev: the C API.
        .systemLibrary(name: "CRocksDB", pkgConfig: "rocksdb", providers: [.apt(["librocksdb-dev"])]),
        // A rocksdb::FileSystem that forwards RocksDB's file I/O to Swift callbacks, so every
        // lane's RocksDB runs on the engine's FileSystem (and, under simulation, crashes with it).
        .target(
            name: "CRocksDBBridge",
            dependencies: ["CRocksDB"],
            linkerSettings: [.linkedLibrary("rocksdb")]),
        // The file-system layer: the `FileSystem` protocol, the POSIX implementation and the
        // deterministic fault-injecting simulation. Everything the engine stores goes through it.
        .target(name: "FaultFS", dependencies: ["Documents", systemPackage]),
        // The JSON documents of the node's API and tools, and the one way they are encoded.
        .target(name: "Documents"),
        // Command-line options shared by the tools (`--json`).
        .target(name: "CommandLineOptions", dependencies: ["Documents", argumentParser]),
        // The storage engine: WAL, lanes, MetaRoot, recovery, snapshots.
        .target(
            name: "Engine", dependencies: ["FaultFS", "Documents", "CCRC32C", "CRocksDBBridge", crypto],
            // RIVELLUM_MUTATIONS compiles in the deliberate bugs (EngineMutation) that tests switch on
            // to prove the simulator catches them. Debug (test) builds only; never in release.
            swiftSettings: [.define("RIVELLUM_MUTATIONS", .when(configuration: .debug))]),
        // The deterministic simulator's library (workloads, fault schedules, oracles).
        .target(name: "SimRunner", dependencies: ["Engine", "FaultFS", "Documents", "PeerSync", "OffsiteCore", tomlKit]),
        .executableTarget(name: "rivellum-sim", dependencies: ["SimRunner", "CommandLineOptions", "Documents", argumentParser]),
        // The network seam (`PeerTransport`) and, as peer sync lands, the sync decisions the
        // simulator runs; no I/O of its own.
        .target(name: "PeerSync", dependencies: ["Engine", "FaultFS", "Documents"]),
        // Off-site snapshot copies: the object-store seam, a directory store, and push / pull /
        // list / prune, content-addressed (no network of its own: the simulator drives it too).
        .target(name: "OffsiteCore", dependencies: ["Engine", "FaultFS"]),
        // S3 (SigV4 over async-http-client) and opening stores; re-exports OffsiteCore.
        .target(name: "Offsite", dependencies: ["OffsiteCore", "Engine", "FaultFS", crypto, asyncHTTPClient]),
        // The node: config, HTTP API, metrics, logs, lifecycle and the offline tools, as a library
        // so that tests can drive it in-process as well as through the binary.
        .target(
            name: "Node",
            dependencies: [
                "Engine", "FaultFS", "Documents", tomlKit, logging, metrics, prometheus, hummingbird, hummingbirdCore, serviceLifecycle, nioPosix, nioHTTP1,
                nioHTTPTypes, "PeerSync", "Offsite", asyncHTTPClient,
            ]),
        .executableTarget(
            name: "rivellum-node", dependencies: ["Node", "PeerSync", "Offsite", "Engine", "FaultFS", "Documents", "CommandLineOptions", argumentParser, logging]),
        // Drives the real node binary: a minimal loopback HTTP client and a process launcher, for the
        // kill -9 test and the end-to-end tests.
        .target(name: "NodeHarness"),
        // The kill -9 crash test of the real node binary (run by CI; a short run in swift test).
        .executableTarget(name: "rivellum-killtest", dependencies: ["NodeHarness", "FaultFS", "Documents", argumentParser]),
        // The load and abuse harness of the real node binary: well-behaved writers per fsync policy,
        // the same writers beside held slow connections, and the process's memory and descriptors.
        .executableTarget(name: "rivellum-loadtest", dependencies: ["NodeHarness", "Documents", argumentParser]),
        // Side-by-side measurements (ratios, never assertions).
        .executableTarget(name: "rivellum-bench", dependencies: ["Engine", "FaultFS", "SimRunner", "NodeHarness", argumentParser]),
        .testTarget(name: "FaultFSTests", dependencies: ["FaultFS", propertyBased]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "CCRC32C", "FaultFS", "SimRunner", propertyBased]),
        // End-to-end tests of the command-line tools (they run the built executables).
        .testTarget(
            name: "NodeTests",
            dependencies: ["Node", "Documents", "PeerSync", "Offsite", "Engine", "FaultFS", "NodeHarness", "rivellum-node", "rivellum-killtest", "rivellum-loadtest"]),
        .testTarget(name: "SimRunnerTests", dependencies: ["SimRunner", "Engine", "FaultFS", "rivellum-sim"]),
        // The sync state machine's decision table (no I/O).
        .testTarget(name: "PeerSyncTests", dependencies: ["PeerSync", "Engine"]),
        // Off-site copies: SigV4 vectors, the directory store, and S3 against a moto server on loopback.
        .testTarget(name: "OffsiteTests", dependencies: ["Offsite", "Engine", "FaultFS", "SimRunner", "NodeHarness", crypto]),
        // The benchmark harness itself (baselines that fail must fail the run).
        .testTarget(name: "BenchTests", dependencies: ["rivellum-bench"]),
    ],
    cxxLanguageStandard: .cxx17
)
