import Benchmark
import Engine
import FaultFS

/// Micro-benchmarks of the engine's hot paths. Throughput is in operations per second; each
/// CRC32C operation checksums one buffer, so GB/s = throughput × buffer size (the README table
/// converts; `rivellum-bench crc32c` measures GB/s side by side).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.throughput, .wallClock, .mallocCountTotal], warmupIterations: 3, maxDuration: .seconds(2), maxIterations: 1_000_000)

    // CRC32C: three interleaved SSE4.2 streams, one stream, and the slicing-by-8 software path.
    for (label, size) in [("64B", 64), ("4KiB", 4_096), ("1MiB", 1 << 20)] {
        let buffer = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let variants: [(String, (UInt32, UnsafeRawBufferPointer) -> UInt32)] = [
            ("three-streams", CRC32C.extend),
            ("one-stream", CRC32C.extendHardwareSingleStream),
            ("software", CRC32C.extendPortable),
        ]
        for (name, function) in variants {
            Benchmark("CRC32C \(name) \(label)", configuration: .init(metrics: [.throughput, .wallClock])) { benchmark in
                buffer.withUnsafeBytes { bytes in
                    for _ in benchmark.scaledIterations { blackHole(function(0, bytes)) }
                }
            }
        }
    }

    // WAL frames: encode and decode (both checksums) of a 256-byte record.
    let payload = [UInt8](repeating: 0xA5, count: 256)
    Benchmark("WAL frame encode 256B") { benchmark in
        var buffer: [UInt8] = []
        buffer.reserveCapacity(512)
        payload.withUnsafeBytes { bytes in
            for iteration in benchmark.scaledIterations {
                buffer.removeAll(keepingCapacity: true)
                blackHole(
                    WALFrameCodec.encode(
                        payload: bytes, lsn: UInt64(iteration) + 1, syncedThroughLSN: 0, partition: .lane(0), segmentIndex: 1,
                        recordType: 1, into: &buffer))
            }
        }
    }
    var frame: [UInt8] = []
    payload.withUnsafeBytes { bytes in
        _ = WALFrameCodec.encode(payload: bytes, lsn: 1, syncedThroughLSN: 0, partition: .lane(0), segmentIndex: 1, recordType: 1, into: &frame)
    }
    Benchmark("WAL frame decode 256B") { benchmark in
        frame.withUnsafeBytes { bytes in
            for _ in benchmark.scaledIterations { blackHole(WALFrameCodec.decode(bytes, at: 0)) }
        }
    }

    // Engine records: a lane record of 8 operations.
    let operations = (0..<8).map { BlockOperation(key: Array("account-\($0)".utf8), value: [UInt8](repeating: UInt8($0), count: 32)) }
    let record = LaneBlockRecord(height: 7, laneRoot: .zero, operations: operations)
    let encodedRecord = record.encoded()
    Benchmark("Lane record encode 8 ops") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(record.encoded()) }
    }
    Benchmark("Lane record decode 8 ops") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(LaneBlockRecord.decode(encodedRecord)) }
    }

    // Sparse-Merkle updates: inserts into an in-memory tree of 10,000 keys.
    Benchmark("Sparse-Merkle update (10k-key tree)", configuration: .init(metrics: [.throughput, .wallClock], maxIterations: 200_000)) { benchmark in
        var tree = SparseMerkleTree { _ in nil }
        for index in 0..<10_000 {
            try tree.update(path: StateHashing.keyPath(Array("seed-\(index)".utf8)), valueHash: StateHashing.valueHash([1]))
        }
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            try tree.update(path: StateHashing.keyPath(Array("key-\(iteration)".utf8)), valueHash: StateHashing.valueHash([2]))
        }
        benchmark.stopMeasurement()
        blackHole(try tree.rootHash())
    }

    // Allocations per commit: a 4-operation block on a 4-lane engine (simulated file system, so
    // the figure is the engine's own, not the kernel's).
    Benchmark("Engine commit 4 ops (allocations)", configuration: .init(metrics: [.mallocCountTotal, .throughput, .wallClock], maxIterations: 2_000)) { benchmark in
        let fileSystem = SimulatedFileSystem(seed: 1, plan: .none, traceEventsMax: 0)
        var configuration = EngineConfiguration(dataDirectory: "/bench")
        configuration.flushEveryBlocks = 1 << 30
        let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock(), executor: SerialLaneExecutor())
        let blocks = (0..<benchmark.scaledIterations.count).map { height in
            (0..<4).map { BlockOperation(key: Array("key-\(height)-\($0)".utf8), value: [UInt8](repeating: 7, count: 32)) }
        }
        benchmark.startMeasurement()
        for block in blocks { blackHole(try engine.commit(block)) }
        benchmark.stopMeasurement()
        engine.abandon()
    }
}
