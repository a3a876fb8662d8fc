import ArgumentParser
import CommandLineOptions
import Documents
import FaultFS
import Engine
import SimRunner
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct RivellumSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-sim",
        abstract: "Deterministic simulation of the Rivellum storage engine under injected faults.",
        subcommands: [Sweep.self, Merge.self, Soak.self, Scenarios.self, Regressions.self, Replay.self, Shrink.self, Exhaustive.self])
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

        @Option(help: "Write every trace event of the run as JSON lines to this file (best with --seeds 1).")
        var trace: String?

        @Option(help: "Run only shard K of N (0 <= K < N): the seeds at positions K, K+N, K+2N, ... of the range; `merge` adds the shards' --json-out files up.")
        var shard: String = "0/1"

        @Option(help: "Also write the summary as JSON to this file (what `merge` reads).")
        var jsonOut: String?

        func validate() throws {
            guard seeds > 0 && seeds <= 1_000_000 else { throw ValidationError("--seeds must be in 1...1000000") }
            guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed + --seeds must fit in 64 bits") }
            guard SweepShard(parsing: shard) != nil else { throw ValidationError("--shard is K/N with 0 <= K < N <= \(SweepShard.countMax), not \(shard)") }
            guard !requireProbes || workload == .all else { throw ValidationError("--require-probes needs --workload all") }
        }

        @Option(help: "Which workload each seed runs: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
        var workload: Workload = .all

        @OptionGroup var output: OutputOptions

        @Flag(help: "Fail when a coverage probe that is not rare was never hit (with --workload all).")
        var requireProbes = false

        @Option(help: ArgumentHelp("Switch on a deliberate bug (debug builds only) to see the sweep catch it.", visibility: .hidden))
        var mutation: [String] = []

        func run() throws {
            let identity = SweepIdentity(
                workload: workload.rawValue, firstSeed: firstSeed, seedCount: seeds, shard: SweepShard(parsing: shard)!,
                checkDeterminism: checkDeterminism, mutations: mutation)
            let document = try SeedSweep(workload: workload, checkDeterminism: checkDeterminism, mutations: mutation, printFailures: !output.json)
                .run(identity.shard.seeds(firstSeed: firstSeed, seedCount: seeds), trace: trace)
                .document(of: identity)
            try SweepReport(document: document, output: output, jsonOut: jsonOut, requireProbes: requireProbes).finish()
        }
    }

    /// Adds the `--json-out` files of every shard of one sweep up into that sweep's summary.
    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge the --json-out results of a sweep's shards into one summary; exit 1 on any failure, 2 if the shards do not add up.")

        @Argument(help: "One result file per shard (sweep --shard K/N --json-out FILE).")
        var results: [String]

        @OptionGroup var output: OutputOptions

        @Option(help: "Also write the merged summary as JSON to this file.")
        var jsonOut: String?

        @Flag(help: "Fail when a coverage probe that is not rare was never hit by any shard (sweeps of --workload all).")
        var requireProbes = false

        func run() throws {
            guard !results.isEmpty else { throw ValidationError("give the shards' result files") }
            var documents: [SweepSummaryDocument] = []
            for path in results {
                do {
                    documents.append(try JSONDocument.decode(SweepSummaryDocument.self, from: try PosixFileSystem().readFile(path)))
                } catch {
                    printError("rivellum-sim merge: cannot read \(path) as a sweep result: \(error)")
                    throw ExitCode(2)
                }
            }
            let merged: SweepSummaryDocument
            do {
                merged = try SweepSummaryDocument.merge(documents)
            } catch {
                printError("rivellum-sim merge: \(error)")
                throw ExitCode(2)
            }
            guard !requireProbes || merged.sweep.workload == Workload.all.rawValue else {
                printError("rivellum-sim merge: --require-probes needs a sweep of --workload all (this one ran \(merged.sweep.workload))")
                throw ExitCode(2)
            }
            try SweepReport(document: merged, output: output, jsonOut: jsonOut, requireProbes: requireProbes).finish()
        }
    }

    /// Runs one seed and writes its trace: every file-system operation, injected fault, crash
    /// and engine event, as JSON lines.
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay one seed or a capsule, writing its full trace.")

        @Option(help: "The seed to replay.")
        var seed: UInt64?

        @Option(help: "Which workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", ")).")
        var workload: Workload = .all

        @Option(help: "A capsule file written by `shrink` (instead of --seed).")
        var capsule: String?

        @Option(help: "Where to write the JSONL trace.")
        var trace: String = "trace.jsonl"

        func validate() throws {
            guard (seed == nil) != (capsule == nil) else { throw ValidationError("give exactly one of --seed and --capsule") }
        }

        func run() throws {
            let sink = try TraceFileSink(path: trace)
            let result: SeedResult
            if let capsule {
                let text = String(decoding: try PosixFileSystem().readFile(capsule), as: UTF8.self)
                result = try Capsule.decode(text).run { event in sink.write(event) }
            } else {
                result = workload.run(seed: seed!) { event in sink.write(event) }
            }
            sink.close()
            print("seed \(result.seed): \(result.failure.map { "FAIL \($0)" } ?? "ok"), trace hash \(result.traceHash), \(result.fileSystemOperations) file-system operations, \(result.crashes) crashes")
            print("knobs: \(result.knobs)")
            print("trace: \(trace)")
            if result.failure != nil { throw ExitCode(1) }
        }
    }

    /// Minimises a failing seed to a capsule file.
    struct Shrink: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Shrink a failing seed (length, fault families, crash points, single faults) to a capsule that `replay --capsule` reproduces.")

        @Option(help: "The failing seed.")
        var seed: UInt64

        @Option(help: "The workload that fails: wal or engine.")
        var workload: Workload = .wal

        @Option(help: "Where to write the capsule.")
        var out: String = "capsule.json"

        @Option(help: ArgumentHelp("Deliberate bugs to switch on (debug builds only).", visibility: .hidden))
        var mutation: [String] = []

        func validate() throws {
            guard workload == .wal || workload == .engine else { throw ValidationError("shrink works on --workload wal or engine") }
        }

        func run() throws {
            let kind = workload.kinds[0]
            let start = Capsule(workload: kind, seed: seed, length: kind.defaultLength, mutations: mutation)
            guard let shrunk = Shrinker.shrink(start, log: { print("  \($0)") }) else {
                print("seed \(seed) does not fail on \(workload.rawValue); nothing to shrink")
                throw ExitCode(1)
            }
            try PosixFileSystem().writeFileAtomically(out, bytes: Array(try shrunk.encoded().utf8))
            print(
                "capsule: \(out) (length \(shrunk.length), \(shrunk.excludedFamilies.count) fault families left out, "
                    + "\(shrunk.faultsKept) fault(s) and \(shrunk.crashPointsKept) crash point(s) kept)")
            print("failure: \(shrunk.failure)")
            print("replay: swift run -c release rivellum-sim replay --capsule \(out) --trace capsule.jsonl")
        }
    }
}

