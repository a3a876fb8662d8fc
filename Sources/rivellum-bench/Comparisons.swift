import ArgumentParser
import Engine
import FaultFS
import Foundation
import SimRunner

#if canImport(Glibc)
import Glibc
#endif

/// One measured figure, for the JSON results.
struct BenchFigure: Codable {
    var benchmark: String
    var parameters: [String: String]
    var value: Double
    var unit: String
    /// What it is compared against, measured in the same run, and the ratio value / baseline.
    var baseline: String?
    var baselineValue: Double?
    /// The baseline's unit when it is not the figure's own (a machine-speed reference).
    var baselineUnit: String? = nil
    var ratio: Double?
    var goal: String?
}

/// Collects figures and prints them as they come.
final class BenchReport: @unchecked Sendable {
    private(set) var figures: [BenchFigure] = []

    func add(_ figure: BenchFigure) {
        figures.append(figure)
        var line = "  \(figure.benchmark) \(figure.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")): "
            + format(figure.value) + " " + figure.unit
        if let baseline = figure.baseline, let baselineValue = figure.baselineValue, let ratio = figure.ratio {
            line += " | \(baseline): \(format(baselineValue)) \(figure.baselineUnit ?? figure.unit) | ratio \(String(format: "%.2f", ratio))"
        }
        if let goal = figure.goal { line += " (goal \(goal))" }
        print(line)
    }

    func format(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.2f", value)
    }

    func write(json path: String, machine: [String: String]) throws {
        struct Results: Codable {
            var machine: [String: String]
            var figures: [BenchFigure]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(Results(machine: machine, figures: figures)).write(to: URL(fileURLWithPath: path))
    }
}

/// The machine the figures come from.
func machineDescription() -> [String: String] {
    var machine: [String: String] = ["cores": String(ProcessInfo.processInfo.activeProcessorCount)]
    if let cpu = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
        for line in cpu.split(separator: "\n") {
            if line.hasPrefix("model name"), machine["cpu"] == nil { machine["cpu"] = line.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } }
            if line.hasPrefix("cpu MHz"), machine["mhz"] == nil { machine["mhz"] = line.split(separator: ":").last.map { $0.trimmingCharacters(in: .whitespaces) } }
        }
    }
    machine["memory_gib"] = String(ProcessInfo.processInfo.physicalMemory >> 30)
    return machine
}

/// Runs `count` threads of `body(index)` and waits for them all (real threads, so 64 writers
/// are 64 concurrent syscalls, not a pool's two).
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            body(index)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}

/// Counts operations from many threads.
final class OperationCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0
    func add(_ count: Int) { lock.withLock { total += count } }
    var value: Int { lock.withLock { total } }
}

/// Alternates `a` and `b` for `rounds` rounds (which goes first alternates too) and returns the
/// medians of their rates.
func sideBySide(rounds: Int, _ a: () throws -> Double, _ b: () throws -> Double) rethrows -> (Double, Double) {
    var first: [Double] = []
    var second: [Double] = []
    for round in 0..<rounds {
        if round % 2 == 0 {
            first.append(try a())
            second.append(try b())
        } else {
            second.append(try b())
            first.append(try a())
        }
    }
    return (median(first), median(second))
}

