import Documents
import Engine
import FaultFS
import Foundation
@testable import SimRunner
import Testing

/// Sweeps across many machines: `sweep --shard K/N --json-out` and `merge`. The shards of a
/// sweep split its seeds exactly (every seed once), the merge refuses results that do not add
/// up, and — with the real binary, several processes at once — the merge of N shards equals one
/// sweep of the same seeds.
@Suite("Sweep shards and merge")
struct SweepShardTests {
    @Test func shardsAreParsedOnlyAsKOverN() {
        #expect(SweepShard(parsing: "0/1") == .whole)
        #expect(SweepShard(parsing: "3/8") == SweepShard(index: 3, count: 8))
        for bad in ["", "1", "1/1", "8/8", "-1/4", "1/0", "a/4", "1/4/2", "1 /4", "0/100001"] {
            #expect(SweepShard(parsing: bad) == nil, "\(bad)")
        }
    }

    /// Property: for any range and shard count, the shards' seeds are disjoint, together the
    /// range, and each as many as `seedCount(of:)` says.
    @Test func theShardsOfASweepHoldEachOfItsSeedsExactlyOnce() {
        var random = DeterministicRandom(seed: 7)
        for _ in 0..<300 {
            let first = random.next() % 1_000_000
            let seedCount = Int(random.next() % 200)
            let shardCount = Int(random.next() % 20) + 1
            var seen: [UInt64: Int] = [:]
            for index in 0..<shardCount {
                let shard = SweepShard(index: index, count: shardCount)
                let seeds = Array(shard.seeds(firstSeed: first, seedCount: seedCount))
                #expect(seeds.count == shard.seedCount(of: seedCount), "\(shard) of \(first)+\(seedCount)")
                for seed in seeds { seen[seed, default: 0] += 1 }
            }
            #expect(seen.count == seedCount && seen.values.allSatisfy { $0 == 1 }, "\(first)+\(seedCount) over \(shardCount) shards")
            #expect(seen.keys.allSatisfy { $0 >= first && $0 < first + UInt64(seedCount) })
        }
    }

    static func result(_ shard: SweepShard, seedCount: Int = 10, workload: String = "all", failures: [UInt64] = []) -> SweepSummaryDocument {
        let sweep = SweepIdentity(workload: workload, firstSeed: 1, seedCount: seedCount, shard: shard, checkDeterminism: true, mutations: [])
        return SweepSummaryDocument(
            sweep: sweep, seeds: shard.seedCount(of: seedCount), failures: failures.map { .init(seed: $0, failure: "I1 x", knobs: "k") },
            correctRefusals: 1, crashes: 10, fileSystemOperations: 100, elapsedSeconds: Double(shard.index + 1), faults: ["torn_writes": 2],
            probes: ["wal.segment_rolled": UInt64(shard.index), "engine.checkpoint": 1], probesMissed: [])
    }

    @Test func mergeAddsTheShardsUpInAnyOrder() throws {
        let shards = (0..<3).map { Self.result(SweepShard(index: $0, count: 3), failures: $0 == 1 ? [5] : $0 == 0 ? [7] : []) }
        let merged = try SweepSummaryDocument.merge([shards[2], shards[0], shards[1]])
        #expect(merged.sweep.shard == .whole && merged.seeds == 10)
        #expect(merged.failures.map(\.seed) == [5, 7])
        #expect(merged.crashes == 30 && merged.fileSystemOperations == 300 && merged.correctRefusals == 3)
        #expect(merged.faults == ["torn_writes": 6])
        #expect(merged.probes == ["wal.segment_rolled": 3, "engine.checkpoint": 3])
        #expect(merged.probesMissed.isEmpty)
        #expect(merged.elapsedSeconds == 3, "the longest shard's wall clock")
    }