extension RivellumSim {
    /// Crash at every operation of a short WAL workload, times a bounded set of persisted
    /// subsets of the unsynced writes, with a crash inside recovery after each.
    struct Exhaustive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Crash at every file-system operation of a short workload, under every persistence variant.",
            discussion: "wal: append and commit records. engine: blocks, a snapshot, more blocks, stop, restore, more blocks.")

        @Option(help: "wal or engine.") var workload = WorkloadKind.wal
        @Option(help: "Records in the WAL workload.") var records = 40
        @Option(help: "Blocks in the engine workload (plus two after the restore).") var blocks = 8
        @Option(help: "Lanes in the engine workload.") var lanes = 2
        @Option(help: "strict, balanced or dev_fast (default: every policy the workload supports).") var policy: String?

        func validate() throws {
            guard workload != .fs else { throw ValidationError("--workload is wal or engine") }
            guard (1...10_000).contains(records), (2...1_000).contains(blocks), (1...8).contains(lanes) else {
                throw ValidationError("--records 1...10000, --blocks 2...1000, --lanes 1...8")
            }
        }

        func run() throws {
            let supported = workload == .wal ? FsyncPolicy.allCases : [.strict, .balanced]
            let policies = try policy.map { name -> [FsyncPolicy] in
                guard let chosen = FsyncPolicy(rawValue: name), supported.contains(chosen) else {
                    throw ValidationError("policy \(name) is not one of \(supported.map(\.rawValue).joined(separator: ", "))")
                }
                return [chosen]
            } ?? supported
            var failures = 0
            for chosen in policies {
                let report =
                    workload == .wal
                    ? ExhaustiveCrashRunner(records: records, policy: chosen).run()
                    : EngineExhaustiveCrashRunner(blocks: blocks, laneCount: lanes, policy: chosen).run()
                failures += report.failures.count
                report.failures.forEach { print("FAIL \($0)") }
                print(
                    "exhaustive \(workload) \(chosen.rawValue): \(report.operations) crash points, "
                        + "\(report.imagesChecked) post-crash images checked, \(report.failures.count) failures")
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }
}

/// The names in `directory` that end in `suffix`, sorted; a usage error when it cannot be read
/// or holds none.
func namesInDirectory(_ directory: String, endingIn suffix: String, what: String) throws -> [String] {
    let names: [String]
    do {
        names = try PosixFileSystem().listDirectory(directory).filter { $0.hasSuffix(suffix) }.sorted()
    } catch {
        throw ValidationError("cannot read \(directory): \(error)")
    }
    guard !names.isEmpty else { throw ValidationError("no \(what) (*\(suffix)) in \(directory)") }
    return names
}

func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

extension RivellumSim {
    /// Runs every `*.toml` scenario in a directory and checks each against its expectation.
    struct Scenarios: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the scenario files in a directory; exit 1 if any does not end as it says.")

        @Argument(help: "The directory holding the scenario files.")
        var directory: String = "scenarios"

