import Engine
import FaultFS
import Foundation

/// The outcome of one simulated seed.
public struct SeedResult: Sendable {
    public var seed: UInt64
    /// `nil` when every invariant held; otherwise which broke, with expected and found values.
    public var violation: OracleViolation?
    public var traceHash: UInt64
    public var fileSystemOperations: UInt64
    public var crashes: Int
    public var knobs: String
    /// Faults injected, by family.
    public var faults: [String: UInt64] = [:]
    /// Faults drawn and crash points armed, numbered from 1 (what a shrinker can leave out).
    public var faultsDrawn: UInt64 = 0
    public var crashPointsArmed: UInt64 = 0
    /// The seed ended early on a correct refusal: corruption at rest was detected and recovery
    /// refused naming it (I4), as an operator would then restore or resync.
    public var endedOnRefusal = false

    /// The violation as the reports print it.
    public var failure: String? { violation?.description }
}

extension SeedResult {
    /// The result of a run on `fileSystem`: its trace hash, operation count and fault counts.
    init(
        fileSystem: SimulatedFileSystem, seed: UInt64, failure: OracleViolation?, crashes: Int, knobs: String, endedOnRefusal: Bool = false
    ) {
        self.init(
            seed: seed, violation: failure, traceHash: fileSystem.traceHash, fileSystemOperations: fileSystem.operationCount,
            crashes: crashes, knobs: knobs, faults: fileSystem.injectedFaultCounts, faultsDrawn: fileSystem.faultsDrawn,
            crashPointsArmed: fileSystem.crashPointsArmed, endedOnRefusal: endedOnRefusal)
    }
}

/// Totals over a sweep of seeds.
public struct SweepSummary: Sendable {
    public var seedsRun = 0
    public var failures: [SeedResult] = []
    public var fileSystemOperations: UInt64 = 0
    public var crashes = 0
    /// Seeds where a workload ended on a correct refusal (corruption at rest detected).
    public var refusals = 0
    public var faults: [String: UInt64] = [:]
    /// Coverage probes hit during the sweep (every probe listed, zero when never hit).
    public var probes: [String: UInt64] = [:]
    public var elapsedSeconds = 0.0

    public init() {}

    public mutating func add(_ result: SeedResult) {
        seedsRun += 1
        fileSystemOperations += result.fileSystemOperations
        crashes += result.crashes
        refusals += result.endedOnRefusal ? 1 : 0
        for (family, count) in result.faults { faults[family, default: 0] += count }
        if result.failure != nil { failures.append(result) }
    }

    /// The summary as a JSON document (`rivellum-sim sweep --json`), for the seeds of `sweep`.
    public func document(of sweep: SweepIdentity) -> SweepSummaryDocument {
        SweepSummaryDocument(
            sweep: sweep, seeds: seedsRun,
            failures: failures.map { .init(seed: $0.seed, failure: $0.failure ?? "", knobs: $0.knobs) },
            correctRefusals: refusals, crashes: crashes, fileSystemOperations: fileSystemOperations, elapsedSeconds: elapsedSeconds,
            faults: faults, probes: probes, probesMissed: SweepSummaryDocument.missed(probes))
    }
}

/// `rivellum-sim sweep --json` (and `--json-out`, and `merge`): which seeds were run, the
/// sweep's totals, each failing seed with its knobs, the faults injected by family and the
/// coverage probes hit (and those missed).
public struct SweepSummaryDocument: Codable, Sendable, Equatable {
    public struct Failure: Codable, Sendable, Equatable {
        public var seed: UInt64
        public var failure: String
        public var knobs: String
    }

    public var sweep: SweepIdentity
    public var seeds: Int
    public var failures: [Failure]
    public var correctRefusals: Int
    public var crashes: Int
    public var fileSystemOperations: UInt64
    /// Wall-clock seconds; for a merge, the longest shard's (shards run side by side).
    public var elapsedSeconds: Double
    public var faults: [String: UInt64]
    public var probes: [String: UInt64]
    public var probesMissed: [String]

