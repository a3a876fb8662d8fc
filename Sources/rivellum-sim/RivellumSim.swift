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

        func run() throws {
            var summary = SweepSummary()
            for seed in firstSeed..<(firstSeed + UInt64(seeds)) {
                var result = FileSystemDurabilityWorkload(seed: seed).run()
                if checkDeterminism && result.failure == nil {
                    let again = FileSystemDurabilityWorkload(seed: seed).run()
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
                    print("  reproduce: swift run rivellum-sim sweep --first-seed \(seed) --seeds 1")
                }
            }
            print(
                "sweep: \(summary.seedsRun) seeds, \(summary.failures.count) failures, "
                    + "\(summary.crashes) crashes, \(summary.fileSystemOperations) file-system operations")
            if !summary.failures.isEmpty { throw ExitCode(1) }
        }
    }
}
