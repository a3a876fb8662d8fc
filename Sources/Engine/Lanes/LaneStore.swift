import FaultFS

/// Which lane a key belongs to: the first 8 bytes of SHA-256(key), big-endian, modulo the lane
/// count. Fixed at genesis with the lane count (docs/FORMATS.md).
public enum LaneRouting {
    public static func lane(of key: [UInt8], laneCount: Int) -> Int {
        precondition(laneCount >= 1)
        return Int(StateHashing.keyPath(key).words.0 % UInt64(laneCount))
    }
}

/// Where a lane's state stands: the last block applied to it, the LSN of that block's lane
/// record, and the lane root after it. Stored in the same RocksDB write batch as the block's data.
public struct LaneAppliedMarker: Sendable, Equatable {
    public var height: UInt64
    public var lsn: LSN
    public var laneRoot: Hash32

    public static let genesis = LaneAppliedMarker(height: 0, lsn: 0, laneRoot: StateHashing.emptyTree)

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(height)
        bytes.appendLittleEndian(lsn)
        return bytes + laneRoot.bytes
    }

    init(height: UInt64, lsn: LSN, laneRoot: Hash32) {
        self.height = height
        self.lsn = lsn
        self.laneRoot = laneRoot
    }

    init?(encoded bytes: [UInt8]) {
        guard bytes.count == 48 else { return nil }
        height = bytes.littleEndian(at: 0, as: UInt64.self)
        lsn = bytes.littleEndian(at: 8, as: UInt64.self)
        laneRoot = Hash32(bytes: bytes[16..<48])
    }
}

/// One lane's state in its own RocksDB: values under `v`+key, tree nodes under `n`+position, and
/// the applied marker under `a`. A block's changes to all three go in one write batch.
///
/// Durability: writes reach RocksDB's memtable only (its WAL is off); they become durable when
/// the engine flushes the lane, which it does only after syncing the log that covers them.
public final class LaneStore: @unchecked Sendable {
    // @unchecked: RocksDatabase is thread-safe; `index` and `path` are constants.
    public let index: Int
    public let path: String
    let database: RocksDatabase

    static let valuePrefix: UInt8 = UInt8(ascii: "v")
    static let nodePrefix: UInt8 = UInt8(ascii: "n")
    static let appliedKey: [UInt8] = [UInt8(ascii: "a")]

    /// Attempts of a RocksDB read (open, get, scan) that reports corruption before it counts as
    /// damage (`BadReads`). RocksDB verifies every block it reads and never caches one that
    /// failed, so a bad read costs one more read, while damage on the media fails every time.
    static let corruptReadAttemptsMax = 1 + BadReads.rereadsMax

    private init(index: Int, path: String, database: RocksDatabase) {
        self.index = index
        self.path = path
        self.database = database
    }

    /// Opens lane `index`'s RocksDB at `path`, reading again when RocksDB reports corruption
    /// (see `corruptReadAttemptsMax`). Damage that stands is `corruptState` naming the lane.
    static func open(
        index: Int, path: String, environment: RocksDBEnvironment, readOnly: Bool = false,
        writeBufferBytes: UInt64 = RocksDatabase.writeBufferBytesDefault
    ) throws(EngineError) -> LaneStore {
        let database = try retryingCorruptReads(lane: index, path: path) { () throws(RocksDBError) in
            try RocksDatabase(path: path, environment: environment, createIfMissing: !readOnly, readOnly: readOnly, writeBufferBytes: writeBufferBytes)
        }
        return LaneStore(index: index, path: path, database: database)
    }

