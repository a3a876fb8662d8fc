import Engine
import FaultFS
import PropertyBased
import Testing

/// An in-memory committed node store, as a lane's RocksDB would hold the nodes.
final class NodeStore {
    var nodes: [TreePosition: TreeNode] = [:]

    func tree() -> SparseMerkleTree {
        SparseMerkleTree(source: { [unowned self] position in self.nodes[position] })
    }

    func commit(_ tree: SparseMerkleTree) {
        for (position, node) in tree.changes {
            if let node { nodes[position] = node } else { nodes[position] = nil }
        }
    }
}

@Suite("Sparse Merkle tree")
struct SparseMerkleTreeTests {
    static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }
    static func value(_ index: Int, _ version: Int) -> [UInt8] { Array("value-\(index)-\(version)".utf8) }

    static func referenceRoot(_ state: [Int: [UInt8]]) -> Hash32 {
        SparseMerkleReference.root(
            of: state.map { (path: StateHashing.keyPath(key($0.key)), valueHash: StateHashing.valueHash($0.value)) })
    }

    @Test func matchesTheNaiveReferenceOnRandomPutDeleteSequences() async {
        await propertyCheck(
            count: 60, input: Gen.int(in: 0...39).array(of: 1...120), Gen.uint64(), Gen.int(in: 1...10)
        ) { operations, seed, blockSize in
            var random = DeterministicRandom(seed: seed)
            let store = NodeStore()
            var tree = store.tree()
            var state: [Int: [UInt8]] = [:]
            for (step, index) in operations.enumerated() {
                let path = StateHashing.keyPath(Self.key(index))
                if random.chance(0.3) {
                    state[index] = nil
                    try tree.update(path: path, valueHash: nil)
                } else {
                    let value = Self.value(index, step)
                    state[index] = value
                    try tree.update(path: path, valueHash: StateHashing.valueHash(value))
                }
                #expect(try tree.rootHash() == Self.referenceRoot(state), "after step \(step)")
                if step % blockSize == blockSize - 1 {
                    // A block boundary: the changes go to the store and a new tree reads them.
                    store.commit(tree)
                    tree = store.tree()
                }
            }
            store.commit(tree)
            // Only leaves and branches are stored, one leaf per key.
            let leaves = store.nodes.values.filter { if case .leaf = $0 { true } else { false } }
            #expect(leaves.count == state.count)
            // The root is canonical: inserting the final state in another order gives the same.
            let fresh = NodeStore()
            var rebuilt = fresh.tree()
            for index in state.keys.sorted(by: >) {
                try rebuilt.update(path: StateHashing.keyPath(Self.key(index)), valueHash: StateHashing.valueHash(state[index]!))
            }
            #expect(try rebuilt.rootHash() == store.tree().rootHash())
        }
    }

    /// The changes come out in storage-key order, each once, whatever the hash table's order:
    /// two trees given the same updates list them identically.
    @Test func changesComeInStorageKeyOrder() throws {
        var listings: [[(key: [UInt8], node: TreeNode?)]] = []
        for _ in 0..<2 {
            let store = NodeStore()
            var first = store.tree()
            for index in 0..<30 { try first.update(path: StateHashing.keyPath(Self.key(index)), valueHash: StateHashing.valueHash(Self.value(index, 0))) }
            store.commit(first)
            var tree = store.tree()
            for index in stride(from: 0, to: 30, by: 3) { try tree.update(path: StateHashing.keyPath(Self.key(index)), valueHash: nil) }
            for index in 30..<40 { try tree.update(path: StateHashing.keyPath(Self.key(index)), valueHash: StateHashing.valueHash(Self.value(index, 1))) }
            let listed = tree.changesInStorageOrder
            #expect(listed.count == tree.changes.count)
            #expect(zip(listed, listed.dropFirst()).allSatisfy { $0.key.lexicographicallyPrecedes($1.key) })
            #expect(listed.contains { $0.node == nil }, "deletions are listed too")
            listings.append(listed)
        }
        #expect(listings[0].map(\.key) == listings[1].map(\.key))
        #expect(listings[0].map(\.node) == listings[1].map(\.node))
    }

    @Test func treeStaysShallowWithoutChains() throws {
        let store = NodeStore()
        var tree = store.tree()
        for index in 0..<2_000 {
            try tree.update(path: StateHashing.keyPath(Self.key(index)), valueHash: StateHashing.valueHash(Self.value(index, 0)))
        }
        store.commit(tree)
        let depthMax = store.nodes.keys.map(\.depth).max()!
        #expect(depthMax < 40, "2000 random paths need about 11 levels, got \(depthMax)")
        #expect(store.nodes.count < 2_000 * 3)
    }

    @Test func proofsOfInclusionAndExclusionVerifyAndTamperedOnesFail() throws {
        let store = NodeStore()
        var tree = store.tree()
        for index in 0..<50 {
            try tree.update(path: StateHashing.keyPath(Self.key(index)), valueHash: StateHashing.valueHash(Self.value(index, 1)))
        }
        let root = try tree.rootHash()
        for index in 0..<80 {
            let key = Self.key(index)
            let proof = try tree.proof(path: StateHashing.keyPath(key))
            let value: [UInt8]? = index < 50 ? Self.value(index, 1) : nil
            #expect(proof.verify(key: key, value: value, root: root), "key \(index)")
            // Wrong value, wrong presence, wrong root.
            #expect(!proof.verify(key: key, value: Self.value(index, 2), root: root))
            #expect(!proof.verify(key: key, value: value == nil ? Self.value(index, 1) : nil, root: root))
            #expect(!proof.verify(key: key, value: value, root: StateHashing.emptyTree))
            // A flipped sibling.
            if !proof.siblings.isEmpty {
                var tampered = proof
                tampered.siblings[tampered.siblings.count / 2] = StateHashing.sha256([1, 2, 3])
                #expect(!tampered.verify(key: key, value: value, root: root))
            }
            // An inclusion proof for one key does not prove another key holds the value.
            if value != nil { #expect(!proof.verify(key: Self.key(index + 1_000), value: value, root: root)) }
        }
    }

    @Test func otherLeafExclusionMustShareThePathPrefix() throws {
        let store = NodeStore()
        var tree = store.tree()
        try tree.update(path: StateHashing.keyPath(Self.key(1)), valueHash: StateHashing.valueHash([1]))
        let root = try tree.rootHash()
        let proof = try tree.proof(path: StateHashing.keyPath(Self.key(2)))
        #expect(proof.verify(key: Self.key(2), value: nil, root: root))
        guard case .otherLeaf = proof.terminal else {
            Issue.record("a one-leaf tree proves exclusion with that leaf")
            return
        }
        // Claiming the same leaf one level down, where its path disagrees, must fail.
        var forged = proof
        forged.siblings = [StateHashing.emptyTree]
        let path = StateHashing.keyPath(Self.key(2))
        let otherPath = StateHashing.keyPath(Self.key(1))
        if path.bit(0) != otherPath.bit(0) { #expect(forged.root(for: path) == nil) }
    }

    /// Test vectors published in docs/FORMATS.md, computed independently with Python's hashlib
    /// from the definitions there.
    @Test func testVectors() throws {
        #expect(StateHashing.emptyTree.hex == "dbc1b4c900ffe48d575b5da5c638040125f65db0fe3e24494b76ea986457d986")
        let store = NodeStore()
        var tree = store.tree()
        try tree.update(path: StateHashing.keyPath(Array("alice".utf8)), valueHash: StateHashing.valueHash(Array("100".utf8)))
        #expect(try tree.rootHash().hex == SparseMerkleTreeTests.vectorOneKey)
        try tree.update(path: StateHashing.keyPath(Array("bob".utf8)), valueHash: StateHashing.valueHash(Array("250".utf8)))
        #expect(try tree.rootHash().hex == SparseMerkleTreeTests.vectorTwoKeys)
        let laneRoots = [try tree.rootHash(), StateHashing.emptyTree, StateHashing.emptyTree, StateHashing.emptyTree]
        #expect(MetaRoot.compute(chainID: "rivellum-test", height: 1, laneRoots: laneRoots).hex == SparseMerkleTreeTests.vectorMetaRoot)
    }

    static let vectorOneKey = "e88595db6e2373140c77336108e543dd79e1c6420dff08568b120417c8af88b5"
    static let vectorTwoKeys = "5660d49562fc9ec3f328679dd2d7d810ac22aa21125d7965d1b2337c14652058"
    static let vectorMetaRoot = "288c3fcc546ca554fa212f1fa8719e5d199b7e0fa32a99ce0ef9f74602e8e872"
}

@Suite("MetaRoot")
struct MetaRootTests {
    @Test func laneProofsVerifyForEveryLaneCountAndIndex() {
        for laneCount in 1...9 {
            let laneRoots = (0..<laneCount).map { StateHashing.sha256([UInt8($0)]) }
            let metaRoot = MetaRoot.compute(chainID: "c", height: 7, laneRoots: laneRoots)
            for index in 0..<laneCount {
                let proof = MetaRoot.laneProof(laneRoots: laneRoots, index: index)
                #expect(MetaRoot.verify(laneRoot: laneRoots[index], proof: proof, chainID: "c", height: 7, metaRoot: metaRoot))
                if laneCount > 1 {
                    let other = laneRoots[(index + 1) % laneCount]
                    #expect(!MetaRoot.verify(laneRoot: other, proof: proof, chainID: "c", height: 7, metaRoot: metaRoot))
                }
                #expect(!MetaRoot.verify(laneRoot: laneRoots[index], proof: proof, chainID: "c", height: 8, metaRoot: metaRoot))
                #expect(!MetaRoot.verify(laneRoot: laneRoots[index], proof: proof, chainID: "d", height: 7, metaRoot: metaRoot))
            }
        }
    }

    @Test func bindsChainHeightOrderAndCount() {
        let roots = (0..<4).map { StateHashing.sha256([UInt8($0)]) }
        let base = MetaRoot.compute(chainID: "c", height: 1, laneRoots: roots)
        #expect(base != MetaRoot.compute(chainID: "c", height: 2, laneRoots: roots))
        #expect(base != MetaRoot.compute(chainID: "x", height: 1, laneRoots: roots))
        #expect(base != MetaRoot.compute(chainID: "c", height: 1, laneRoots: roots.reversed()))
        #expect(base != MetaRoot.compute(chainID: "c", height: 1, laneRoots: roots + [StateHashing.emptyTree]))
    }
}
