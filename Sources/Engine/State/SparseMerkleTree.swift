/// A place in a lane's sparse Merkle tree: a depth (0 = root) and the path prefix of that many
/// bits (later bits zero).
public struct TreePosition: Hashable, Sendable {
    public var depth: Int
    public var prefix: Hash32

    public init(depth: Int, path: Hash32) {
        precondition(depth >= 0 && depth <= 256, "depth out of range: \(depth)")
        self.depth = depth
        self.prefix = path.prefix(depth)
    }

    public static let root = TreePosition(depth: 0, path: .zero)

    /// The child on side `right` (the path bit at this depth).
    public func child(right: Bool) -> TreePosition {
        precondition(depth < 256, "a depth-256 position has no children")
        var child = TreePosition(depth: depth + 1, path: prefix)
        if right { child.prefix = child.prefix.settingBit(depth) }
        return child
    }

    /// The storage key: depth (2 bytes, big-endian) then the 32 prefix bytes.
    public var encoded: [UInt8] {
        [UInt8(depth >> 8), UInt8(depth & 0xFF)] + prefix.bytes
    }
}

extension Hash32 {
    /// This hash with bit `index` set.
    func settingBit(_ index: Int) -> Hash32 {
        precondition(index >= 0 && index < 256)
        let mask = UInt64(1) << UInt64(63 - (index & 63))
        var copy = self
        switch index >> 6 {
        case 0: copy.words.0 |= mask
        case 1: copy.words.1 |= mask
        case 2: copy.words.2 |= mask
        default: copy.words.3 |= mask
        }
        return copy
    }
}

/// A stored node of the tree. Only leaves and branches exist: a subtree holding one key is that
/// key's leaf, placed as high as it can go, so no chains of single-child nodes are stored.
public enum TreeNode: Equatable, Sendable {
    case leaf(path: Hash32, valueHash: Hash32)
    /// A branch keeps its children's hashes, so rehashing a path reads no siblings' subtrees.
    case branch(left: Hash32, right: Hash32)

    public var hash: Hash32 {
        switch self {
        case .leaf(let path, let valueHash): StateHashing.leaf(path: path, valueHash: valueHash)
        case .branch(let left, let right): StateHashing.branch(left: left, right: right)
        }
    }

    /// 65 bytes: a tag (0 leaf, 1 branch) and two hashes.
    public var encoded: [UInt8] {
        switch self {
        case .leaf(let path, let valueHash): [0] + path.bytes + valueHash.bytes
        case .branch(let left, let right): [1] + left.bytes + right.bytes
        }
    }

    public init?(encoded bytes: [UInt8]) {
        guard bytes.count == 65 else { return nil }
        let first = Hash32(bytes: bytes[1..<33])
        let second = Hash32(bytes: bytes[33..<65])
        switch bytes[0] {
        case 0: self = .leaf(path: first, valueHash: second)
        case 1: self = .branch(left: first, right: second)
        default: return nil
        }
    }
}

/// A proof that a key path holds a value, or holds none, under a lane root.
public struct SparseMerkleProof: Sendable, Equatable {
    public enum Terminal: Sendable, Equatable {
        /// The key's own leaf: inclusion of the value whose hash this is.
        case included(valueHash: Hash32)
        /// An empty subtree where the key would be: exclusion.
        case empty
        /// Another key's leaf where this key's path ends: exclusion.
        case otherLeaf(path: Hash32, valueHash: Hash32)
    }

    /// Sibling hashes from the root down: `siblings[d]` is the sibling at depth d + 1.
    public var siblings: [Hash32]
    public var terminal: Terminal