    /// Runs a RocksDB read, again while it reports corruption (bounded), and maps a failure
    /// to an `EngineError` that keeps the lane and path.
    private static func retryingCorruptReads<Result>(
        lane: Int, path: String, _ body: () throws(RocksDBError) -> Result
    ) throws(EngineError) -> Result {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try body()
            } catch where error.isCorruption && attempt < corruptReadAttemptsMax {
                Probe.laneCorruptReadRetried.hit()
            } catch {
                throw EngineError(rocksDB: error, lane: lane, path: path)
            }
        }
    }

    func close() {
        database.close()
    }

    public func applied() throws(EngineError) -> LaneAppliedMarker {
        guard let bytes = try read({ () throws(RocksDBError) in try database.get(Self.appliedKey) }) else { return .genesis }
        guard let marker = LaneAppliedMarker(encoded: bytes) else {
            throw EngineError(.corruptState, lane: index, path: path, "the applied marker is malformed")
        }
        return marker
    }

    public func value(_ key: [UInt8]) throws(EngineError) -> [UInt8]? {
        try read { () throws(RocksDBError) in try database.get([Self.valuePrefix] + key) }
    }

    func node(_ position: TreePosition) throws(EngineError) -> TreeNode? {
        guard let bytes = try read({ () throws(RocksDBError) in try database.get([Self.nodePrefix] + position.encoded) }) else {
            return nil
        }
        guard let node = TreeNode(encoded: bytes) else {
            throw EngineError(.corruptState, lane: index, path: path, "tree node at depth \(position.depth) is malformed")
        }
        return node
    }

    /// The lane's tree as stored now.
    func tree() -> SparseMerkleTree {
        SparseMerkleTree(source: { [self] position in try self.node(position) })
    }

    /// The root as stored now (the root node's hash).
    public func root() throws(EngineError) -> Hash32 {
        try node(.root)?.hash ?? StateHashing.emptyTree
    }

    /// Applies a block's operations for this lane in order (a later operation on a key wins)
    /// and returns the new root with the tree changes, without writing anything.
    func stage(_ operations: [BlockOperation]) throws(EngineError) -> (root: Hash32, tree: SparseMerkleTree) {
        var tree = tree()
        do {
            for operation in operations {
                try tree.update(
                    path: StateHashing.keyPath(operation.key), valueHash: operation.value.map(StateHashing.valueHash))
            }
            return (try tree.rootHash(), tree)
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError(.storage, lane: index, path: path, "updating the lane tree: \(error)")
        }
    }

    /// Writes a staged block: values, tree nodes and the applied marker in one batch.
    func write(_ operations: [BlockOperation], tree: SparseMerkleTree, marker: LaneAppliedMarker) throws(EngineError) {
        let batch = RocksWriteBatch()
        for operation in operations {
            if let value = operation.value {
                batch.put([Self.valuePrefix] + operation.key, value)
            } else {
                batch.delete([Self.valuePrefix] + operation.key)
            }
        }
        for (key, node) in tree.changesInStorageOrder {
            if let node {
                batch.put([Self.nodePrefix] + key, node.encoded)
            } else {
                batch.delete([Self.nodePrefix] + key)
            }
        }
        batch.put(Self.appliedKey, marker.encoded)
        try storage { () throws(RocksDBError) in try database.write(batch) }
    }

    /// Moves the applied marker to `marker` without other changes: at a checkpoint every lane is
    /// current at the checkpoint's height, touched by its blocks or not.
    func writeMarker(_ marker: LaneAppliedMarker) throws(EngineError) {
        let batch = RocksWriteBatch()
        batch.put(Self.appliedKey, marker.encoded)
        try storage { () throws(RocksDBError) in try database.write(batch) }
    }

    /// Makes everything written durable (SST files and MANIFEST synced by RocksDB).
    func flush() throws(EngineError) {
        try storage { () throws(RocksDBError) in try database.flush() }
    }

    /// What the lane's memtables hold (see `RocksDatabase.memtables`).
    public var memtables: (activeBytes: UInt64, immutable: UInt64)? { database.memtables }

    /// Whether the lane's memtable holds at least `bytes`, or one is already switched out waiting
    /// to be flushed (false when RocksDB does not say).
    func memtableHolds(atLeast bytes: UInt64) -> Bool {
        guard let memtables = database.memtables else { return false }
        return memtables.activeBytes >= bytes || memtables.immutable > 0
    }

    /// Level-0 files a lane may gather before `compactIfNeeded()` merges them. Every checkpoint
    /// flushes one; opening a lane reads each one's footer and index, and a read may look in
    /// each. (RocksDB's own trigger, used where it compacts automatically, is 4.)
    static let levelZeroFilesMax = 8

    /// Compacts the lane when it holds `levelZeroFilesMax` level-0 files or more and RocksDB
    /// does not compact on its own (a simulation); returns whether it did. The caller waits.
    /// A failure is a `storage` error: the lane's RocksDB refuses writes until reopened, and a
    /// restart's recovery reads everything again.
    func compactIfNeeded() throws(EngineError) -> Bool {
        guard !database.compactsAutomatically, let count = database.levelZeroFileCount, count >= Self.levelZeroFilesMax else {
            return false
        }
        try storage { () throws(RocksDBError) in try database.compact() }
        return true
    }

    /// RocksDB's description of the lane's live SST files: per level, each file's number, size,
    /// sequence-number range and key range. It carries no session id or time, so two runs of a
    /// simulated seed must produce the same text; the simulator's determinism check hashes it,
    /// which catches a batch whose entry order (and so its sequence numbers) varies between runs
    /// even where no file length changes. RocksDB ends each file's line with its sampled read
    /// count in parentheses (sampled at random, one read in 1024); that count is left out.
    public func liveFilesDescription() -> String {
        let text = database.property("rocksdb.sstables") ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            guard line.hasSuffix(")"), let open = line.lastIndex(of: "("),
                line[line.index(after: open)..<line.index(before: line.endIndex)].allSatisfy(\.isNumber)
            else { return String(line) }
            return String(line[..<open])
        }.joined(separator: "\n")
    }

    /// The lane root recomputed from scratch from every stored key-value pair, by the reference
    /// code path that shares nothing with the incremental tree.
    public func recomputeRootFromScratch() throws(EngineError) -> Hash32 {
        let leaves = try allValues().map { (StateHashing.keyPath($0.0), StateHashing.valueHash($0.1)) }
        return SparseMerkleReference.root(of: leaves)
    }

    /// Every key-value pair, in key order.
    public func allValues() throws(EngineError) -> [([UInt8], [UInt8])] {
        try read { () throws(RocksDBError) in
            var pairs: [([UInt8], [UInt8])] = []
            do {
                try database.scan(prefix: [Self.valuePrefix]) { key, value in pairs.append((Array(key.dropFirst()), value)) }
            } catch let error as RocksDBError {
                throw error
            } catch {
                preconditionFailure("the scan's visitor does not throw: \(error)")
            }
            return pairs
        }
    }

    /// A RocksDB write or flush, its failure mapped to a `storage` error for this lane: a write
    /// that fails (even when RocksDB's read-back of a new file reports corruption) is cleared
    /// by a restart, whose recovery reads everything again and refuses on damage that stands.
    private func storage<Result>(_ body: () throws(RocksDBError) -> Result) throws(EngineError) -> Result {
        do {
            return try body()
        } catch {
            throw EngineError(.storage, lane: index, path: path, error.description)
        }
    }

    /// A RocksDB read of this lane, read again while it reports corruption (bounded).
    private func read<Result>(_ body: () throws(RocksDBError) -> Result) throws(EngineError) -> Result {
        try Self.retryingCorruptReads(lane: index, path: path, body)
    }
}