        func run() throws {
            let fileSystem = PosixFileSystem()
            let names = try namesInDirectory(directory, endingIn: ".toml", what: "scenario files")
            var failures = 0
            for name in names {
                let path = PathComponents.join(directory, name)
                let scenario: Scenario
                do {
                    let bytes = try fileSystem.readFile(path)
                    scenario = try Scenario.load(path: path, text: String(decoding: bytes, as: UTF8.self))
                } catch {
                    print("FAIL \(name): \(error)")
                    failures += 1
                    continue
                }
                let outcome = ScenarioRunner(scenario: scenario).run()
                if let failure = outcome.failure {
                    failures += 1
                    print("FAIL \(scenario.name): \(failure)")
                    print("  \(outcome.summary)")
                } else {
                    print("ok   \(scenario.name): \(outcome.summary.prefix(160))")
                }
            }
            print("scenarios: \(names.count - failures) passed, \(failures) failed")
            if failures > 0 { throw ExitCode(1) }
        }
    }
}

/// The workloads a seed can drive.
enum Workload: String, CaseIterable, ExpressibleByArgument {
    /// The file-system layer's own durability contract.
    case fs
    /// The write-ahead log under crashes and faults.
    case wal
    /// The whole engine: lanes on RocksDB, commit, recovery, MetaRoot.
    case engine
    /// Several engines syncing over a simulated network.
    case sync
    /// All of them, one after the other, with one combined result.
    case all

    /// The simulator's workloads this choice runs, in order.
    var kinds: [WorkloadKind] {
        switch self {
        case .fs: [.fs]
        case .wal: [.wal]
        case .engine: [.engine]
        case .sync: [.sync]
        case .all: WorkloadKind.allCases
        }
    }

    /// Runs the seed on each of `kinds` until one fails; one combined result.
    func run(seed: UInt64, traceSink: (@Sendable (TraceEvent) -> Void)? = nil, mutations: Set<EngineMutation> = []) -> SeedResult {
        let controls = SeedControls(mutations: mutations, traceSink: traceSink)
        var combined = kinds[0].run(seed: seed, controls: controls)
        for next in kinds.dropFirst() where combined.failure == nil {
            let result = next.run(seed: seed, controls: controls)
            combined.violation = result.violation
            combined.traceHash = combined.traceHash &* 31 &+ result.traceHash
            combined.fileSystemOperations += result.fileSystemOperations
            combined.crashes += result.crashes
            combined.endedOnRefusal = combined.endedOnRefusal || result.endedOnRefusal
            combined.knobs += " | " + result.knobs
            for (family, count) in result.faults { combined.faults[family, default: 0] += count }
        }
        return combined
    }
}

extension WorkloadKind: ExpressibleByArgument {}

/// Appends trace events to a JSONL file.
final class TraceFileSink: Sendable {
    private let file: Mutex<UnsafeMutablePointer<FILE>?>

    init(path: String) throws {
        guard let handle = fopen(path, "w") else { throw ValidationError("cannot open \(path) for writing") }
        file = Mutex(handle)
    }

    func write(_ event: TraceEvent) {
        file.withLock { handle in
            guard let handle else { return }
            fputs(event.jsonLine + "\n", handle)
        }
    }

    func close() {
        file.withLock { handle in
            if let open = handle { fclose(open) }
            handle = nil
        }
    }
}

/// Names the seed a sweep was running when the process dies on a trap (a failed precondition
/// in the engine or the simulator, a crash in RocksDB): the signal handler writes a line that
/// was formatted before the seed started, then hands the signal back to the handler it found
/// (the Swift runtime's backtracer), which prints the backtrace as before.
enum SeedCrashReporter {
    static let signals: [Int32] = [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS, SIGFPE]
    static let messageBytesMax = 512
    nonisolated(unsafe) static let message = UnsafeMutablePointer<CChar>.allocate(capacity: messageBytesMax)
    nonisolated(unsafe) static var messageLength = 0
    nonisolated(unsafe) static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 32)

    /// Installs the handler for the trap signals, keeping the ones it replaces (Linux; elsewhere
    /// the runtime's own report stands alone).
    static func arm() {
        #if canImport(Glibc)
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in
                _ = write(2, SeedCrashReporter.message, SeedCrashReporter.messageLength)
                // Give the signal back to the handler found at arm(); the faulting instruction
                // runs again (abort raises again) and that handler reports it.
                sigaction(signal, SeedCrashReporter.previous + Int(signal), nil)
            }
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, previous + Int(signal))
        }
        #endif
    }

    /// Formats the line for `seed` (called before each seed, never from the handler).
    static func running(seed: UInt64, workload: String) {
        let line = "\nrivellum-sim: fatal signal while running seed \(seed); reproduce: "
            + "swift run -c release rivellum-sim replay --workload \(workload) --seed \(seed) --trace seed-\(seed).jsonl\n"
        let bytes = Array(line.utf8.prefix(messageBytesMax))
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(message).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        messageLength = bytes.count
    }
}
