import Engine
import FaultFS
import Foundation

/// The outcome of one simulated seed.
public struct SeedResult: Sendable {
    public var seed: UInt64
    /// `nil` when every invariant held; otherwise what broke, with expected and actual values.
    public var failure: String?
    public var traceHash: UInt64
    public var fileSystemOperations: UInt64
    public var crashes: Int
    public var knobs: String
    /// Faults injected, by family.
    public var faults: [String: UInt64] = [:]
    /// Faults drawn and crash points armed, numbered from 1 (what a shrinker can leave out).
    public var faultsDrawn: UInt64 = 0
    public var crashPointsArmed: UInt64 = 0
}

extension SeedResult {
    /// The result of a run on `fileSystem`: its trace hash, operation count and fault counts.
    init(fileSystem: SimulatedFileSystem, seed: UInt64, failure: String?, crashes: Int, knobs: String) {
        self.init(
            seed: seed, failure: failure, traceHash: fileSystem.traceHash, fileSystemOperations: fileSystem.operationCount,
            crashes: crashes, knobs: knobs, faults: fileSystem.injectedFaultCounts, faultsDrawn: fileSystem.faultsDrawn,
            crashPointsArmed: fileSystem.crashPointsArmed)
    }
}

/// Totals over a sweep of seeds.
public struct SweepSummary: Sendable {
    public var seedsRun = 0
    public var failures: [SeedResult] = []
    public var fileSystemOperations: UInt64 = 0
    public var crashes = 0
    public var faults: [String: UInt64] = [:]
    /// Coverage probes hit during the sweep (every probe listed, zero when never hit).
    public var probes: [String: UInt64] = [:]
    public var elapsedSeconds = 0.0

    public init() {}

    public mutating func add(_ result: SeedResult) {
        seedsRun += 1
        fileSystemOperations += result.fileSystemOperations
        crashes += result.crashes
        for (family, count) in result.faults { faults[family, default: 0] += count }
        if result.failure != nil { failures.append(result) }
    }

    /// The one-line text summary.
    public var text: String {
        var line = "sweep: \(seedsRun) seeds, \(failures.count) failures, \(crashes) crashes, \(fileSystemOperations) file-system operations"
        if elapsedSeconds > 0 {
            line += String(
                format: " (%.0f ops/s, %.1f crash-recover cycles/s, %.0f seeds/min)",
                Double(fileSystemOperations) / elapsedSeconds, Double(crashes) / elapsedSeconds, Double(seedsRun) * 60 / elapsedSeconds)
        }
        return line
    }

    /// Faults injected by family, one per line.
    public var faultLines: [String] {
        faults.keys.sorted().map { "  \($0): \(faults[$0]!)" }
    }

    /// Probes, one per line, those never hit flagged.
    public var probeLines: [String] {
        probes.keys.sorted().map { probes[$0]! == 0 ? "  \($0): 0   <- never hit" : "  \($0): \(probes[$0]!)" }
    }

    /// The summary as one JSON object.
    public var json: String {
        let faultFields = faults.keys.sorted().map { "\(jsonString($0)):\(faults[$0]!)" }.joined(separator: ",")
        let failureFields = failures.map { "{\"seed\":\($0.seed),\"failure\":\(jsonString($0.failure ?? "")),\"knobs\":\(jsonString($0.knobs))}" }
            .joined(separator: ",")
        return "{\"seeds\":\(seedsRun),\"failures\":[\(failureFields)],\"crashes\":\(crashes),"
            + "\"file_system_operations\":\(fileSystemOperations),\"elapsed_seconds\":\(elapsedSeconds),\"faults\":{\(faultFields)},"
            + "\"probes\":{\(probes.keys.sorted().map { "\(jsonString($0)):\(probes[$0]!)" }.joined(separator: ","))}}"
    }
}

/// The fault families that change data on the media (the others corrupt a read, fail a call or
/// decide what an unsynced write leaves behind).
let corruptionAtRestFamilies: [FaultFamily] = [.bitRotAtRest, .misdirectedWrites]

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