extension RivellumBench {
    /// Every comparison of the benchmark issue, with JSON results and the writers plot.
    struct All: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "all", abstract: "Run every comparison side by side; write JSON and the plot.")

        @Option(help: "Seconds per measurement.") var seconds = 1.0
        @Option(help: "Rounds per side (alternating); the median is reported.") var rounds = 3
        @Option(help: "Writer counts for the WAL comparison.") var writers: [Int] = [1, 4, 16, 64]
        @Option(help: "Record sizes in bytes for the WAL comparison.") var recordBytes: [Int] = [256, 4_096]
        @Option(help: "WAL bytes written for the replay measurement.") var replayBytes: Int = 1 << 30
        @Option(help: "Lane state bytes for the snapshot measurement.") var snapshotBytes: Int = 1 << 30
        @Option(help: "Seeds per simulator workload.") var simSeeds = 40
        @Option(help: "Records of the simulator's fixed reference WAL workload (a multiple of 16; keep it fixed to compare runs).")
        var simReferenceRecords = 20_000
        @Option(help: "Where to write the JSON results.") var jsonOut: String?
        @Option(help: "Where to write the SVG plot of throughput against writers.") var plotOut: String?
        @Option(help: "Scratch directory (on the disk being measured).") var scratch = "/tmp"
        @Option(help: "Only these parts: crc32c, wal, bandwidth, replay, snapshot, sim (default: all).") var only: [String] = []

        func validate() throws {
            guard seconds > 0, rounds >= 1, !writers.isEmpty, writers.allSatisfy({ (1...256).contains($0) }),
                recordBytes.allSatisfy({ (1...(1 << 20)).contains($0) }), replayBytes >= 1 << 20, snapshotBytes >= 1 << 20, simSeeds >= 1,
                simReferenceRecords >= 16, simReferenceRecords % 16 == 0
            else { throw ValidationError("bad sizes or counts") }
        }

        func run() throws {
            let report = BenchReport()
            // The conditions are read before anything runs (the load average of the run itself
            // would say nothing about the machine).
            let machine = machineDescription().merging(RunConditions.now().fields) { $1 }
            print("machine: \(machine.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            func wanted(_ part: String) -> Bool { only.isEmpty || only.contains(part) }
            if wanted("crc32c") {
                print("== CRC32C")
                CRC32CBench.run(report: report, seconds: seconds, rounds: rounds, mhz: Double(machine["mhz"] ?? "") ?? 0)
            }
            if wanted("wal") {
                print("== WAL strict with group commit vs RocksDB put(sync=true), and the raw fdatasync loop")
                try WALBench.strict(report: report, scratch: scratch, seconds: seconds, rounds: rounds, writers: writers, recordBytes: recordBytes)
            }
            if wanted("bandwidth") {
                print("== balanced and dev_fast vs raw write() bandwidth")
                try WALBench.bandwidth(report: report, scratch: scratch, seconds: seconds, rounds: rounds)
            }
            if wanted("replay") {
                print("== recovery replay")
                try WALBench.replay(report: report, scratch: scratch, bytes: replayBytes)
            }
            if wanted("snapshot") {
                print("== snapshot create vs cp -r, and verify")
                try SnapshotBench.run(report: report, scratch: scratch, bytes: snapshotBytes, rounds: rounds)
            }
            if wanted("sim") {
                print("== simulator")
                try SimulatorBench.run(report: report, seeds: simSeeds, rounds: rounds, records: simReferenceRecords)
            }
            if let jsonOut {
                try report.write(json: jsonOut, machine: machine)
                print("results: \(jsonOut)")
            }
            if let plotOut {
                try WritersPlot.svg(report.figures).write(toFile: plotOut, atomically: true, encoding: .utf8)
                print("plot: \(plotOut)")
            }
        }
    }
}

enum CRC32CBench {
    static func run(report: BenchReport, seconds: Double, rounds: Int, mhz: Double) {
        let variants: [(String, (UInt32, UnsafeRawBufferPointer) -> UInt32)] = [
            ("three-streams", CRC32C.extend), ("one-stream", CRC32C.extendHardwareSingleStream), ("software", CRC32C.extendPortable),
        ]
        // One crc32q retires per cycle: 8 bytes per cycle is the instruction's limit.
        let limit = mhz > 0 ? 8 * mhz * 1e6 / 1e9 : nil
        for size in [64, 4_096, 1 << 20] {
            let buffer = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            var rates: [String: Double] = [:]
            for (name, function) in variants {
                var samples: [Double] = []
                for _ in 0..<rounds {
                    var bytes = 0
                    var sink: UInt32 = 0
                    let started = nowSeconds()
                    buffer.withUnsafeBytes { raw in
                        // Bounded by the time budget.
                        while nowSeconds() - started < seconds / 3 {
                            for _ in 0..<max(1, (1 << 20) / size) { sink = function(sink, raw) }
                            bytes += max(1, (1 << 20) / size) * size
                        }
                    }
                    samples.append(Double(bytes) / (nowSeconds() - started) / 1e9)
                    if sink == 0x1234_5678 { print("") }
                }
                rates[name] = median(samples)
            }
            let parameters = ["buffer": size >= 1 << 20 ? "1MiB" : size >= 4_096 ? "4KiB" : "64B"]
            report.add(
                BenchFigure(
                    benchmark: "crc32c three-streams", parameters: parameters, value: rates["three-streams"]!, unit: "GB/s",
                    baseline: limit.map { _ in "instruction limit (8 B/cycle)" }, baselineValue: limit, ratio: limit.map { rates["three-streams"]! / $0 },
                    goal: size == 1 << 20 ? ">= 15 GB/s" : nil))
            report.add(
                BenchFigure(
                    benchmark: "crc32c one-stream", parameters: parameters, value: rates["one-stream"]!, unit: "GB/s", baseline: "three-streams",
                    baselineValue: rates["three-streams"], ratio: rates["one-stream"]! / rates["three-streams"]!))
            report.add(
                BenchFigure(
                    benchmark: "crc32c software", parameters: parameters, value: rates["software"]!, unit: "GB/s", baseline: "three-streams",
                    baselineValue: rates["three-streams"], ratio: rates["software"]! / rates["three-streams"]!))
        }
    }
}

