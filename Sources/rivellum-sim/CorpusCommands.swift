import ArgumentParser
import CommandLineOptions
import Engine
import FaultFS
import SimRunner

#if canImport(Glibc)
import Glibc
#endif

extension RivellumSim {
    /// Runs fresh seeds until a time budget is spent; every failing seed is shrunk (wal and
    /// engine; the others are kept whole) into a capsule in the corpus directory.
    struct Soak: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run fresh seeds for a time budget; shrink each failure into a capsule in the corpus; exit 1 if any seed failed.",
            discussion: "The first seed is printed, so a soak replays: give it back with --first-seed.")

        @Option(help: "The time budget in minutes (no new seed starts after it).")
        var minutes: Double

        @Option(help: "The directory that keeps one capsule per failing seed (created if missing).")
        var corpus: String

        @Option(help: "The first seed (default: from the wall clock, printed).")
        var firstSeed: UInt64?

        @Option(help: "Which workload each seed runs: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
        var workload: Workload = .all

        @Flag(help: "Run each seed twice and fail if the trace hashes differ.")
        var checkDeterminism = false

        @OptionGroup var output: OutputOptions

        @Option(help: ArgumentHelp("Switch on a deliberate bug (debug builds only).", visibility: .hidden))
        var mutation: [String] = []

        static let minutesMax = 7.0 * 24 * 60

        func validate() throws {
            guard minutes > 0 && minutes <= Self.minutesMax else { throw ValidationError("--minutes must be in (0, \(Int(Self.minutesMax))]") }
            guard (firstSeed ?? 0) <= UInt64.max / 2 else { throw ValidationError("--first-seed must be at most \(UInt64.max / 2)") }
        }

        func run() throws {
            let fileSystem = PosixFileSystem()
            do {
                try fileSystem.createDirectories(corpus)
            } catch {
                throw ValidationError("cannot create the corpus directory \(corpus): \(error)")
            }
            // Default: the wall clock's seconds and the process id, so that soaks started together differ.
            let first = firstSeed ?? (UInt64(time(nil)) << 20 | UInt64(getpid() & 0xF_FFFF))
            if !output.json { print("soak: first seed \(first), \(minutes) minute(s), workload \(workload.rawValue), corpus \(corpus)") }
            let sweep = SeedSweep(workload: workload, checkDeterminism: checkDeterminism, mutations: mutation, printFailures: !output.json)
            let deadline = monotonicSeconds() + minutes * 60
            var seedsStarted = 0
            let summary = try sweep.run(first..., deadlineSeconds: deadline) { result in
                seedsStarted += 1
                guard result.failure != nil else { return }
                let path = try keepCapsule(for: result)
                if !output.json { print("  capsule: \(path)") }
            }
            let identity = SweepIdentity(
                workload: workload.rawValue, firstSeed: first, seedCount: seedsStarted, shard: .whole, checkDeterminism: checkDeterminism,
                mutations: mutation)
            try SweepReport(document: summary.document(of: identity), output: output, jsonOut: nil, requireProbes: false).finish()
        }

        /// The failing seed as a capsule in the corpus: shrunk where the shrinker works (wal,
        /// engine), else whole. The kind that failed is found by running each again (deterministic).
        private func keepCapsule(for result: SeedResult) throws -> String {
            let kinds = workload.kinds
            let failing = kinds.first { kind in
                kind.run(seed: result.seed, controls: SeedControls(mutations: Set(mutation.compactMap(EngineMutation.init(rawValue:))))).failure != nil
            }
            // A determinism failure fails no single run: it is kept on the first kind, whole.
            let kind = failing ?? kinds[0]
            var capsule = Capsule(workload: kind, seed: result.seed, length: kind.defaultLength, mutations: mutation, failure: result.failure ?? "")
            if failing != nil, kind == .wal || kind == .engine, let shrunk = Shrinker.shrink(capsule) { capsule = shrunk }
            let path = PathComponents.join(corpus, "\(kind.rawValue)-seed-\(result.seed).json")
            do {
                try PosixFileSystem().writeFileAtomically(path, bytes: Array(try capsule.encoded().utf8))
            } catch {
                throw ValidationError("cannot write the capsule \(path): \(error)")
            }
            return path
        }
    }

    /// Replays every capsule in a directory, twice: each is a seed that once failed, kept after
    /// its fix, and must pass now, with the same trace hash both times.
    struct Regressions: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay every capsule (*.json) in a directory twice; exit 1 if any fails again or replays differently.")

        @Argument(help: "The directory of capsules.")
        var directory: String = "scenarios/regressions"

        func run() throws {
            let fileSystem = PosixFileSystem()
            let names = try namesInDirectory(directory, endingIn: ".json", what: "capsules")
            var failures = 0
            for name in names {
                let path = PathComponents.join(directory, name)
                do {
                    let capsule = try Capsule.decode(String(decoding: try fileSystem.readFile(path), as: UTF8.self))
                    var result = capsule.run()
                    // Twice, as the sweep's determinism check runs a seed (some kept seeds broke I7).
                    if result.failure == nil, case let again = capsule.run(), again.traceHash != result.traceHash {
                        result.violation = OracleViolation(.determinism, expected: "trace hash \(result.traceHash) again", found: "\(again.traceHash)")
                    }
                    if let failure = result.failure {
                        failures += 1
                        print("FAIL \(name): \(failure)")
                        print("  once: \(capsule.failure)")
                    } else {
                        print("ok   \(name): \(capsule.workload.rawValue) seed \(capsule.seed), \(result.crashes) crashes, \(result.fileSystemOperations) operations")
                    }
                } catch {
                    failures += 1
                    print("FAIL \(name): not a capsule: \(error)")
                }
            }
            print("regressions: \(names.count - failures) passed, \(failures) failed")
            if failures > 0 { throw ExitCode(1) }
        }
    }
}
