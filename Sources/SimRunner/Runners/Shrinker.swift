import Engine
import FaultFS
import Foundation

/// A minimal reproduction of a failing seed: the workload, the seed, how long it runs, which
/// fault families are left out, which individual faults and crash points are left out (by
/// number, see `SeedResult.faultsDrawn`), and any deliberate bugs switched on. Written as JSON
/// by `shrink`, replayed by `replay --capsule`.
public struct Capsule: Codable, Sendable, Equatable {
    public var workload: WorkloadKind
    public var seed: UInt64
    /// Rounds (wal) or blocks (engine).
    public var length: Int
    public var excludedFamilies: [String]
    /// Faults drawn but not applied, by number (1 = the first fault the run drew).
    public var suppressedFaults: [UInt64]
    /// Crash points armed but not applied, by number (1 = the first the run armed).
    public var suppressedCrashPoints: [UInt64]
    public var mutations: [String]
    /// The failure this capsule reproduces, for the reader.
    public var failure: String
    /// What the capsule keeps, for the reader: faults and crash points applied.
    public var faultsKept: UInt64
    public var crashPointsKept: UInt64

    enum CodingKeys: String, CodingKey {
        case workload, seed, length, mutations, failure
        case excludedFamilies = "excluded_families"
        case suppressedFaults = "suppressed_faults"
        case suppressedCrashPoints = "suppressed_crash_points"
        case faultsKept = "faults_kept"
        case crashPointsKept = "crash_points_kept"
    }

    public init(
        workload: WorkloadKind, seed: UInt64, length: Int, excludedFamilies: [String] = [], suppressedFaults: [UInt64] = [],
        suppressedCrashPoints: [UInt64] = [], mutations: [String] = [], failure: String = ""
    ) {
        self.workload = workload
        self.seed = seed
        self.length = length
        self.excludedFamilies = excludedFamilies
        self.suppressedFaults = suppressedFaults
        self.suppressedCrashPoints = suppressedCrashPoints
        self.mutations = mutations
        self.failure = failure
        faultsKept = 0
        crashPointsKept = 0
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        workload = try container.decode(WorkloadKind.self, forKey: .workload)
        seed = try container.decode(UInt64.self, forKey: .seed)
        length = try container.decode(Int.self, forKey: .length)
        excludedFamilies = try container.decodeIfPresent([String].self, forKey: .excludedFamilies) ?? []
        suppressedFaults = try container.decodeIfPresent([UInt64].self, forKey: .suppressedFaults) ?? []
        suppressedCrashPoints = try container.decodeIfPresent([UInt64].self, forKey: .suppressedCrashPoints) ?? []
        mutations = try container.decodeIfPresent([String].self, forKey: .mutations) ?? []
        failure = try container.decodeIfPresent(String.self, forKey: .failure) ?? ""
        faultsKept = try container.decodeIfPresent(UInt64.self, forKey: .faultsKept) ?? 0
        crashPointsKept = try container.decodeIfPresent(UInt64.self, forKey: .crashPointsKept) ?? 0
    }

    /// Runs the capsule once.
    public func run(traceSink: (@Sendable (TraceEvent) -> Void)? = nil) -> SeedResult {
        let excluded = Set(excludedFamilies.compactMap(FaultFamily.init(rawValue:)))
        let switchedOn = Set(mutations.compactMap(EngineMutation.init(rawValue:)))
        var controls = SeedControls(mutations: switchedOn, traceSink: traceSink)
        controls.excludedFamilies = excluded
        controls.suppressedFaults = Set(suppressedFaults)
        controls.suppressedCrashPoints = Set(suppressedCrashPoints)
        return workload.run(seed: seed, length: length, controls: controls)
    }

    public func encoded() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    public static func decode(_ text: String) throws -> Capsule {
        try JSONDecoder().decode(Capsule.self, from: Data(text.utf8))
    }
}