enum WALBench {
    /// Appends+commits from `writers` threads for `seconds` under `policy`; records/s.
    static func walRate(directory: String, policy: FsyncPolicy, writers: Int, recordBytes: Int, seconds: Double) throws -> Double {
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = policy
        configuration.segmentSizeBytes = 256 << 20
        configuration.syncIntervalMilliseconds = 200
        configuration.syncBytes = 1 << 20
        let log = try WriteAheadLog(
            fileSystem: PosixFileSystem(), directory: directory, partitionIDs: [.lane(0)], configuration: configuration, clock: SystemClock())
        let partition = log.partition(.lane(0))
        let counter = OperationCounter()
        let deadline = nowSeconds() + seconds
        let record = [UInt8](repeating: 0x42, count: recordBytes)
        runThreads(writers) { _ in
            var count = 0
            // Bounded by the deadline.
            while nowSeconds() < deadline {
                guard let lsn = try? partition.append([record]).upperBound, (try? partition.commit(through: lsn)) != nil else { break }
                count += 1
            }
            counter.add(count)
        }
        try log.close()
        return Double(counter.value) / seconds
    }

    /// RocksDB `put` with its own WAL and `sync=true` from `writers` threads; puts/s.
    static func rocksRate(directory: String, writers: Int, recordBytes: Int, seconds: Double) throws -> Double {
        let database = try RocksDatabase(path: directory, environment: nil, syncedWAL: true)
        defer { database.close() }
        let counter = OperationCounter()
        let deadline = nowSeconds() + seconds
        let value = [UInt8](repeating: 0x42, count: recordBytes)
        runThreads(writers) { writer in
            var count = 0
            // Bounded by the deadline.
            while nowSeconds() < deadline {
                let batch = RocksWriteBatch()
                batch.put(Array("w\(writer)-\(count)".utf8), value)
                guard (try? database.write(batch)) != nil else { break }
                count += 1
            }
            counter.add(count)
        }
        return Double(counter.value) / seconds
    }

    /// One thread: append `recordBytes` with write(2), then fdatasync, per record; records/s.
    static func rawSyncRate(path: String, recordBytes: Int, seconds: Double) -> Double {
        let descriptor = open(path, O_CREAT | O_WRONLY | O_APPEND, 0o644)
        precondition(descriptor >= 0, "open \(path)")
        defer { close(descriptor) }
        let record = [UInt8](repeating: 0x42, count: recordBytes)
        var count = 0
        let deadline = nowSeconds() + seconds
        // Bounded by the deadline.
        while nowSeconds() < deadline {
            _ = record.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            fdatasync(descriptor)
            count += 1
        }
        return Double(count) / seconds
    }

    /// One thread: write(2) `recordBytes` chunks, no sync; MB/s.
    static func rawWriteBandwidth(path: String, recordBytes: Int, seconds: Double) -> Double {
        let descriptor = open(path, O_CREAT | O_WRONLY | O_APPEND, 0o644)
        precondition(descriptor >= 0, "open \(path)")
        defer { close(descriptor) }
        let record = [UInt8](repeating: 0x42, count: recordBytes)
        var bytes = 0
        let started = nowSeconds()
        // Bounded by the deadline and 2 GiB.
        while nowSeconds() - started < seconds && bytes < 2 << 30 {
            bytes += record.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        }
        return Double(bytes) / (nowSeconds() - started) / 1e6
    }

