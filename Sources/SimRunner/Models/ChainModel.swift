import Engine
import FaultFS

/// An independent model of the chain: the state after every height, and the lane roots and
/// MetaRoot computed from scratch with the reference tree code (`SparseMerkleReference`), never
/// with the engine's own incremental tree. The simulator's oracles and the engine's tests
/// compare the engine against it.
public struct ChainModel: Sendable {
    public let chainID: String
    public let laneCount: Int
    /// `states[h]` is the state after height h (`states[0]` is empty).
    public var states: [[[UInt8]: [UInt8]]] = [[:]]

    public init(chainID: String, laneCount: Int) {
        precondition(EngineConfiguration.laneCountRange.contains(laneCount), "lane count out of range")
        self.chainID = chainID
        self.laneCount = laneCount
    }

    /// The newest height the model holds.
    public var height: Int { states.count - 1 }

    /// Appends the state after `operations` (a delete is a nil value).
    public mutating func apply(_ operations: [BlockOperation]) {
        var state = states.last!
        for operation in operations { state[operation.key] = operation.value }
        states.append(state)
    }

    /// Forgets every height above `height` (after a recovery that came back there).
    public mutating func truncate(toHeight height: Int) {
        precondition(height >= 0 && height <= self.height, "truncating to a height the model does not hold")
        states.removeLast(self.height - height)
    }

    public func laneRoots(at height: Int) -> [Hash32] {
        var leaves: [[(path: Hash32, valueHash: Hash32)]] = Array(repeating: [], count: laneCount)
        for (key, value) in states[height] {
            leaves[LaneRouting.lane(of: key, laneCount: laneCount)].append((StateHashing.keyPath(key), StateHashing.valueHash(value)))
        }
        return leaves.map { SparseMerkleReference.root(of: $0) }
    }

    public func metaRoot(at height: Int) -> Hash32 {
        MetaRoot.compute(chainID: chainID, height: UInt64(height), laneRoots: laneRoots(at: height))
    }
}

/// Seeded blocks of puts and deletes: the one generator the simulator's workloads and the
/// engine's tests draw from. Per operation it draws, in this order: the hot-key coin (when
/// `skewed`), the key, the delete coin, the large-value coin (when `largeValues` is set), the
/// value's length, then its bytes — so a configuration always gives the same blocks for a seed.
public struct BlockGenerator: Sendable {
    /// A rarer, larger value: drawn with `chance`, `bytes` long.
    public struct LargeValues: Sendable {
        public var chance: Double
        public var bytes: ClosedRange<Int>

        public init(chance: Double, bytes: ClosedRange<Int>) {
            self.chance = chance
            self.bytes = bytes
        }
    }

    public var keyPrefix: String
    public var keySpace: Int
    public var operationsPerBlock: ClosedRange<Int>
    /// Half the operations hit the first tenth of the key space.
    public var skewed: Bool
    public var deleteChance: Double
    public var valueBytes: ClosedRange<Int>
    public var largeValues: LargeValues?

    public init(
        keyPrefix: String = "k", keySpace: Int, operationsPerBlock: ClosedRange<Int>, skewed: Bool = false, deleteChance: Double,
        valueBytes: ClosedRange<Int>, largeValues: LargeValues? = nil
    ) {
        precondition(keySpace > 0 && operationsPerBlock.lowerBound > 0 && valueBytes.lowerBound >= 0)
        self.keyPrefix = keyPrefix
        self.keySpace = keySpace
        self.operationsPerBlock = operationsPerBlock
        self.skewed = skewed
        self.deleteChance = deleteChance
        self.valueBytes = valueBytes
        self.largeValues = largeValues
    }

    public func block(using random: inout DeterministicRandom) -> [BlockOperation] {
        (0..<random.int(in: operationsPerBlock)).map { _ in operation(using: &random) }
    }

    private func operation(using random: inout DeterministicRandom) -> BlockOperation {
        let index =
            skewed && random.chance(0.5) ? random.int(in: 0..<max(1, keySpace / 10)) : random.int(in: 0..<keySpace)
        let key = Array("\(keyPrefix)\(index)".utf8)
        if random.chance(deleteChance) { return BlockOperation(key: key, value: nil) }
        let length =
            if let largeValues, random.chance(largeValues.chance) { random.int(in: largeValues.bytes) } else { random.int(in: valueBytes) }
        return BlockOperation(key: key, value: (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) })
    }
}