    @Test func mergeRefusesShardsThatDoNotAddUpAndNamesThem() {
        let three = (0..<3).map { Self.result(SweepShard(index: $0, count: 3)) }
        var wrongCount = three[2]
        wrongCount.seeds -= 1
        let cases: [(shards: [SweepSummaryDocument], naming: String)] = [
            ([], "no shard"),
            ([three[0], three[2]], "missing: 1/3"),
            ([three[0], three[1], three[1], three[2]], "1/3 is given twice"),
            ([three[0], three[1], Self.result(SweepShard(index: 2, count: 3), workload: "wal")], "another sweep"),
            ([three[0], three[1], Self.result(SweepShard(index: 2, count: 3), seedCount: 11)], "another sweep"),
            ([three[0], three[1], Self.result(SweepShard(index: 2, count: 4))], "another sweep"),
            ([three[0], three[1], wrongCount], "ran 2 seeds, not its 3"),
        ]
        for (shards, naming) in cases {
            #expect(performing: { try SweepSummaryDocument.merge(shards) }, throws: { error in
                (error as? SweepMergeError)?.description.contains(naming) == true
            })
        }
    }

    @Test func aShardResultRoundTripsThroughItsJSON() throws {
        let result = Self.result(SweepShard(index: 2, count: 5), failures: [3])
        let bytes = JSONDocument.encodeBytes(result)
        #expect(try JSONDocument.decode(SweepSummaryDocument.self, from: bytes) == result)
        #expect(String(decoding: bytes, as: UTF8.self).contains("\"shard\":\"2/5\""))
    }

    /// Three shard processes at once, merged, against one process sweeping the same seeds: the
    /// same totals, faults, probes and failures (only the wall clock may differ).
    @Test func theMergeOfShardsRunInSeveralProcessesEqualsOneSweep() throws {
        let directory = NSTemporaryDirectory() + "sweep-shards-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let common = ["sweep", "--workload", "all", "--seeds", "6", "--first-seed", "11"]
        let whole = try SimBinary.start(common + ["--json-out", directory + "/whole.json"])
        try SimBinary.finish(whole, expecting: 0)
        let shards = try (0..<3).map { try SimBinary.start(common + ["--shard", "\($0)/3", "--json-out", directory + "/shard-\($0).json"]) }
        for shard in shards { try SimBinary.finish(shard, expecting: 0) }
        let merge = try SimBinary.start(["merge", "--json-out", directory + "/merged.json"] + (0..<3).map { directory + "/shard-\($0).json" })
        let printed = try SimBinary.finish(merge, expecting: 0)
        #expect(printed.contains("sweep: 6 seeds, 0 failures"), "\(printed)")
        var one = try JSONDocument.decode(SweepSummaryDocument.self, from: try PosixFileSystem().readFile(directory + "/whole.json"))
        var merged = try JSONDocument.decode(SweepSummaryDocument.self, from: try PosixFileSystem().readFile(directory + "/merged.json"))
        #expect(one.crashes > 0 && one.fileSystemOperations > 0)
        one.elapsedSeconds = 0
        merged.elapsedSeconds = 0
        #expect(merged == one)
        // A shard left out: exit 2, naming it.
        let short = try SimBinary.start(["merge", directory + "/shard-0.json", directory + "/shard-2.json"])
        let refused = try SimBinary.finish(short, expecting: 2)
        #expect(refused.contains("missing: 1/3"), "\(refused)")
    }
}

/// The `rivellum-sim` binary next to the test bundle.
enum SimBinary {
    static var path: String {
        var directory = PathComponents.parent(of: CommandLine.arguments[0])
        // The test bundle sits in the build directory, or one below it.
        if !((try? PosixFileSystem().exists(directory + "/rivellum-sim")) ?? false) { directory = PathComponents.parent(of: directory) }
        return directory + "/rivellum-sim"
    }

    struct Running {
        let process: Process
        let output: URL
    }

    /// Starts the binary with its output to a file (so that several can run at once unread).
    static func start(_ arguments: [String]) throws -> Running {
        let output = URL(fileURLWithPath: NSTemporaryDirectory() + "rivellum-sim-\(UUID().uuidString).out")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try handle.close()
        return Running(process: process, output: output)
    }

    /// Waits for it; records an issue unless it exits `expecting`; returns what it printed.
    @discardableResult
    static func finish(_ running: Running, expecting status: Int32) throws -> String {
        running.process.waitUntilExit()
        let printed = String(decoding: try Data(contentsOf: running.output), as: UTF8.self)
        try? FileManager.default.removeItem(at: running.output)
        #expect(running.process.terminationStatus == status, "\(running.process.arguments ?? []): \(printed)")
        return printed
    }
}