    /// Recomputes the root this proof commits `path` to, or nil if the proof is malformed.
    public func root(for path: Hash32) -> Hash32? {
        guard siblings.count <= 256 else { return nil }
        var hash: Hash32
        switch terminal {
        case .included(let valueHash):
            hash = StateHashing.leaf(path: path, valueHash: valueHash)
        case .empty:
            hash = StateHashing.emptyTree
        case .otherLeaf(let otherPath, let valueHash):
            // The other leaf must sit on this path's prefix, or it proves nothing about it.
            guard otherPath != path, otherPath.prefix(siblings.count) == path.prefix(siblings.count) else { return nil }
            hash = StateHashing.leaf(path: otherPath, valueHash: valueHash)
        }
        for depth in stride(from: siblings.count - 1, through: 0, by: -1) {
            hash = path.bit(depth)
                ? StateHashing.branch(left: siblings[depth], right: hash)
                : StateHashing.branch(left: hash, right: siblings[depth])
        }
        return hash
    }

    /// `true` when this proof shows `key` holding `value` (or, with `value == nil`, holding
    /// nothing) under `root`.
    public func verify(key: [UInt8], value: [UInt8]?, root: Hash32) -> Bool {
        let path = StateHashing.keyPath(key)
        switch (terminal, value) {
        case (.included(let valueHash), .some(let value)):
            guard valueHash == StateHashing.valueHash(value) else { return false }
        case (.empty, .none), (.otherLeaf, .none):
            break
        default:
            return false
        }
        return self.root(for: path) == root
    }
}

/// A lane's sparse Merkle tree over 256-bit key paths, read from a node source and updated in an
/// in-memory overlay that the caller writes out (in the same batch as the values).
///
/// The root is canonical: it depends only on the set of (path, value hash) pairs, not on the
/// order of updates. Each update costs O(depth) hashes and node reads; depth is about
/// log2(keys) for SHA-256 paths.
public struct SparseMerkleTree {
    /// Reads a committed node; nil where there is none.
    public typealias NodeSource = (TreePosition) throws -> TreeNode?

    private let source: NodeSource
    /// Nodes changed since the tree was opened: `.some(nil)` marks a deleted node.
    /// A dictionary: its iteration order changes from one instance to the next (Swift seeds
    /// each hash table), so anything that writes the changes uses `changesInStorageOrder`.
    public private(set) var changes: [TreePosition: TreeNode?] = [:]

    /// The changed nodes by storage key (`TreePosition.encoded`), ascending: an order that is a
    /// function of the changes alone. A RocksDB batch assigns one sequence number per entry in
    /// the order given, and those numbers reach the SST files and the MANIFEST, so a batch built
    /// in hash-table order would make a simulated run depend on heap addresses.
    public var changesInStorageOrder: [(key: [UInt8], node: TreeNode?)] {
        changes.map { (key: $0.key.encoded, node: $0.value) }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
    }

    public init(source: @escaping NodeSource) {
        self.source = source
    }

    public func node(at position: TreePosition) throws -> TreeNode? {
        if let changed = changes[position] { return changed }
        return try source(position)
    }

    private func hash(at position: TreePosition) throws -> Hash32 {
        try node(at: position)?.hash ?? StateHashing.emptyTree
    }

    public func rootHash() throws -> Hash32 {
        try hash(at: .root)
    }

    /// Sets the value hash at `path` (nil deletes it).
    public mutating func update(path: Hash32, valueHash: Hash32?) throws {
        var branches: [TreePosition] = []
        var position = TreePosition.root
        // Bounded: each round goes one level deeper, at most 256 levels.
        descent: while true {
            switch try node(at: position) {
            case .none:
                guard let valueHash else { return }
                changes[position] = .leaf(path: path, valueHash: valueHash)
                break descent
            case .leaf(let existingPath, let existingValueHash):
                if existingPath == path {
                    guard let valueHash else {
                        changes[position] = .some(nil)
                        try collapse(branches)
                        return
                    }
                    changes[position] = .leaf(path: path, valueHash: valueHash)
                    break descent
                }
                guard let valueHash else { return }
                // Split: branches down to the first differing bit, the two leaves below it.
                let differing = path.firstDifferingBit(existingPath)!
                precondition(differing >= position.depth, "a leaf sits off its own path")
                for depth in position.depth...differing {
                    branches.append(TreePosition(depth: depth, path: path))
                }
                changes[TreePosition(depth: differing + 1, path: path)] = .leaf(path: path, valueHash: valueHash)
                changes[TreePosition(depth: differing + 1, path: existingPath)] =
                    .leaf(path: existingPath, valueHash: existingValueHash)
                break descent
            case .branch:
                branches.append(position)
                position = position.child(right: path.bit(position.depth))
            }
        }
        try rehash(branches)
    }