    enum CodingKeys: String, CodingKey {
        case sweep, seeds, failures, crashes, faults, probes
        case correctRefusals = "correct_refusals"
        case fileSystemOperations = "file_system_operations"
        case elapsedSeconds = "elapsed_seconds"
        case probesMissed = "probes_missed"
    }

    /// Probes never hit that are not rare: the seed budget stopped reaching a branch.
    static func missed(_ probes: [String: UInt64]) -> [String] {
        probes.keys.sorted().filter { probes[$0]! == 0 && Probe(rawValue: $0)?.isRare != true }
    }

    /// The one-line text summary.
    public var text: String {
        var line = "sweep: \(seeds) seeds, \(failures.count) failures, \(correctRefusals) ended on a correct refusal, \(crashes) crashes, \(fileSystemOperations) file-system operations"
        if elapsedSeconds > 0 {
            line += String(
                format: " (%.0f ops/s, %.1f crash-recover cycles/s, %.0f seeds/min)",
                Double(fileSystemOperations) / elapsedSeconds, Double(crashes) / elapsedSeconds, Double(seeds) * 60 / elapsedSeconds)
        }
        return line
    }

    /// Faults injected by family, one per line.
    public var faultLines: [String] {
        faults.keys.sorted().map { "  \($0): \(faults[$0]!)" }
    }

    /// Probes, one per line, those never hit flagged (and marked when they are rare).
    public var probeLines: [String] {
        probes.keys.sorted().map { name in
            guard probes[name]! == 0 else { return "  \(name): \(probes[name]!)" }
            return Probe(rawValue: name)?.isRare == true ? "  \(name): 0   <- never hit (rare)" : "  \(name): 0   <- never hit"
        }
    }

    /// The text report: the summary line, the faults by family and the probes.
    public var report: String {
        ([text, "faults injected by family:"] + faultLines + ["probes hit:"] + probeLines).joined(separator: "\n")
    }
}

/// The fault families that change data on the media (the others corrupt a read, fail a call or
/// decide what an unsynced write leaves behind).
let corruptionAtRestFamilies: [FaultFamily] = [.bitRotAtRest, .misdirectedWrites]

/// A seed's swarm plan restricted to the workload's `families`, less those a shrinker left out.
/// Corruption at rest stays on in only 40% of the seeds that drew it: once detected it ends the
/// seed (a correct refusal), so at the swarm's usual one in two most seeds would end early and
/// the other families would lose their depth.
func swarmPlan(
    random: inout DeterministicRandom, families: [FaultFamily], excluding excluded: Set<FaultFamily>, rateMin: Double, rateMax: Double
) -> FaultPlan {
    var plan = FaultPlan.swarm(random: &random, onProbability: 0.5, rateMin: rateMin, rateMax: rateMax)
    let keepCorruptionAtRest = random.chance(0.4)
    plan.rates = plan.rates.filter {
        families.contains($0.key) && !excluded.contains($0.key) && (keepCorruptionAtRest || !corruptionAtRestFamilies.contains($0.key))
    }
    return plan
}

/// How many faults that change data on the media were injected so far.
func corruptionAtRestCount(_ fileSystem: SimulatedFileSystem) -> UInt64 {
    let counts = fileSystem.injectedFaultCounts
    return corruptionAtRestFamilies.reduce(0) { $0 + (counts[$1.rawValue] ?? 0) }
}

/// Crashes the simulated machine under a running engine: the machine halts first (so the dying
/// process writes nothing more), the engine is dropped without writing, any pending crash point
/// is cleared, and the post-crash image is built.
func crashMachine(_ fileSystem: SimulatedFileSystem, engine: inout Engine?, _ kind: CrashKind) {
    if !fileSystem.isHalted { fileSystem.halt() }
    engine?.abandon()
    engine = nil
    fileSystem.scheduleCrash(atOperation: nil)
    fileSystem.crash(kind)
}
