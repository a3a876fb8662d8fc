import ArgumentParser
import FaultFS
import SimRunner

@main
struct RivellumSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-sim",
        abstract: "Deterministic simulation of the Rivellum storage engine under injected faults.",
        subcommands: [Sweep.self])
}

extension RivellumSim {
    /// Runs a range of seeds and prints a summary; exits 1 if any seed broke an invariant.
    struct Sweep: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a range of seeds and summarise.")

        @Option(help: "How many seeds to run.")
        var seeds: Int = 100

        @Option(help: "The first seed; the sweep runs first-seed ..< first-seed + seeds.")
        var firstSeed: UInt64 = 1

        @Flag(help: "Run each seed twice and fail if the trace hashes differ.")
        var checkDeterminism = false

        func validate() throws {
            guard seeds > 0 && seeds <= 1_000_000 else { throw ValidationError("--seeds must be in 1...1000000") }
        }

        @Option(help: "Which workload each seed runs: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
        var workload: Workload = .all

        func run() throws {
            var summary = SweepSummary()
            for seed in firstSeed..<(firstSeed + UInt64(seeds)) {
                var result = workload.run(seed: seed)
                if checkDeterminism && result.failure == nil {
                    let again = workload.run(seed: seed)
                    if again.traceHash != result.traceHash {
                        result.failure = "I7: trace hash \(result.traceHash) then \(again.traceHash)"
                    }
                }
                summary.seedsRun += 1
                summary.fileSystemOperations += result.fileSystemOperations
                summary.crashes += result.crashes
                if let failure = result.failure {
                    summary.failures.append(result)
                    print("FAIL seed=\(seed): \(failure)")
                    print("  knobs: \(result.knobs)")
                    print("  reproduce: swift run -c release rivellum-sim sweep --workload \(workload.rawValue) --first-seed \(seed) --seeds 1")
                }
            }
            print(
                "sweep: \(summary.seedsRun) seeds, \(summary.failures.count) failures, "
                    + "\(summary.crashes) crashes, \(summary.fileSystemOperations) file-system operations")
            if !summary.failures.isEmpty { throw ExitCode(1) }
        }
    }
}

/// The workloads a seed can drive.
enum Workload: String, CaseIterable, ExpressibleByArgument {
    /// The file-system layer's own durability contract.
    case fs
    /// The write-ahead log under crashes and faults.
    case wal
    /// Both, one after the other, with one combined result.
    case all

    func run(seed: UInt64) -> SeedResult {
        switch self {
        case .fs: return FileSystemDurabilityWorkload(seed: seed).run()
        case .wal: return WALSwarmWorkload(seed: seed).run()
        case .all:
            let first = FileSystemDurabilityWorkload(seed: seed).run()
            guard first.failure == nil else { return first }
            var second = WALSwarmWorkload(seed: seed).run()
            second.traceHash = second.traceHash &* 31 &+ first.traceHash
            second.fileSystemOperations += first.fileSystemOperations
            second.crashes += first.crashes
            second.knobs = first.knobs + " | " + second.knobs
            return second
        }
    }
}
