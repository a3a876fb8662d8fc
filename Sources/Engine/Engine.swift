import FaultFS
import Synchronization

/// How an engine is laid out and behaves.
public struct EngineConfiguration: Sendable, Equatable {
    /// The chain this data directory belongs to; fixed at genesis. The default is `rivellum-dev`.
    public var chainID = "rivellum-dev"
    /// Lanes 0..<laneCount; fixed at genesis. The default is 4.
    public var laneCount = 4
    /// The lane counts a chain may have (the config, the genesis and snapshot manifests check it).
    public static let laneCountRange = 1...1_024
    public var dataDirectory: String
    /// The WAL's directory. The default is `<data directory>/wal`.
    public var walDirectory: String?
    public var wal = WALConfiguration()
    /// Lanes are flushed (after the WAL is synced) every this many blocks. The default is 256.
    public var flushEveryBlocks: UInt64 = 256
    /// Each lane's RocksDB memtable size. RocksDB would flush a full memtable on its own, making
    /// lane state durable ahead of the log; so the engine checkpoints (log synced, then lanes
    /// flushed) after any block that leaves a lane's memtable at a quarter of this or more. That
    /// holds only while one block's lane batch stays below about two thirds of it: a larger one
    /// could be flushed by RocksDB before its log is synced (the API's body limit keeps blocks
    /// far below the default). Default 64 MiB; at least 64 KiB (RocksDB's own minimum).
    public var laneWriteBufferBytes: UInt64 = RocksDatabase.writeBufferBytesDefault
    public static let laneWriteBufferBytesMin: UInt64 = 64 << 10
    /// A lane's memtable bytes from which the engine checkpoints: a quarter of the write buffer.
    public var memtableCheckpointBytes: UInt64 { laneWriteBufferBytes / 4 }
    /// WAL segments are kept at least this long after they are no longer needed. Default 24.
    public var walRetentionHours: UInt64 = 24
    /// Keep every WAL segment from genesis (retention deletes nothing), so that peers can resync
    /// from this node. The default is false.
    public var archive = false
    /// Headers of this many recent blocks are served from memory; older ones are read from the
    /// meta partition of the log while it still holds them. The default is 65,536.
    public var recentBlockHeadersKept = 65_536

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    /// The data directory's paths.
    public var layout: DataDirectoryLayout { DataDirectoryLayout(dataDirectory: dataDirectory, walDirectory: walDirectory) }

    var resolvedWALDirectory: String { layout.wal }
    var lanesDirectory: String { layout.lanes }

    /// Where the lanes' RocksDB directories live: `<data directory>/lanes`.
    public var lanesDirectoryPath: String { lanesDirectory }

    func laneDirectory(_ lane: Int) -> String { layout.lane(lane) }
}

/// What `Engine.commit` returns.
public struct CommitResult: Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: Hash32
    /// `true` once the block is durable (always under strict; under balanced when a sync covered
    /// it; never under dev_fast).
    public var durable: Bool
}

/// The state roots at a height.
public struct StateRoots: Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: Hash32
    public var laneRoots: [Hash32]
}

/// A block's place in the chain: its height, its MetaRoot and the one it chains to.
public struct ChainLink: Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: Hash32
    public var previousMetaRoot: Hash32

    public init(height: UInt64, metaRoot: Hash32, previousMetaRoot: Hash32) {
        self.height = height
        self.metaRoot = metaRoot
        self.previousMetaRoot = previousMetaRoot
    }

    /// The most links one answer holds.
    public static let countMax = 4_096
}

/// What the node records of a committed block (from its commit record).
public struct BlockHeader: Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: Hash32
    public var laneRoots: [Hash32]
    public var operationCount: Int

    init(_ record: CommitRecord) {
        height = record.height
        metaRoot = record.metaRoot
        laneRoots = record.lanes.map(\.laneRoot)
        operationCount = Int(record.operationCount)
    }
}

/// A value read with its proofs: key → lane root → MetaRoot.
public struct StateRead: Sendable {
    public var key: [UInt8]
    public var value: [UInt8]?
    public var lane: Int
    public var height: UInt64
    public var metaRoot: Hash32
    public var laneRoot: Hash32
    public var proof: SparseMerkleProof
    public var laneProof: MetaRoot.LaneProof
}

/// What recovery did when the engine opened.
public struct EngineRecoveryReport: Sendable, CustomStringConvertible {
    public struct Lane: Sendable {
        public var lane: Int
        public var appliedHeightBefore: UInt64
        public var recordsReplayed: Int
        /// Bytes of uncommitted records moved out of the lane's WAL partition (kept beside it as
        /// `*.uncommitted-<offset>`).
        public var walBytesTruncated: UInt64
    }

    /// The last committed height found.
    public var height: UInt64
    public var metaRoot: Hash32
    public var lanes: [Lane]
    /// Blocks found in the log past the last committed height and dropped.
    public var uncommittedBlocksDropped: UInt64
    public var wal: [WALRecoveryReport]
    public var durationNanoseconds: UInt64

