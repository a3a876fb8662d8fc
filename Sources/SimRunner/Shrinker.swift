import Engine
import FaultFS
import Foundation

/// A minimal reproduction of a failing seed: the workload, the seed, how long it runs, which
/// fault families are left out, and any deliberate bugs switched on. Written as JSON by `shrink`,
/// replayed by `replay --capsule`.
public struct Capsule: Codable, Sendable, Equatable {
    public var workload: String
    public var seed: UInt64
    /// Rounds (wal) or blocks (engine).
    public var length: Int
    public var excludedFamilies: [String]
    public var mutations: [String]
    /// The failure this capsule reproduces, for the reader.
    public var failure: String

    enum CodingKeys: String, CodingKey {
        case workload, seed, length, mutations, failure
        case excludedFamilies = "excluded_families"
    }

    public init(workload: String, seed: UInt64, length: Int, excludedFamilies: [String], mutations: [String], failure: String) {
        self.workload = workload
        self.seed = seed
        self.length = length
        self.excludedFamilies = excludedFamilies
        self.mutations = mutations
        self.failure = failure
    }

    /// Runs the capsule once.
    public func run(traceSink: (@Sendable (TraceEvent) -> Void)? = nil) -> SeedResult {
        let excluded = Set(excludedFamilies.compactMap(FaultFamily.init(rawValue:)))
        let switchedOn = Set(mutations.compactMap(EngineMutation.init(rawValue:)))
        switch workload {
        case "engine":
            var run = EngineSwarmWorkload(seed: seed, blocks: length)
            run.excludedFamilies = excluded
            run.mutations = switchedOn
            run.traceSink = traceSink
            return run.run()
        default:
            var run = WALSwarmWorkload(seed: seed, rounds: length)
            run.excludedFamilies = excluded
            run.mutations = switchedOn
            run.traceSink = traceSink
            return run.run()
        }
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

/// Minimises a failing seed: first the shortest run that still fails (binary search over the
/// length), then every fault family that can be left out while it still fails. Bounded: about
/// log2(length) + families runs.
public enum Shrinker {
    public static func shrink(_ start: Capsule, log: (String) -> Void = { _ in }) -> Capsule? {
        let first = start.run()
        guard let firstFailure = first.failure else { return nil }
        var best = start
        best.failure = firstFailure
        var bestHash = first.traceHash
        // 1. The length: the workloads draw per round, so a shorter run is a prefix of a longer.
        var low = 1
        var high = start.length
        // Bounded: each round halves the interval.
        while low < high {
            let middle = (low + high) / 2
            var trial = best
            trial.length = middle
            let result = trial.run()
            if let failure = result.failure {
                high = middle
                best = trial
                best.failure = failure
                bestHash = result.traceHash
            } else {
                low = middle + 1
            }
        }
        log("length: \(start.length) -> \(best.length)")
        // 2. Fault families, one at a time. A family the seed's plan never had changes nothing
        // (same trace hash) and is not recorded.
        for family in FaultFamily.allCases where !best.excludedFamilies.contains(family.rawValue) {
            var trial = best
            trial.excludedFamilies = (best.excludedFamilies + [family.rawValue]).sorted()
            let result = trial.run()
            if let failure = result.failure, result.traceHash != bestHash {
                best = trial
                best.failure = failure
                bestHash = result.traceHash
                log("left out \(family.rawValue)")
            }
        }
        return best
    }
}
