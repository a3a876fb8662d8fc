import ArgumentParser
import Engine
import FaultFS

#if canImport(Glibc)
import Glibc
#endif

@main
struct RivellumBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-bench",
        abstract: "Side-by-side measurements of the engine's storage paths; reports ratios, asserts nothing.",
        subcommands: [All.self, Plot.self, RocksDBEnvironmentComparison.self, SyncComparison.self, StateSyncComparison.self, OffsiteComparison.self])
}

/// A scratch directory under `parent` (default /tmp), removed afterwards.
func withScratchDirectory<Result>(in parent: String = "/tmp", _ body: (String) throws -> Result) rethrows -> Result {
    var template = Array("\(parent)/rivellum-bench-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buffer -> String in
        guard let created = mkdtemp(buffer.baseAddress!) else { fatalError("mkdtemp failed") }
        return String(cString: created)
    }
    defer { _ = system("rm -rf '\(path)'") }
    return try body(path)
}

func nowSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

extension RivellumBench {
    /// Lane-shaped RocksDB work (batches of puts, a synced flush every N batches) through the
    /// FileSystem bridge over PosixFileSystem and through RocksDB's default environment,
    /// alternating, median of several rounds.
    struct RocksDBEnvironmentComparison: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rocksdb-env", abstract: "The FileSystem bridge against RocksDB's default environment.")

        @Option(help: "Rounds per side (alternating).") var rounds = 5
        @Option(help: "Write batches per round.") var batches = 2_000
        @Option(help: "Puts per batch.") var putsPerBatch = 16
        @Option(help: "Value size in bytes.") var valueBytes = 100
        @Option(help: "Flush (synced SSTs and MANIFEST) every this many batches.") var flushEvery = 250

        func validate() throws {
            guard rounds >= 1, batches >= 1, putsPerBatch >= 1, flushEvery >= 1 else {
                throw ValidationError("counts must be positive")
            }
        }

        func runOnce(bridge: Bool) throws -> Double {
            try withScratchDirectory { directory in
                let environment = bridge ? RocksDBEnvironment(fileSystem: PosixFileSystem()) : nil
                let database = try RocksDatabase(path: directory + "/db", environment: environment)
                defer { database.close() }
                let value = [UInt8](repeating: 0x5A, count: valueBytes)
                let started = nowSeconds()
                for batchIndex in 0..<batches {
                    let batch = RocksWriteBatch()
                    for put in 0..<putsPerBatch { batch.put(Array("key-\(batchIndex)-\(put)".utf8), value) }
                    try database.write(batch)
                    if batchIndex % flushEvery == flushEvery - 1 { try database.flush() }
                }
                try database.flush()
                return nowSeconds() - started
            }
        }

        func run() throws {
            var bridged: [Double] = []
            var native: [Double] = []
            for round in 0..<rounds {
                // Alternate which side goes first, so drift on a shared machine hits both.
                if round % 2 == 0 {
                    bridged.append(try runOnce(bridge: true))
                    native.append(try runOnce(bridge: false))
                } else {
                    native.append(try runOnce(bridge: false))
                    bridged.append(try runOnce(bridge: true))
                }
            }
            let puts = Double(batches * putsPerBatch)
            let bridgedRate = puts / median(bridged)
            let nativeRate = puts / median(native)
            print("rocksdb-env: \(batches) batches x \(putsPerBatch) puts of \(valueBytes) B, flush every \(flushEvery), \(rounds) rounds each")
            print("  bridge over PosixFileSystem: \(Int(bridgedRate)) puts/s (median \(median(bridged)) s)")
            print("  RocksDB default environment: \(Int(nativeRate)) puts/s (median \(median(native)) s)")
            print("  ratio bridge / default: \((bridgedRate / nativeRate * 100).rounded() / 100)")
        }
    }
}
