/// One shard of a sweep: of the sweep's seeds `first ..< first + count`, the ones at positions
/// `index, index + shards, index + 2·shards, …` (interleaved, so that every shard gets a like
/// mix of slow and fast seeds). `0/1` is the whole sweep. Written `K/N` with `0 ≤ K < N`, as a
/// Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` numbers its pods.
public struct SweepShard: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public static let countMax = 100_000
    public static let whole = SweepShard(index: 0, count: 1)

    public let index: Int
    public let count: Int

    public init(index: Int, count: Int) {
        precondition((1...Self.countMax).contains(count) && (0..<count).contains(index), "shard \(index)/\(count)")
        self.index = index
        self.count = count
    }

    /// Parses `K/N`; nil unless `0 ≤ K < N ≤ countMax`.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]),
            (1...Self.countMax).contains(count), (0..<count).contains(index)
        else { return nil }
        self.init(index: index, count: count)
    }

    public var description: String { "\(index)/\(count)" }

    /// This shard's seeds of the sweep `firstSeed ..< firstSeed + seedCount`, in order.
    public func seeds(firstSeed: UInt64, seedCount: Int) -> StrideTo<UInt64> {
        precondition(seedCount >= 0 && firstSeed <= UInt64.max - UInt64(seedCount), "a seed range inside UInt64")
        return stride(from: firstSeed + UInt64(index), to: firstSeed + UInt64(seedCount), by: count)
    }

    /// How many of a sweep's `seedCount` seeds fall to this shard.
    public func seedCount(of seedCount: Int) -> Int {
        seedCount > index ? (seedCount - index + count - 1) / count : 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let shard = SweepShard(parsing: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "a shard is K/N with 0 <= K < N, not \(text)")
        }
        self = shard
    }
}

/// What a sweep ran: the same identity (less the shard) on every shard of one sweep is what lets
/// `merge` add them up, and what tells shards of different sweeps apart.
public struct SweepIdentity: Sendable, Equatable, Codable {
    public var workload: String
    public var firstSeed: UInt64
    /// Seeds in the whole sweep (every shard's together).
    public var seedCount: Int
    public var shard: SweepShard
    public var checkDeterminism: Bool
    public var mutations: [String]

    public init(workload: String, firstSeed: UInt64, seedCount: Int, shard: SweepShard, checkDeterminism: Bool, mutations: [String]) {
        self.workload = workload
        self.firstSeed = firstSeed
        self.seedCount = seedCount
        self.shard = shard
        self.checkDeterminism = checkDeterminism
        self.mutations = mutations.sorted()
    }

    enum CodingKeys: String, CodingKey {
        case workload, shard, mutations
        case firstSeed = "first_seed"
        case seedCount = "seed_count"
        case checkDeterminism = "check_determinism"
    }

    /// How many seeds this shard runs.
    public var shardSeedCount: Int { shard.seedCount(of: seedCount) }
}

/// Why shard results do not add up to one sweep.
public struct SweepMergeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
}

extension SweepSummaryDocument {
    /// The summary of the whole sweep from one result per shard, in any order: totals, fault and
    /// probe counts added, failures together (by seed), probes missed found again over the sum.
    /// Refuses results of different sweeps, a shard missing or given twice, and a shard whose
    /// seed count is not its share, naming them.
    public static func merge(_ shards: [SweepSummaryDocument]) throws(SweepMergeError) -> SweepSummaryDocument {
        guard let first = shards.first else { throw SweepMergeError(description: "no shard results to merge") }
        var whole = first.sweep
        whole.shard = .whole
        var seen: [Int: Int] = [:]
        for (position, result) in shards.enumerated() {
            var identity = result.sweep
            identity.shard = .whole
            guard identity == whole, result.sweep.shard.count == first.sweep.shard.count else {
                throw SweepMergeError(description: "result \(position + 1) is of another sweep (\(result.sweep)) than result 1 (\(first.sweep))")
            }
            guard result.seeds == result.sweep.shardSeedCount else {
                throw SweepMergeError(description: "shard \(result.sweep.shard) ran \(result.seeds) seeds, not its \(result.sweep.shardSeedCount)")
            }
            if let earlier = seen.updateValue(position, forKey: result.sweep.shard.index) {
                throw SweepMergeError(description: "shard \(result.sweep.shard) is given twice (results \(earlier + 1) and \(position + 1))")
            }
        }
        let missing = (0..<first.sweep.shard.count).filter { seen[$0] == nil }
        guard missing.isEmpty else {
            let names = missing.prefix(20).map { "\($0)/\(first.sweep.shard.count)" }.joined(separator: ", ")
            throw SweepMergeError(description: "\(missing.count) shard(s) missing: \(names)\(missing.count > 20 ? ", …" : "")")
        }
        return sum(shards, as: whole)
    }

    private static func sum(_ shards: [SweepSummaryDocument], as sweep: SweepIdentity) -> SweepSummaryDocument {
        var merged = SweepSummaryDocument(
            sweep: sweep, seeds: 0, failures: [], correctRefusals: 0, crashes: 0, fileSystemOperations: 0, elapsedSeconds: 0, faults: [:],
            probes: [:], probesMissed: [])
        for shard in shards {
            merged.seeds += shard.seeds
            merged.failures += shard.failures
            merged.correctRefusals += shard.correctRefusals
            merged.crashes += shard.crashes
            merged.fileSystemOperations += shard.fileSystemOperations
            merged.elapsedSeconds = max(merged.elapsedSeconds, shard.elapsedSeconds)
            merged.faults.merge(shard.faults, uniquingKeysWith: +)
            merged.probes.merge(shard.probes, uniquingKeysWith: +)
        }
        merged.failures.sort { $0.seed < $1.seed }
        merged.probesMissed = missed(merged.probes)
        return merged
    }
}