    public var description: String {
        let replayed = lanes.reduce(0) { $0 + $1.recordsReplayed }
        return "recovered height \(height) meta_root \(metaRoot.hex.prefix(16)) replayed \(replayed) lane record(s), "
            + "dropped \(uncommittedBlocksDropped) uncommitted block(s)"
    }
}

/// The storage engine: commits blocks across lanes atomically, serves state with proofs, and
/// recovers to exactly the last committed block after any crash.
///
/// Commit protocol (docs/ARCHITECTURE.md): each touched lane's operations go to its WAL partition
/// as one record, then the block's commit record (every lane root, the MetaRoot chained to the
/// previous one) to the meta partition; the lanes' RocksDB receive the block in one write batch
/// each (memtable only). The block is acknowledged once every partition is durable up to what
/// was written by then (strict). Lane state becomes durable only at a checkpoint, after the WAL
/// is synced. A block is committed when its commit record and all its lane records are in the
/// log; recovery finds the last such height and replays lanes up to it.
///
/// Thread-safe. Commits are framed one at a time; their syncs overlap (group commit).
public final class Engine: @unchecked Sendable {
    // @unchecked: the mutable state below is guarded by `lock`.
    public let configuration: EngineConfiguration
    public let recoveryReport: EngineRecoveryReport
    let fileSystem: any FileSystem
    private let clock: any WALClock
    private let executor: any LaneExecutor
    private let environment: RocksDBEnvironment
    private let lanes: [LaneStore]
    private let wal: WriteAheadLog
    private let dataLock: any FileLock
    private let lock = ConditionLock()

    private var height: UInt64
    private var metaRoot: Hash32
    private var laneRoots: [Hash32]
    private var appliedLSNs: [LSN]
    private var blocksSinceFlush: UInt64 = 0
    private var failure: EngineError?
    private var isClosed = false
    /// Blocks written but not yet known durable: (height, per-partition LSN that covers it).
    private var pendingDurability: [(height: UInt64, targets: [WALPartitionID: LSN])] = []
    private var durableHeightValue: UInt64
    /// The headers of the last `recentBlockHeadersKept` blocks, by height.
    private var recentBlocks: [UInt64: BlockHeader] = [:]
    /// The commit record of the current height (nil at height 0).
    private var lastCommitRecord: CommitRecord?

    static let pendingDurabilityMax = 100_000

    var partitions: [WALPartitionID] { (0..<configuration.laneCount).map { WALPartitionID.lane($0) } + [.meta] }

