/// The global state root of a block: a Merkle root over the lane roots in lane order, bound to
/// the chain id and the height (docs/FORMATS.md).
///
/// ```
/// lane leaf i   = SHA-256(0x10 || i as u32 LE || lane root i)
/// node          = SHA-256(0x11 || left || right); an odd node at the end of a level moves up as is
/// lanes root    = the single node left (the lane leaf itself for one lane)
/// MetaRoot      = SHA-256(0x12 || u32 LE byte length of chain id || chain id UTF-8 ||
///                         height u64 LE || lane count u32 LE || lanes root)
/// ```
/// The lane index inside each leaf binds a lane root to its place; the odd node is carried, not
/// duplicated, so two different lane lists never share a root.
public enum MetaRoot {
    public static func laneLeaf(index: Int, laneRoot: Hash32) -> Hash32 {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(UInt32(index))
        return StateHashing.digest(.metaLeaf, [bytes, laneRoot.bytes])
    }

    static func node(_ left: Hash32, _ right: Hash32) -> Hash32 {
        StateHashing.digest(.metaNode, [left.bytes, right.bytes])
    }

    /// The Merkle root over the lane roots (before binding chain id and height).
    public static func lanesRoot(_ laneRoots: [Hash32]) -> Hash32 {
        precondition(!laneRoots.isEmpty, "a chain has at least one lane")
        var level = laneRoots.enumerated().map { laneLeaf(index: $0.offset, laneRoot: $0.element) }
        // Bounded: each round halves the level.
        while level.count > 1 {
            var next: [Hash32] = []
            next.reserveCapacity((level.count + 1) / 2)
            for index in stride(from: 0, to: level.count, by: 2) {
                next.append(index + 1 < level.count ? node(level[index], level[index + 1]) : level[index])
            }
            level = next
        }
        return level[0]
    }

    /// The MetaRoot of a block at `height`.
    public static func compute(chainID: String, height: UInt64, laneRoots: [Hash32]) -> Hash32 {
        bind(chainID: chainID, height: height, laneCount: laneRoots.count, lanesRoot: lanesRoot(laneRoots))
    }

    static func bind(chainID: String, height: UInt64, laneCount: Int, lanesRoot: Hash32) -> Hash32 {
        var header: [UInt8] = []
        let chain = Array(chainID.utf8)
        header.appendLittleEndian(UInt32(chain.count))
        header += chain
        header.appendLittleEndian(height)
        header.appendLittleEndian(UInt32(laneCount))
        return StateHashing.digest(.metaRoot, [header, lanesRoot.bytes])
    }

    /// A proof that lane `index` has `laneRoot` under a MetaRoot.
    public struct LaneProof: Sendable, Equatable {
        public var laneIndex: Int
        public var laneCount: Int
        /// Siblings from the leaf level up; nil where the node was carried up without a sibling.
        public var siblings: [Hash32?]
    }

    public static func laneProof(laneRoots: [Hash32], index: Int) -> LaneProof {
        precondition(index >= 0 && index < laneRoots.count)
        var level = laneRoots.enumerated().map { laneLeaf(index: $0.offset, laneRoot: $0.element) }
        var position = index
        var siblings: [Hash32?] = []
        while level.count > 1 {
            let siblingIndex = position ^ 1
            siblings.append(siblingIndex < level.count ? level[siblingIndex] : nil)
            var next: [Hash32] = []
            for pair in stride(from: 0, to: level.count, by: 2) {
                next.append(pair + 1 < level.count ? node(level[pair], level[pair + 1]) : level[pair])
            }
            level = next
            position /= 2
        }
        return LaneProof(laneIndex: index, laneCount: laneRoots.count, siblings: siblings)
    }

    /// `true` when `proof` places `laneRoot` at its lane under `metaRoot`.
    public static func verify(
        laneRoot: Hash32, proof: LaneProof, chainID: String, height: UInt64, metaRoot: Hash32
    ) -> Bool {
        guard proof.laneIndex >= 0, proof.laneIndex < proof.laneCount, proof.siblings.count <= 32 else { return false }
        var hash = laneLeaf(index: proof.laneIndex, laneRoot: laneRoot)
        var position = proof.laneIndex
        var levelCount = proof.laneCount
        for sibling in proof.siblings {
            let siblingIndex = position ^ 1
            switch (sibling, siblingIndex < levelCount) {
            case (.some(let sibling), true):
                hash = position & 1 == 0 ? node(hash, sibling) : node(sibling, hash)
            case (.none, false):
                break
            default:
                return false
            }
            position /= 2
            levelCount = (levelCount + 1) / 2
        }
        guard levelCount == 1 else { return false }
        return bind(chainID: chainID, height: height, laneCount: proof.laneCount, lanesRoot: hash) == metaRoot
    }
}