    static func strict(report: BenchReport, scratch: String, seconds: Double, rounds: Int, writers: [Int], recordBytes: [Int]) throws {
        for size in recordBytes {
            var singleWriterStrict: Double?
            for count in writers {
                let (wal, rocks) = try sideBySide(
                    rounds: rounds,
                    { try withScratchDirectory(in: scratch) { try walRate(directory: $0 + "/wal", policy: .strict, writers: count, recordBytes: size, seconds: seconds) } },
                    { try withScratchDirectory(in: scratch) { try rocksRate(directory: $0 + "/db", writers: count, recordBytes: size, seconds: seconds) } })
                if count == 1 { singleWriterStrict = wal }
                report.add(
                    BenchFigure(
                        benchmark: "wal strict", parameters: ["writers": String(count), "record": "\(size)B"], value: wal, unit: "records/s",
                        baseline: "rocksdb put sync=true", baselineValue: rocks, ratio: wal / rocks,
                        goal: count >= 16 ? ">= 1.5x RocksDB" : nil))
            }
            // The other policies at the same writer counts, for the plot (their bandwidth ratios
            // against raw write() are measured below).
            if size == recordBytes.first {
                for policy in [FsyncPolicy.balanced, .devFast] {
                    for count in writers {
                        var samples: [Double] = []
                        for _ in 0..<rounds {
                            samples.append(
                                try withScratchDirectory(in: scratch) {
                                    try walRate(directory: $0 + "/wal", policy: policy, writers: count, recordBytes: size, seconds: seconds)
                                })
                        }
                        report.add(
                            BenchFigure(
                                benchmark: "wal \(policy.rawValue) writers", parameters: ["writers": String(count), "record": "\(size)B"],
                                value: median(samples), unit: "records/s"))
                    }
                }
            }
            if let singleWriterStrict {
                let raw = withScratchDirectory(in: scratch) { directory in
                    var samples: [Double] = []
                    for _ in 0..<rounds { samples.append(rawSyncRate(path: directory + "/raw-\(samples.count)", recordBytes: size, seconds: seconds)) }
                    return median(samples)
                }
                report.add(
                    BenchFigure(
                        benchmark: "wal strict single writer", parameters: ["record": "\(size)B"], value: singleWriterStrict, unit: "records/s",
                        baseline: "raw write+fdatasync loop", baselineValue: raw, ratio: singleWriterStrict / raw, goal: ">= 0.9x raw loop"))
            }
        }
    }

    static func bandwidth(report: BenchReport, scratch: String, seconds: Double, rounds: Int) throws {
        let size = 4_096
        for policy in [FsyncPolicy.balanced, .devFast] {
            let (wal, raw) = try sideBySide(
                rounds: rounds,
                {
                    try withScratchDirectory(in: scratch) {
                        try walRate(directory: $0 + "/wal", policy: policy, writers: 1, recordBytes: size, seconds: seconds) * Double(size) / 1e6
                    }
                },
                { withScratchDirectory(in: scratch) { rawWriteBandwidth(path: $0 + "/raw", recordBytes: size, seconds: seconds) } })
            report.add(
                BenchFigure(
                    benchmark: "wal \(policy.rawValue)", parameters: ["writers": "1", "record": "\(size)B"], value: wal, unit: "MB/s",
                    baseline: "raw write() 4 KiB", baselineValue: raw, ratio: wal / raw, goal: policy == .devFast ? ">= 0.5x raw write()" : nil))
        }
    }

    static func replay(report: BenchReport, scratch: String, bytes: Int) throws {
        try withScratchDirectory(in: scratch) { directory in
            var configuration = WALConfiguration()
            configuration.fsyncPolicy = .devFast
            configuration.segmentSizeBytes = 64 << 20
            let walDirectory = directory + "/wal"
            let log = try WriteAheadLog(
                fileSystem: PosixFileSystem(), directory: walDirectory, partitionIDs: [.lane(0)], configuration: configuration, clock: SystemClock())
            let record = [UInt8](repeating: 0x42, count: 4_096)
            let batch = Array(repeating: record, count: 64)
            var written = 0
            // Bounded by `bytes`.
            while written < bytes {
                _ = try log.partition(.lane(0)).append(batch)
                written += batch.count * record.count
            }
            try log.partition(.lane(0)).checkpointSync()
            try log.close()
            var records = 0
            let started = nowSeconds()
            let recovered = try WriteAheadLog.recover(
                fileSystem: PosixFileSystem(), directory: walDirectory, partitionIDs: [.lane(0)], mode: .tolerateTornTail
            ) { _, _, _ in
                records += 1
            }
            let elapsed = nowSeconds() - started
            let scanned = recovered.scans[.lane(0)]!.bytesRead
            let rawBytesPerSecond = try rawReadRate(directory: walDirectory)
            let replayBytesPerSecond = Double(scanned) / elapsed
            let baseline = "raw read() of the same segments, cache dropped"
            report.add(
                BenchFigure(
                    benchmark: "recovery replay", parameters: ["wal": "\(scanned >> 20)MiB", "cache": "dropped by recovery"],
                    value: replayBytesPerSecond / 1e6, unit: "MB/s", baseline: baseline, baselineValue: rawBytesPerSecond / 1e6,
                    ratio: replayBytesPerSecond / rawBytesPerSecond, goal: ">= 200 MB/s"))
            // The raw read's rate in records of the same size, for the records row.
            let bytesPerRecord = Double(scanned) / Double(records)
            report.add(
                BenchFigure(
                    benchmark: "recovery replay records", parameters: ["record": "4096B"], value: Double(records) / elapsed, unit: "records/s",
                    baseline: baseline, baselineValue: rawBytesPerSecond / bytesPerRecord, ratio: replayBytesPerSecond / rawBytesPerSecond))
        }
    }