    /// Opens the data directory: creates a genesis if it is empty, otherwise recovers (see
    /// `EngineRecovery`). Refuses with a precise error rather than start on state it cannot
    /// prove.
    /// - Parameter executor: runs per-lane work; the default runs up to four lanes in parallel.
    ///   The simulator passes a `SeededLaneExecutor` so the order is a function of its seed.
    /// - Parameter walObserver: told of every WAL sync (the node's metrics).
    public init(
        fileSystem: any FileSystem, configuration: EngineConfiguration, clock: any WALClock,
        executor: (any LaneExecutor)? = nil, walObserver: (any WALObserver)? = nil
    ) throws(EngineError) {
        precondition(EngineConfiguration.laneCountRange.contains(configuration.laneCount), "lane count out of range")
        precondition(configuration.laneWriteBufferBytes >= EngineConfiguration.laneWriteBufferBytesMin, "lane write buffer below RocksDB's minimum")
        let started = clock.nowNanoseconds()
        self.configuration = configuration
        self.fileSystem = fileSystem
        self.clock = clock
        self.executor = executor ?? ConcurrentLaneExecutor(maximumConcurrency: min(4, configuration.laneCount))
        do {
            try fileSystem.createDirectories(configuration.dataDirectory)
        } catch {
            throw EngineError(.storage, path: configuration.dataDirectory, "creating the data directory: \(error)")
        }
        dataLock = try DataDirectoryLock.acquire(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory)
        do {
            // A rename into the data directory (GENESIS, the snapshot catalog, a restore's swap)
            // that a crash caught before its directory sync is made durable before anything
            // relies on it.
            try fileSystem.syncDirectory(configuration.dataDirectory)
        } catch {
            try? dataLock.unlock()
            throw EngineError(.storage, path: configuration.dataDirectory, "syncing the data directory: \(error)")
        }
        var opened: [LaneStore] = []
        let environment = RocksDBEnvironment(fileSystem: fileSystem)
        do throws(EngineError) {
            do {
                // A restore a crash interrupted is finished before anything is opened.
                try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory, clock: clock)
            } catch {
                throw EngineError(.storage, path: configuration.dataDirectory, "finishing an interrupted snapshot restore: \(error)")
            }
            try Genesis.ensure(fileSystem: fileSystem, configuration: configuration)
            var attempt = 0
            var recoveredOrNil: EngineRecovery.Result?
            // Bounded: a refusal must stand on `recoveryReadsOnRefusal` full reads.
            while recoveredOrNil == nil {
                attempt += 1
                opened = try Self.openLanes(fileSystem: fileSystem, configuration: configuration, environment: environment)
                do {
                    recoveredOrNil = try EngineRecovery.run(
                        fileSystem: fileSystem, configuration: configuration, clock: clock, lanes: opened, walObserver: walObserver)
                } catch where error.isRefusal && attempt < Self.recoveryReadsOnRefusal {
                    // Damage seen through a bad read (a flipped bit on the way, a misdirected
                    // read) is gone on the next read; nothing durable was changed before the
                    // refusal that depends on it (replayed blocks reach RocksDB's memtable only).
                    Probe.engineRecoveryRefusalReread.hit()
                    for lane in opened { lane.close() }
                    opened = []
                }
            }
            let recovered = recoveredOrNil!
            self.environment = environment
            lanes = opened
            wal = recovered.wal
            height = recovered.height
            metaRoot = recovered.metaRoot
            laneRoots = recovered.laneRoots
            appliedLSNs = recovered.appliedLSNs
            durableHeightValue = recovered.height
            lastCommitRecord = recovered.commits.last { $0.height == recovered.height }
            for record in recovered.commits.suffix(configuration.recentBlockHeadersKept) {
                recentBlocks[record.height] = BlockHeader(record)
            }
            var report = recovered.report
            report.durationNanoseconds = clock.nowNanoseconds() &- started
            recoveryReport = report
        } catch {
            if error.isRefusal { Probe.engineRecoveryRefused.hit() }
            for lane in opened { lane.close() }
            try? dataLock.unlock()
            throw error
        }
    }

    /// Full recoveries run before a refusal stands (see `init`).
    static let recoveryReadsOnRefusal = 3

    /// Opens every lane's RocksDB (creating its directory), from the media: clean cached pages
    /// are dropped first, as the log's recovery does, since a MANIFEST edit whose fsync failed
    /// may still show in the cache. Closes what it opened when one lane fails.
    private static func openLanes(
        fileSystem: any FileSystem, configuration: EngineConfiguration, environment: RocksDBEnvironment
    ) throws(EngineError) -> [LaneStore] {
        var opened: [LaneStore] = []
        do throws(EngineError) {
            for lane in 0..<configuration.laneCount {
                let directory = configuration.laneDirectory(lane)
                do {
                    try fileSystem.createDirectories(directory)
                    try fileSystem.dropCachedPages(under: directory)
                } catch {
                    throw EngineError(.storage, lane: lane, path: directory, "preparing the lane directory: \(error)")
                }
                opened.append(try LaneStore.open(index: lane, path: directory, environment: environment, writeBufferBytes: configuration.laneWriteBufferBytes))
            }
        } catch {
            for lane in opened { lane.close() }
            throw error
        }
        return opened
    }

    // MARK: Commit

    /// Commits one block and returns its height and MetaRoot once it is as durable as the policy
    /// promises. On any failure the engine stops accepting work (`failed`) and must be reopened.
    public func commit(_ operations: [BlockOperation]) throws(EngineError) -> CommitResult {
        let byLane = try route(operations)
        let (result, targets) = try frame(byLane, operationCount: operations.count)
        let durable = try waitDurable(targets)
        return CommitResult(height: result.height, metaRoot: result.metaRoot, durable: durable)
    }

    /// Commits blocks fetched from a peer, in order, each only after it is checked: it is the
    /// next height, it chains to this engine's MetaRoot, staging its operations gives exactly its
    /// lane roots and MetaRoot, and that MetaRoot is `attested[height]` — the root a quorum of
    /// peers or a trust anchor vouches for, which every block must have (a block that is merely
    /// self-consistent proves nothing: a liar can recompute roots). The first block that fails
    /// throws `peerBlockMismatch` with nothing of it written and the engine usable; the blocks
    /// before it are committed and made durable before the throw. The batch is made durable once,
    /// after its last block: catch-up pays one sync per batch. Returns the last block's result;
    /// an empty batch returns nil.
    public func commit(_ blocks: [SyncBlock], attested: [UInt64: Hash32]) throws(EngineError) -> CommitResult? {
        precondition(blocks.allSatisfy { attested[$0.height] != nil }, "every block from a peer needs its attested MetaRoot")
        var last: (CommitResult, [WALPartitionID: LSN])?
        do throws(EngineError) {
            // Bounded by the batch.
            for block in blocks {
                let byLane: [Int: [BlockOperation]]
                do throws(EngineError) {
                    byLane = try route(block)
                } catch where error.kind == .invalidInput {
                    throw EngineError(.peerBlockMismatch, lane: error.lane, height: block.height, error.message)
                }
                last = try frame(byLane, operationCount: block.operationCount, expected: (block, attested[block.height]))
            }
        } catch {
            if let (_, targets) = last { _ = try waitDurable(targets) }
            throw error
        }
        guard let (result, targets) = last else { return nil }
        let durable = try waitDurable(targets)
        return CommitResult(height: result.height, metaRoot: result.metaRoot, durable: durable)
    }

    /// Waits (outside the lock, so concurrent commits share syncs) until every partition is
    /// durable through `targets`, as the fsync policy promises; whether it is durable now.
    private func waitDurable(_ targets: [WALPartitionID: LSN]) throws(EngineError) -> Bool {
        var durable = true
        for partition in partitions {
            guard let target = targets[partition] else { continue }
            do {
                if !(try wal.partition(partition).commit(through: target)) { durable = false }
            } catch {
                throw fail(EngineError.wal(error))
            }
        }
        if configuration.wal.fsyncPolicy == .devFast { durable = false }
        lock.withLock { updateDurableHeight() }
        return durable
    }

    /// A peer's block by lane, refusing one whose lane count is not this chain's or whose lanes
    /// route elsewhere (a key in the wrong lane would change what the roots mean).
    private func route(_ block: SyncBlock) throws(EngineError) -> [Int: [BlockOperation]] {
        guard block.laneRoots.count == configuration.laneCount else {
            throw EngineError(.peerBlockMismatch, height: block.height, "the block has \(block.laneRoots.count) lanes, the chain \(configuration.laneCount)")
        }
        let byLane = try route(block.lanes.flatMap(\.operations))
        guard byLane.keys.sorted() == block.lanes.map(\.lane), block.lanes.allSatisfy({ byLane[$0.lane] == $0.operations }) else {
            throw EngineError(.peerBlockMismatch, height: block.height, "the block's operations are not in the lanes their keys route to")
        }
        return byLane
    }

    /// Groups a block's operations by lane, in order, and refuses one whose lane record could
    /// not be logged (larger than a WAL record may be) before anything is written: bad input must
    /// not fail the engine.
    private func route(_ operations: [BlockOperation]) throws(EngineError) -> [Int: [BlockOperation]] {
        var byLane: [Int: [BlockOperation]] = [:]
        var laneBytes: [Int: Int] = [:]
        for operation in operations {
            let lane = LaneRouting.lane(of: operation.key, laneCount: configuration.laneCount)
            assert(lane >= 0 && lane < configuration.laneCount, "routing put a key outside the lanes")
            byLane[lane, default: []].append(operation)
            laneBytes[lane, default: LaneBlockRecord.headerBytes] += LaneBlockRecord.encodedBytes(of: operation)
        }
        if let (lane, bytes) = laneBytes.sorted(by: { $0.key < $1.key }).first(where: { $0.value > WALFormat.recordBytesMax }) {
            throw EngineError(
                .invalidInput, lane: lane,
                "the block's operations for lane \(lane) take \(bytes) bytes; a lane record holds at most \(WALFormat.recordBytesMax)")
        }
        return byLane
    }

    /// Frames a block under the lock: lane records, commit record, lane batches. Returns the
    /// LSN each partition must be durable through for the block (and all before it) to be.
    private func frame(
        _ byLane: [Int: [BlockOperation]], operationCount: Int, expected: (block: SyncBlock, attested: Hash32?)? = nil
    ) throws(EngineError) -> (CommitResult, [WALPartitionID: LSN]) {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        let newHeight = height + 1
        let touched = byLane.keys.sorted()
        var staged: [Int: StagedLane]?
        if let expected {
            // A peer's block: stage every lane in memory and check the claims before anything
            // reaches the log or RocksDB.
            staged = try stageLanes(byLane)
            try check(expected.block, attested: expected.attested, staged: staged!, newHeight: newHeight)
        }
        let laneResults = try logAndApply(byLane, newHeight: newHeight, staged: staged)
        assert(laneResults.keys.sorted() == touched, "every touched lane logged its record, and no other")
        assert(
            !configuration.wal.mutations.isEmpty || laneResults.allSatisfy { $0.value.lsn > appliedLSNs[$0.key] },
            "a lane's LSNs only grow (unless a deliberate bug is on, which the simulator must catch)")
        var newRoots = laneRoots
        for (lane, result) in laneResults { newRoots[lane] = result.root }
        let newMetaRoot = MetaRoot.compute(chainID: configuration.chainID, height: newHeight, laneRoots: newRoots)
        updateDurableHeight()
        // The witness: what every partition had synced when the record was framed, always
        // below the record's own height (the record itself is not yet durable).
        assert(durableHeightValue < newHeight, "a commit record cannot witness itself durable")
        let commitRecord = CommitRecord(
            height: newHeight, metaRoot: newMetaRoot, previousMetaRoot: metaRoot,
            lanes: (0..<configuration.laneCount).map { CommitRecord.Lane(lsn: laneResults[$0]?.lsn, laneRoot: newRoots[$0]) },
            operationCount: UInt32(operationCount), durableHeight: durableHeightValue)
        do {
            let lsn = try wal.partition(.meta).append([commitRecord.encoded()], recordType: EngineRecordType.commit.rawValue).upperBound
            precondition(lsn == newHeight, "the meta partition's LSN \(lsn) is not the height \(newHeight)")
        } catch {
            throw failLocked(EngineError.wal(error))
        }
        height = newHeight
        metaRoot = newMetaRoot
        laneRoots = newRoots
        recentBlocks[newHeight] = BlockHeader(commitRecord)
        lastCommitRecord = commitRecord
        if newHeight > UInt64(configuration.recentBlockHeadersKept) {
            recentBlocks[newHeight - UInt64(configuration.recentBlockHeadersKept)] = nil
        }
        for (lane, result) in laneResults { appliedLSNs[lane] = result.lsn }
        var targets: [WALPartitionID: LSN] = [:]
        for partition in partitions {
            let written = wal.partition(partition).writtenLSN
            if written > wal.partition(partition).durableLSN { targets[partition] = written }
        }
        if configuration.wal.fsyncPolicy != .devFast {
            pendingDurability.append((newHeight, targets))
            if pendingDurability.count > Self.pendingDurabilityMax { pendingDurability.removeFirst() }
        }
        blocksSinceFlush += 1
        if blocksSinceFlush >= configuration.flushEveryBlocks || memtableNearlyFull(touched) {
            try checkpointLocked()
        }
        return (CommitResult(height: newHeight, metaRoot: newMetaRoot, durable: false), targets)
    }

    /// A lane staged in memory: its root after the block and the tree that gives it.
    /// `@unchecked Sendable`: a staged lane is made by one lane task and used by one lane task
    /// after it, never by two at once.
    struct StagedLane: @unchecked Sendable {
        var root: Hash32
        var tree: SparseMerkleTree
    }

    /// Stages every lane of the block (reads only); the lock must be held.
    private func stageLanes(_ byLane: [Int: [BlockOperation]]) throws(EngineError) -> [Int: StagedLane] {
        let staged = Mutex<[Int: StagedLane]>([:])
        do {
            let lanes = self.lanes
            try executor.run(byLane.keys.sorted()) { (lane) throws(EngineError) in
                let (root, tree) = try lanes[lane].stage(byLane[lane]!)
                staged.withLock { $0[lane] = StagedLane(root: root, tree: tree) }
            }
        } catch {
            throw failLocked(error)
        }
        return staged.withLock { $0 }
    }

    /// A peer's block must be the next height, chain to this MetaRoot, and give exactly its lane
    /// roots and MetaRoot (and the attested one); `peerBlockMismatch` otherwise, with nothing
    /// written and the engine usable. The lock must be held.
    private func check(_ block: SyncBlock, attested: Hash32?, staged: [Int: StagedLane], newHeight: UInt64) throws(EngineError) {
        func mismatch(_ text: String) -> EngineError { EngineError(.peerBlockMismatch, height: block.height, text) }
        guard block.height == newHeight else { throw mismatch("the block is height \(block.height), this chain is at \(height)") }
        guard block.previousMetaRoot == metaRoot else {
            throw mismatch("the block chains to MetaRoot \(block.previousMetaRoot.hex.prefix(16))…, this chain's is \(metaRoot.hex.prefix(16))…")
        }
        if configuration.wal.mutations.active(.skipPeerBlockRootCheck) {
            if let attested, attested != block.metaRoot { throw mismatch("the block's MetaRoot is not the attested one") }
            return
        }
        var roots = laneRoots
        for (lane, result) in staged { roots[lane] = result.root }
        if let lane = roots.indices.first(where: { roots[$0] != block.laneRoots[$0] }) {
            throw EngineError(
                .peerBlockMismatch, lane: lane, height: block.height,
                "lane \(lane)'s root after the block is \(roots[lane].hex.prefix(16))…, the block claims \(block.laneRoots[lane].hex.prefix(16))…")
        }
        let computed = MetaRoot.compute(chainID: configuration.chainID, height: newHeight, laneRoots: roots)
        guard computed == block.metaRoot else { throw mismatch("the MetaRoot is \(computed.hex.prefix(16))…, the block claims \(block.metaRoot.hex.prefix(16))…") }
        if let attested, attested != computed {
            throw mismatch("the block's MetaRoot \(computed.hex.prefix(16))… is not the attested \(attested.hex.prefix(16))…")
        }
    }

    /// Logs each touched lane's record and applies it to the lane (staging it first unless
    /// `staged` has it); returns each lane's root and record LSN. The lock must be held; a
    /// failure fails the engine.
    private func logAndApply(
        _ byLane: [Int: [BlockOperation]], newHeight: UInt64, staged: [Int: StagedLane]?
    ) throws(EngineError) -> [Int: (root: Hash32, lsn: LSN)] {
        let results = Mutex<[Int: (root: Hash32, lsn: LSN)]>([:])
        do {
            let lanes = self.lanes
            let wal = self.wal
            try executor.run(byLane.keys.sorted()) { (lane) throws(EngineError) in
                let laneOperations = byLane[lane]!
                let (root, tree): (Hash32, SparseMerkleTree)
                if let ready = staged?[lane] {
                    (root, tree) = (ready.root, ready.tree)
                } else {
                    (root, tree) = try lanes[lane].stage(laneOperations)
                }
                let record = LaneBlockRecord(height: newHeight, laneRoot: root, operations: laneOperations)
                let lsn: LSN
                do throws(WALError) {
                    lsn = try wal.partition(.lane(lane)).append([record.encoded()], recordType: EngineRecordType.laneBlock.rawValue).upperBound
                } catch {
                    throw EngineError.wal(error)
                }
                try lanes[lane].write(laneOperations, tree: tree, marker: LaneAppliedMarker(height: newHeight, lsn: lsn, laneRoot: root))
                results.withLock { $0[lane] = (root, lsn) }
            }
        } catch {
            throw failLocked(error)
        }
        return results.withLock { $0 }
    }

    private func updateDurableHeight() {
        // Bounded by the pending queue.
        while let first = pendingDurability.first,
            first.targets.allSatisfy({ wal.partition($0.key).durableLSN >= $0.value })
        {
            durableHeightValue = max(durableHeightValue, first.height)
            pendingDurability.removeFirst()
        }
    }

    private func checkUsable() throws(EngineError) {
        if let failure { throw EngineError(.failed, "the engine failed earlier and must be reopened: \(failure.description)") }
        if isClosed { throw EngineError(.failed, "the engine is closed") }
    }

    /// Records the first failure; the engine then refuses all work. Call without the lock.
    private func fail(_ error: EngineError) -> EngineError {
        lock.withLock { failLocked(error) }
    }

    /// Records the first failure; the lock must be held.
    private func failLocked(_ error: EngineError) -> EngineError {
        if failure == nil { failure = error }
        Probe.engineCommitFailed.hit()
        return error
    }

    // MARK: Checkpoints

    /// Waits until no lane has a RocksDB flush or compaction running or pending (for
    /// measurements that must not race background compaction); false if some lane was still
    /// busy after `timeoutSeconds` (one deadline for all lanes) or did not say. Commits are not
    /// paused: the caller keeps the engine idle.
    public func waitForLaneBackgroundWork(timeoutSeconds: Double) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeoutSeconds * 1_000))
        return lanes.allSatisfy { $0.database.waitUntilQuiescent(until: deadline) }
    }

    /// Syncs the WAL, then flushes every lane (lane state never becomes durable ahead of the
    /// log), then deletes WAL segments no lane needs any more that are older than the retention.
    public func checkpoint() throws(EngineError) {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        try checkpointLocked()
    }

    /// Deletes the WAL segments every lane has flushed past, that no catalogued snapshot needs,
    /// once older than the retention; the lock must be held. A failure fails the engine.
    private func retireSegments(floors: (lanes: [LSN], meta: LSN)?, nowSeconds: UInt64) throws(EngineError) {
        do {
            for lane in 0..<configuration.laneCount {
                _ = try WALRetention.deleteSegments(
                    fileSystem: fileSystem,
                    directory: WriteAheadLog.partitionDirectory(configuration.resolvedWALDirectory, .lane(lane)),
                    partition: .lane(lane), below: min(appliedLSNs[lane], floors?.lanes[lane] ?? .max) + 1,
                    retentionHours: configuration.walRetentionHours, nowSeconds: nowSeconds)
            }
            // The meta record at the lowest flushed height stays: recovery checks it.
            _ = try WALRetention.deleteSegments(
                fileSystem: fileSystem, directory: WriteAheadLog.partitionDirectory(configuration.resolvedWALDirectory, .meta),
                partition: .meta, below: max(1, min(height, floors?.meta ?? .max)), retentionHours: configuration.walRetentionHours,
                nowSeconds: nowSeconds)
        } catch {
            failure = EngineError.wal(error)
            throw failure!
        }
    }

    /// Whether a lane the block touched holds a quarter of its write buffer or more: the next
    /// writes could fill it, and RocksDB would flush it on its own, ahead of the log.
    private func memtableNearlyFull(_ touched: [Int]) -> Bool {
        guard !configuration.wal.mutations.active(.ignoreMemtableBound) else { return false }
        let nearlyFull = touched.contains { lanes[$0].memtableHolds(atLeast: configuration.memtableCheckpointBytes) }
        if nearlyFull { Probe.engineCheckpointForMemtable.hit() }
        return nearlyFull
    }

    private func checkpointLocked() throws(EngineError) {
        do {
            if !configuration.wal.mutations.active(.flushLanesBeforeLogSync) {
                for partition in partitions { try wal.partition(partition).checkpointSync() }
            }
        } catch {
            failure = EngineError.wal(error)
            throw failure!
        }
        if !configuration.wal.mutations.active(.flushLanesBeforeLogSync) {
            // Every partition was just synced: all committed blocks are durable, dev_fast too.
            pendingDurability.removeAll()
            durableHeightValue = height
        }
        for lane in lanes {
            do {
                // Every lane is current at this height, including lanes no recent block touched:
                // recovery then starts here, and the log before it can go.
                try lane.writeMarker(LaneAppliedMarker(height: height, lsn: appliedLSNs[lane.index], laneRoot: laneRoots[lane.index]))
                try lane.flush()
            } catch {
                failure = error
                throw error
            }
        }
        blocksSinceFlush = 0
        Probe.engineCheckpoint.hit()
        let nowSeconds = clock.nowNanoseconds() / 1_000_000_000
        // Snapshots still on disk keep the log they need to replay to the present.
        let floors = SnapshotCatalog.walFloors(
            fileSystem: fileSystem, dataDirectory: configuration.dataDirectory, laneCount: configuration.laneCount)
        // An archive keeps every block for its peers.
        if !configuration.archive {
            try retireSegments(floors: floors, nowSeconds: nowSeconds)
        }
        // Where RocksDB does not compact on its own (a simulation), each checkpoint added a
        // level-0 file to every lane; they are merged here, lane by lane, while the caller waits.
        for lane in lanes {
            do {
                if try lane.compactIfNeeded() { Probe.laneCompacted.hit() }
            } catch {
                failure = error
                throw error
            }
        }
    }

    // MARK: Snapshots

    /// The state a snapshot holds: everything up to `height`.
    public struct SnapshotPoint: Sendable {
        public var chainID: String
        public var height: UInt64
        public var metaRoot: Hash32
        public var laneRoots: [Hash32]
        public var appliedLSNs: [LSN]
        /// The commit record of `height` (nil at height 0).
        var commitRecord: CommitRecord?
    }

    /// Pauses commits for the moment it takes to checkpoint (WAL synced, every lane flushed with
    /// its marker at the current height) and to take each lane's RocksDB checkpoint into
    /// `laneDirectory(lane)` (hard links; copies across file systems). The directories must not
    /// exist; their parent must.
    public func checkpointForSnapshot(laneDirectory: (Int) -> String) throws(EngineError) -> SnapshotPoint {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        try checkpointLocked()
        for lane in lanes {
            let directory = laneDirectory(lane.index)
            do {
                try lane.database.checkpoint(to: directory)
            } catch {
                // Not a failure of the engine: the snapshot's target is at fault.
                throw EngineError(.storage, lane: lane.index, path: directory, "RocksDB checkpoint: \(error)")
            }
        }
        Probe.snapshotCheckpoint.hit()
        precondition(height == 0 || lastCommitRecord?.height == height, "the current height's commit record is known")
        return SnapshotPoint(
            chainID: configuration.chainID, height: height, metaRoot: metaRoot, laneRoots: laneRoots, appliedLSNs: appliedLSNs,
            commitRecord: height == 0 ? nil : lastCommitRecord)
    }

    // MARK: Reads

    /// The current height, MetaRoot and lane roots.
    public func stateRoots() -> StateRoots {
        lock.withLock { StateRoots(height: height, metaRoot: metaRoot, laneRoots: laneRoots) }
    }

    /// The highest height known durable (the last acknowledged height under strict; behind it by
    /// the sync window under balanced; the last recovered or checkpointed height under dev_fast).
    public var durableHeight: UInt64 {
        lock.withLock {
            updateDurableHeight()
            return durableHeightValue
        }
    }

    /// The header of committed block `height`: from memory for recent blocks, otherwise from the
    /// meta partition of the log while retention keeps it. `nil` for heights never committed or
    /// no longer recorded.
    public func block(at blockHeight: UInt64) throws(EngineError) -> BlockHeader? {
        let cached: BlockHeader?? = lock.withLock {
            guard blockHeight >= 1 && blockHeight <= height else { return .some(nil) }
            return recentBlocks[blockHeight].map { .some($0) }
        }
        if let cached { return cached }
        let record: WALRecordReader.Record?
        do {
            record = try WALRecordReader.record(
                fileSystem: fileSystem, walDirectory: configuration.resolvedWALDirectory, partition: .meta, lsn: blockHeight)
        } catch {
            throw EngineError.wal(error)
        }
        guard let record, record.header.recordType == EngineRecordType.commit.rawValue,
            let commit = CommitRecord.decode(record.payload), commit.height == blockHeight
        else { return nil }
        return BlockHeader(commit)
    }

    /// The highest height served to peers: the durable height (under `dev_fast`, which promises
    /// nothing, the height).
    public var servableHeight: UInt64 {
        lock.withLock { configuration.wal.fsyncPolicy == .devFast ? height : durableHeightValue }
    }

    /// Committed blocks from `from` on for a peer: at most `maxBlocks`, stopping after the block
    /// whose encoded range stays within `rangeBytesMax` (the first block always whole), and only blocks that are durable
    /// here (a block this node could still lose in a power cut is never handed to a peer; under
    /// `dev_fast`, which promises nothing, every committed block). Empty past the height;
    /// `belowRetention` with the oldest servable height when the log no longer holds `from`.
    public func servedBlocks(from: UInt64, maxBlocks: Int, rangeBytesMax: Int) throws(EngineError) -> ServedBlocks {
        precondition(from >= 1 && (1...BlockRangeCodec.blocksMax).contains(maxBlocks) && rangeBytesMax > 0)
        let servable = servableHeight
        guard from <= servable else { return .blocks([]) }
        return try BlockRangeReader.read(
            fileSystem: fileSystem, walDirectory: configuration.resolvedWALDirectory, laneCount: configuration.laneCount, from: from,
            through: min(servable, from + UInt64(maxBlocks) - 1), rangeBytesMax: rangeBytesMax)
    }

    /// The durable blocks' chain links from `from` on (height, MetaRoot, the MetaRoot before):
    /// what peers compare to attest a height. At most `count`; fewer where the log stops.
    public func servedLinks(from: UInt64, count: Int) throws(EngineError) -> [ChainLink] {
        precondition(from >= 1 && (1...ChainLink.countMax).contains(count))
        let servable = servableHeight
        guard from <= servable else { return [] }
        let commits = try BlockRangeReader.commitRecords(
            fileSystem: fileSystem, walDirectory: configuration.resolvedWALDirectory, heights: from...min(servable, from + UInt64(count) - 1))
        return commits.map { ChainLink(height: $0.height, metaRoot: $0.metaRoot, previousMetaRoot: $0.previousMetaRoot) }
    }

    /// The lowest height whose block the log still holds whole (nil when it holds none).
    public func oldestServableHeight() throws(EngineError) -> UInt64? {
        try BlockRangeReader.oldestServableHeight(
            fileSystem: fileSystem, walDirectory: configuration.resolvedWALDirectory, laneCount: configuration.laneCount)
    }

    /// The chain's identity as peers compare it: the MetaRoot of height 0, over empty lanes,
    /// which binds the chain id and the lane count.
    public static func genesisDigest(chainID: String, laneCount: Int) -> Hash32 {
        MetaRoot.compute(chainID: chainID, height: 0, laneRoots: Array(repeating: StateHashing.emptyTree, count: laneCount))
    }

    /// For `balanced`: syncs each partition whose interval has passed. The node calls it from a
    /// timer every `syncIntervalMilliseconds`; a no-op under the other policies.
    public func tick() throws(EngineError) {
        guard configuration.wal.fsyncPolicy == .balanced else { return }
        for partition in partitions {
            do {
                try wal.partition(partition).tick()
            } catch {
                throw fail(EngineError.wal(error))
            }
        }
        lock.withLock { updateDurableHeight() }
    }

    /// Each partition's writer counters (lanes in order, then meta).
    public var walStatistics: [(partition: WALPartitionID, statistics: WALPartitionStatistics)] {
        partitions.map { ($0, wal.partition($0).statistics) }
    }

    /// Each partition's written and durable LSN (lanes in order, then meta).
    public var walPositions: [(partition: WALPartitionID, written: LSN, durable: LSN)] {
        partitions.map { ($0, wal.partition($0).writtenLSN, wal.partition($0).durableLSN) }
    }

    /// Reads `key` with its proofs at the current height.
    public func get(_ key: [UInt8]) throws(EngineError) -> StateRead {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        let lane = LaneRouting.lane(of: key, laneCount: configuration.laneCount)
        let value = try lanes[lane].value(key)
        let proof: SparseMerkleProof
        do {
            proof = try lanes[lane].tree().proof(path: StateHashing.keyPath(key))
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError(.storage, lane: lane, "building a proof: \(error)")
        }
        return StateRead(
            key: key, value: value, lane: lane, height: height, metaRoot: metaRoot, laneRoot: laneRoots[lane], proof: proof,
            laneProof: MetaRoot.laneProof(laneRoots: laneRoots, index: lane))
    }

    /// The lane stores, for verification and the simulator's oracle.
    public var laneStores: [LaneStore] { lanes }

    // MARK: Shutdown

    /// Checkpoints (unless the engine failed) and releases everything. Idempotent.
    public func close() throws(EngineError) {
        lock.lock()
        defer { lock.unlock() }
        guard !isClosed else { return }
        var firstError: EngineError?
        if failure == nil {
            do {
                try checkpointLocked()
            } catch {
                firstError = error
            }
        }
        isClosed = true
        do {
            try wal.close()
        } catch {
            if firstError == nil && failure == nil { firstError = EngineError.wal(error) }
        }
        for lane in lanes { lane.close() }
        try? dataLock.unlock()
        if let firstError { throw firstError }
    }

    /// Drops everything without writing, as a crash does (for the simulator and tests; the
    /// machine's file system must already be halted or crashed).
    public func abandon() {
        lock.lock()
        defer { lock.unlock() }
        guard !isClosed else { return }
        isClosed = true
        for lane in lanes { lane.close() }
    }
}