    /// Recomputes the branches on a path, deepest first.
    private mutating func rehash(_ branches: [TreePosition]) throws {
        for position in branches.reversed() {
            changes[position] = .branch(
                left: try hash(at: position.child(right: false)), right: try hash(at: position.child(right: true)))
        }
    }

    /// After a leaf was removed below `branches`: a branch left with one leaf child and an empty
    /// side becomes that leaf; the first branch that keeps two subtrees, and all above it, are
    /// rehashed.
    private mutating func collapse(_ branches: [TreePosition]) throws {
        var remaining = branches
        while let position = remaining.last {
            let left = try node(at: position.child(right: false))
            let right = try node(at: position.child(right: true))
            switch (left, right) {
            case (.leaf(let path, let valueHash), .none):
                changes[position.child(right: false)] = .some(nil)
                changes[position] = .leaf(path: path, valueHash: valueHash)
            case (.none, .leaf(let path, let valueHash)):
                changes[position.child(right: true)] = .some(nil)
                changes[position] = .leaf(path: path, valueHash: valueHash)
            case (.none, .none):
                preconditionFailure("a branch held fewer than two keys")
            default:
                try rehash(remaining)
                return
            }
            remaining.removeLast()
        }
    }

    /// A proof for `path` against `rootHash()`.
    public func proof(path: Hash32) throws -> SparseMerkleProof {
        var siblings: [Hash32] = []
        var position = TreePosition.root
        // Bounded: at most 256 levels.
        while true {
            switch try node(at: position) {
            case .none:
                return SparseMerkleProof(siblings: siblings, terminal: .empty)
            case .leaf(let leafPath, let valueHash):
                if leafPath == path { return SparseMerkleProof(siblings: siblings, terminal: .included(valueHash: valueHash)) }
                return SparseMerkleProof(siblings: siblings, terminal: .otherLeaf(path: leafPath, valueHash: valueHash))
            case .branch(let left, let right):
                let goRight = path.bit(position.depth)
                siblings.append(goRight ? left : right)
                position = position.child(right: goRight)
            }
        }
    }
}

/// The second, independent way to compute a lane root: from the full set of (path, value hash)
/// pairs, by recursive partition on path bits. It shares no code with `SparseMerkleTree`'s
/// incremental updates; verification and the simulator's oracle use it.
public enum SparseMerkleReference {
    public static func root(of leaves: [(path: Hash32, valueHash: Hash32)]) -> Hash32 {
        let sorted = leaves.sorted { $0.path < $1.path }
        for index in sorted.indices.dropFirst() {
            precondition(sorted[index].path != sorted[index - 1].path, "duplicate key path")
        }
        return subtreeRoot(sorted[...], depth: 0)
    }

    private static func subtreeRoot(_ leaves: ArraySlice<(path: Hash32, valueHash: Hash32)>, depth: Int) -> Hash32 {
        if leaves.isEmpty { return StateHashing.emptyTree }
        if leaves.count == 1 { return StateHashing.leaf(path: leaves.first!.path, valueHash: leaves.first!.valueHash) }
        // Sorted by path, so the leaves with bit `depth` clear come first.
        let split = leaves.firstIndex { $0.path.bit(depth) } ?? leaves.endIndex
        return StateHashing.branch(
            left: subtreeRoot(leaves[leaves.startIndex..<split], depth: depth + 1),
            right: subtreeRoot(leaves[split..<leaves.endIndex], depth: depth + 1))
    }
}