    /// Reads every file under `directory` once with read(2) in 1 MiB chunks after dropping its
    /// cached pages (as recovery does); bytes/s.
    static func rawReadRate(directory: String) throws -> Double {
        let files = regularFiles(under: directory)
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var total = 0
        let started = nowSeconds()
        for relative in files.paths {
            let descriptor = open(directory + "/" + relative, O_RDONLY)
            guard descriptor >= 0 else { throw BenchFailure("cannot open \(directory)/\(relative) for the raw read baseline") }
            defer { close(descriptor) }
            _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED)
            // Bounded by the file's length: each round reads at least one byte or ends.
            while true {
                let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count <= 0 { break }
                total += count
            }
        }
        guard UInt64(total) == files.bytes else { throw BenchFailure("the raw read baseline read \(total) of \(files.bytes) bytes") }
        return Double(total) / (nowSeconds() - started)
    }
}

enum SnapshotBench {
    static func run(report: BenchReport, scratch: String, bytes: Int, rounds: Int) throws {
        try withScratchDirectory(in: scratch) { directory in
            var configuration = EngineConfiguration(dataDirectory: directory + "/data")
            configuration.laneCount = 4
            configuration.wal.fsyncPolicy = .devFast
            configuration.flushEveryBlocks = 64
            configuration.walRetentionHours = 0
            let fileSystem = PosixFileSystem()
            let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: SystemClock())
            let value = [UInt8](repeating: 0x42, count: 4_096)
            var written = 0
            var key = 0
            do {
                // Bounded by `bytes`.
                while written < bytes {
                    let block = (0..<64).map { offset in BlockOperation(key: Array("key-\(key + offset)".utf8), value: value) }
                    key += 64
                    _ = try engine.commit(block)
                    written += 64 * value.count
                }
                try engine.checkpoint()
                try measure(report: report, engine: engine, fileSystem: fileSystem, directory: directory, rounds: rounds)
            } catch {
                // Close before the failure is reported: an engine is never left open.
                try? engine.close()
                throw error
            }
            try engine.close()
        }
    }

    /// Background flushes and compactions finish before each side, so that neither side
    /// measures a directory RocksDB is rewriting.
    static func quiesce(_ engine: Engine) throws(BenchFailure) {
        guard engine.waitForLaneBackgroundWork(timeoutSeconds: 120) else {
            throw BenchFailure("the lanes' background compaction did not finish within 120 s")
        }
    }

    /// `paths` under `source` split into at most `count` groups of about equal bytes (largest
    /// first, each to the lightest group), as verify's threads share the files.
    static func balancedGroups(source: String, paths: [String], count: Int) -> [[String]] {
        let sized = paths.map { path -> (String, UInt64) in
            let size = (try? FileManager.default.attributesOfItem(atPath: source + "/" + path)[.size] as? NSNumber)??.uint64Value ?? 0
            return (source + "/" + path, size)
        }.sorted { $0.1 > $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        var groups = Array(repeating: (paths: [String](), bytes: UInt64(0)), count: max(1, count))
        for (path, size) in sized {
            let lightest = groups.indices.min { groups[$0].bytes < groups[$1].bytes }!
            groups[lightest].paths.append(path)
            groups[lightest].bytes += size
        }
        return groups.map(\.paths).filter { !$0.isEmpty }
    }

    /// `cp -r source copy` then `sync -f copy` (so that both sides end durable); seconds. Fails
    /// unless the copy holds exactly `expectedBytes` in regular files.
    static func copyBaseline(source: String, copy: String, expectedBytes: UInt64) throws(BenchFailure) -> Double {
        let elapsed = try BaselineCommand.run(["cp", "-r", source, copy]) + BaselineCommand.run(["sync", "-f", copy])
        let copied = regularFiles(under: copy)
        guard copied.bytes == expectedBytes else {
            throw BenchFailure("cp -r copied \(copied.bytes) bytes; the snapshot holds \(expectedBytes)")
        }
        let sourcePaths = regularFiles(under: source).paths
        guard copied.paths == sourcePaths else {
            throw BenchFailure("cp -r copied \(copied.paths.count) files, the source holds \(sourcePaths.count) (or other names)")
        }
        return elapsed
    }

    /// Snapshot create against `cp -r` + `sync` of exactly the same files (the first snapshot's
    /// lanes: immutable, the same inodes as the live SSTs), then verify against `sha256sum` of
    /// the same files with as many processes as verify has threads. Both sides must hold the
    /// same bytes, and every baseline must pass cleanly, or the benchmark fails.
    static func measure(report: BenchReport, engine: Engine, fileSystem: PosixFileSystem, directory: String, rounds: Int) throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        try quiesce(engine)
        let reference = try SnapshotCreator.create(
            engine: engine, fileSystem: fileSystem, outputPath: directory + "/snap-0", nowSeconds: 0, hashingConcurrency: cores)
        let source = directory + "/snap-0/lanes"
        let sourceFiles = regularFiles(under: source)
        guard sourceFiles.bytes == reference.totalBytes else {
            throw BenchFailure("the snapshot's lanes hold \(sourceFiles.bytes) bytes but its manifest lists \(reference.totalBytes)")
        }
        var index = 0
        let (snapshotSeconds, copySeconds) = try sideBySide(
            rounds: rounds,
            { () throws -> Double in
                try quiesce(engine)
                index += 1
                let started = nowSeconds()
                let manifest = try SnapshotCreator.create(
                    engine: engine, fileSystem: fileSystem, outputPath: directory + "/snap-\(index)", nowSeconds: 0, hashingConcurrency: cores)
                let elapsed = nowSeconds() - started
                // The same state: each checkpoint flushes the lanes' few marker writes into a
                // small SST and appends edits to RocksDB's MANIFEST, nothing more (a few KiB a
                // round: at most 0.1 %, or 64 KiB per lane per snapshot since the first).
                let drift = manifest.totalBytes > reference.totalBytes ? manifest.totalBytes - reference.totalBytes : reference.totalBytes - manifest.totalBytes
                guard drift <= max(reference.totalBytes / 1_000, UInt64(64 << 10) * UInt64(reference.laneCount) * UInt64(index)) else {
                    throw BenchFailure("snapshot \(index) holds \(manifest.totalBytes) bytes, the first \(reference.totalBytes): the state moved")
                }
                return elapsed
            },
            { () throws -> Double in
                try quiesce(engine)
                index += 1
                return try copyBaseline(source: source, copy: directory + "/copy-\(index)", expectedBytes: reference.totalBytes)
            })
        report.add(
            BenchFigure(
                benchmark: "snapshot create", parameters: ["state": "\(reference.totalBytes >> 20)MiB", "lanes": "4"], value: snapshotSeconds,
                unit: "s", baseline: "cp -r + sync of the same \(reference.files.count) files", baselineValue: copySeconds,
                ratio: copySeconds / snapshotSeconds, goal: ">= 10x faster than cp -r (ratio = cp time / snapshot time)"))
        let megabytes = Double(reference.totalBytes) / 1e6
        let (verifySeconds, hashSeconds) = try sideBySide(
            rounds: rounds,
            { () throws -> Double in
                let started = nowSeconds()
                _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: directory + "/snap-0", hashingConcurrency: cores)
                return nowSeconds() - started
            },
            { () throws -> Double in
                try BaselineCommand.runConcurrently(balancedGroups(source: source, paths: sourceFiles.paths, count: cores).map { ["sha256sum"] + $0 })
            })
        report.add(
            BenchFigure(
                benchmark: "snapshot verify", parameters: ["state": "\(reference.totalBytes >> 20)MiB"], value: megabytes / verifySeconds,
                unit: "MB/s", baseline: "sha256sum of the same files, \(cores) processes of equal bytes (hashing only)",
                baselineValue: megabytes / hashSeconds,
                ratio: hashSeconds / verifySeconds))
    }
}