/// Minimises a failing seed, keeping only changes after which it still fails:
/// 1. the length (binary search: the workloads draw per round, so a shorter run is a prefix);
/// 2. whole fault families, one at a time;
/// 3. crash points, one at a time (each run re-numbers nothing: a left-out crash point is still
///    drawn, so the others keep their numbers);
/// 4. individual faults, in halving chunks down to one (delta debugging);
/// 3 and 4 again while a pass still removes something.
/// Bounded: `runsMax` runs and `passesMax` passes.
public enum Shrinker {
    public static let runsMax = 400
    /// Passes over crash points and faults.
    public static let passesMax = 4

    public static func shrink(_ start: Capsule, runsMax: Int = runsMax, log: (String) -> Void = { _ in }) -> Capsule? {
        precondition(runsMax >= 1)
        var runs = 0
        var best = start
        guard var bestResult = Optional(start.run()), bestResult.failure != nil else { return nil }
        runs += 1
        /// Runs `trial`; keeps it when it still fails and changed the run (same trace hash:
        /// the change touched nothing the seed drew).
        func attempt(_ trial: Capsule) -> Bool {
            guard runs < runsMax else { return false }
            runs += 1
            let result = trial.run()
            guard result.failure != nil, result.traceHash != bestResult.traceHash || trial.length < best.length else { return false }
            best = trial
            bestResult = result
            return true
        }
        // 1. The length. Bounded: each round halves the interval.
        var low = 1
        var high = start.length
        while low < high && runs < runsMax {
            var trial = best
            trial.length = (low + high) / 2
            if attempt(trial) { high = trial.length } else { low = trial.length + 1 }
        }
        log("length: \(start.length) -> \(best.length)")
        // 2. Fault families.
        for family in FaultFamily.allCases where !best.excludedFamilies.contains(family.rawValue) {
            var trial = best
            trial.excludedFamilies = (best.excludedFamilies + [family.rawValue]).sorted()
            if attempt(trial) { log("left out \(family.rawValue)") }
        }
        // 3 and 4, repeated while a pass still removes something (a removal can make another
        // one possible); bounded by `runsMax` and by `passesMax`.
        var pass = 0
        var removedInPass = true
        while removedInPass && pass < passesMax && runs < runsMax {
            pass += 1
            removedInPass = false
            // 3. Crash points, one at a time.
            var crashPoint: UInt64 = 1
            while crashPoint <= bestResult.crashPointsArmed && runs < runsMax {
                if !best.suppressedCrashPoints.contains(crashPoint) {
                    var trial = best
                    trial.suppressedCrashPoints = (best.suppressedCrashPoints + [crashPoint]).sorted()
                    if attempt(trial) { removedInPass = true }
                }
                crashPoint += 1
            }
            // 4. Faults, in chunks that halve down to single faults.
            var chunk = max(1, bestResult.faultsDrawn / 2)
            while runs < runsMax {
                var first: UInt64 = 1
                while first <= bestResult.faultsDrawn && runs < runsMax {
                    let candidates = (first..<min(first + chunk, bestResult.faultsDrawn + 1)).filter { !best.suppressedFaults.contains($0) }
                    if !candidates.isEmpty {
                        var trial = best
                        trial.suppressedFaults = (best.suppressedFaults + candidates).sorted()
                        if attempt(trial) { removedInPass = true }
                    }
                    first += chunk
                }
                if chunk == 1 { break }
                chunk /= 2
            }
            log("pass \(pass): \(best.suppressedCrashPoints.count) crash point(s) and \(best.suppressedFaults.count) fault(s) left out")
        }
        best.failure = bestResult.failure!
        // Kept: what the final run applied (crash points reached, faults injected).
        best.crashPointsKept = bestResult.faults["crash_point"] ?? 0
        best.faultsKept = bestResult.faults.filter { $0.key != "crash_point" }.values.reduce(0, +)
        log("faults: \(best.faultsKept) applied of \(bestResult.faultsDrawn) drawn; \(best.crashPointsKept) crash point(s) reached; \(runs) runs")
        return best
    }
}