/// The simulator's figures against a reference measured in the same run: a fixed WAL workload
/// (seeded appends in batches, a sync per batch, then recovery reading everything back; no
/// faults, no crashes) on `PosixFileSystem` over tmpfs and on `SimulatedFileSystem`. The
/// reference's tmpfs rate stands for the machine's speed, so each swarm figure is reported as a
/// ratio to it (comparable between machines), beside its absolute value.
enum SimulatorBench {
    static let referenceDirectory = "/dev/shm"

    static func run(report: BenchReport, seeds: Int, rounds: Int, records: Int) throws {
        guard FileManager.default.fileExists(atPath: referenceDirectory) else {
            throw BenchFailure("the simulator's reference runs on tmpfs at \(referenceDirectory), which this machine lacks")
        }
        let (simulated, posix) = try sideBySide(
            rounds: rounds, { try referenceRate(on: SimulatedFileSystem(seed: 1), directory: "/reference", records: records) },
            {
                try withScratchDirectory(in: referenceDirectory) { directory in
                    try referenceRate(on: PosixFileSystem(), directory: directory + "/reference", records: records)
                }
            })
        let referenceName = "reference WAL workload on PosixFileSystem over tmpfs"
        report.add(
            BenchFigure(
                benchmark: "simulator reference WAL workload", parameters: ["records": String(records)], value: simulated,
                unit: "records/s", baseline: referenceName, baselineValue: posix, ratio: simulated / posix))
        for workload in [WorkloadKind.wal, .engine] {
            var operations: UInt64 = 0
            var crashes = 0
            let started = nowSeconds()
            for seed in 0..<UInt64(seeds) {
                let result = workload.run(seed: seed)
                operations += result.fileSystemOperations
                crashes += result.crashes
            }
            let elapsed = nowSeconds() - started
            let parameters = ["workload": workload.rawValue, "seeds": String(seeds), "reference_records": String(records)]
            // Ratio: the figure per million reference records/s (the machine's speed on the same
            // I/O path), so that figures from different machines compare.
            func figure(_ name: String, _ value: Double, _ unit: String, goal: String? = nil) -> BenchFigure {
                BenchFigure(
                    benchmark: name, parameters: parameters, value: value, unit: unit, baseline: referenceName, baselineValue: posix / 1e6,
                    baselineUnit: "M records/s", ratio: value / (posix / 1e6), goal: goal)
            }
            report.add(figure("simulator fs ops", Double(operations) / elapsed, "ops/s (one core)", goal: ">= 1,000,000 ops/s per core"))
            report.add(figure("simulator crash-recover cycles", Double(crashes) / elapsed, "cycles/s"))
            report.add(figure("simulator seeds", Double(seeds) * 60 / elapsed, "seeds/min"))
        }
    }

    /// Appends `records` seeded records (16 to 4,096 bytes) in batches of 16 with a sync after
    /// each, closes, recovers reading every record back; records/s over both.
    static func referenceRate(on fileSystem: any FileSystem, directory: String, records: Int) throws -> Double {
        precondition(records > 0 && records % 16 == 0, "whole batches of 16")
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = .strict
        configuration.segmentSizeBytes = 8 << 20
        var random = DeterministicRandom(seed: 42)
        let started = nowSeconds()
        try fileSystem.createDirectories(directory)
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: directory, partitionIDs: [.lane(0)], configuration: configuration, clock: SystemClock())
        // Bounded: records / 16 batches.
        for _ in 0..<(records / 16) {
            let batch = (0..<16).map { _ in [UInt8](repeating: UInt8(truncatingIfNeeded: random.next()), count: random.int(in: 16...4_096)) }
            _ = try log.partition(.lane(0)).append(batch)
        }
        try log.close()
        var recovered = 0
        _ = try WriteAheadLog.recover(fileSystem: fileSystem, directory: directory, partitionIDs: [.lane(0)], mode: .tolerateTornTail) { _, _, _ in
            recovered += 1
        }
        guard recovered == records else {
            throw BenchFailure("the reference workload recovered \(recovered) of \(records) records")
        }
        return Double(2 * records) / (nowSeconds() - started)
    }
}

extension RivellumBench {
    /// Redraws the writers plot from a results file.
    struct Plot: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Draw the writers plot (SVG) from a results JSON file.")
        @Option(help: "The results JSON written by `all --json-out`.") var from: String
        @Option(help: "Where to write the SVG.") var out: String

        func run() throws {
            struct Results: Codable { var figures: [BenchFigure] }
            let results = try JSONDecoder().decode(Results.self, from: Data(contentsOf: URL(fileURLWithPath: from)))
            try WritersPlot.svg(results.figures).write(toFile: out, atomically: true, encoding: .utf8)
        }
    }
}

/// An SVG line chart of WAL strict and RocksDB synced puts against writers, per record size.
enum WritersPlot {
    static func svg(_ figures: [BenchFigure]) -> String {
        let strict = figures.filter { $0.benchmark == "wal strict" }
        let sizes = Array(Set(strict.compactMap { $0.parameters["record"] })).sorted { $0.count == $1.count ? $0 < $1 : $0.count < $1.count }
        let writers = Array(Set(strict.compactMap { $0.parameters["writers"].flatMap(Int.init) })).sorted()
        var series: [(String, String, [(Int, Double)])] = []
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
        for (index, size) in sizes.enumerated() {
            let points = strict.filter { $0.parameters["record"] == size }
            series.append(("rivellum strict \(size)", colors[(2 * index) % colors.count], points.map { (Int($0.parameters["writers"]!)!, $0.value) }))
            series.append(("RocksDB sync=true \(size)", colors[(2 * index + 1) % colors.count], points.map { (Int($0.parameters["writers"]!)!, $0.baselineValue ?? 0) }))
        }
        for (index, policy) in ["balanced", "dev_fast"].enumerated() {
            let points = figures.filter { $0.benchmark == "wal \(policy) writers" }
            guard !points.isEmpty else { continue }
            let size = points[0].parameters["record"] ?? ""
            series.append(("rivellum \(policy) \(size)", colors[(4 + index) % colors.count], points.map { (Int($0.parameters["writers"]!)!, $0.value) }))
        }
        let width = 700.0, height = 400.0, left = 70.0, right = 230.0, top = 30.0, bottom = 50.0
        // Log scale: synced and unsynced policies differ by two orders of magnitude.
        let values = series.flatMap { $0.2.map(\.1) }.filter { $0 > 0 }
        let low = pow(10, floor(log10(values.min() ?? 1)))
        let high = pow(10, ceil(log10(max(values.max() ?? 10, low * 10))))
        func x(_ writer: Int) -> Double {
            guard writers.count > 1, let position = writers.firstIndex(of: writer) else { return left }
            return left + Double(position) / Double(writers.count - 1) * (width - left - right)
        }
        func y(_ value: Double) -> Double {
            let fraction = (log10(max(value, low)) - log10(low)) / (log10(high) - log10(low))
            return top + (1 - fraction) * (height - top - bottom)
        }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(left)\" y=\"18\" font-size=\"14\">Appends acknowledged per second against concurrent writers (log scale)</text>\n"
        svg += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
        for writer in writers {
            svg += "<text x=\"\(x(writer) - 6)\" y=\"\(height - bottom + 18)\">\(writer)</text>\n"
        }
        svg += "<text x=\"\((left + width - right) / 2 - 30)\" y=\"\(height - 10)\">writers</text>\n"
        var value = low
        // Bounded: one gridline per power of ten between low and high.
        while value <= high * 1.0001 {
            svg += "<text x=\"5\" y=\"\(y(value) + 4)\">\(Int(value))</text>\n"
            svg += "<line x1=\"\(left)\" y1=\"\(y(value))\" x2=\"\(width - right)\" y2=\"\(y(value))\" stroke=\"#ddd\"/>\n"
            value *= 10
        }
        for (index, (name, color, points)) in series.enumerated() {
            let dashed = name.hasPrefix("RocksDB") ? " stroke-dasharray=\"6,4\"" : ""
            let path = points.sorted { $0.0 < $1.0 }.map { "\(x($0.0)),\(y($0.1))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed) points=\"\(path)\"/>\n"
            for point in points { svg += "<circle cx=\"\(x(point.0))\" cy=\"\(y(point.1))\" r=\"3\" fill=\"\(color)\"/>\n" }
            let legendY = top + 20 + Double(index) * 20
            svg += "<line x1=\"\(width - right + 10)\" y1=\"\(legendY - 4)\" x2=\"\(width - right + 35)\" y2=\"\(legendY - 4)\" stroke=\"\(color)\" stroke-width=\"2\"\(dashed)/>\n"
            svg += "<text x=\"\(width - right + 40)\" y=\"\(legendY)\">\(name)</text>\n"
        }
        return svg + "</svg>\n"
    }
}
