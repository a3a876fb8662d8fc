import FaultFS

/// Recovery on open, in this order (each step idempotent, so a crash anywhere and another run
/// give the same result):
///
/// 1. Read each lane's applied marker (what its RocksDB holds durably).
/// 2. Recover the WAL (torn tails dropped, mid-log damage refused) and collect the commit records
///    and the lane records past each lane's applied LSN.
/// 3. Find H*, the last committed height: walking up from the lowest applied height, a height is
///    committed when its commit record is present, chains to the previous MetaRoot, and every
///    lane record it names is present (or already applied) with the recorded lane root. Refuse
///    if any commit record in the log names a height above H* as durable: that block was
///    synced and then damaged, not torn.
/// 4. Refuse if a lane has applied past H* (state ahead of the log).
/// 5. Replay each lane's records up to H*, checking every resulting lane root.
/// 6. Discard the log's records past H* (uncommitted blocks), copying them aside.
/// 7. Recompute the MetaRoot from the lane roots and compare it with H*'s commit record.
/// 8. Make the recovered state durable: sync the WAL, flush the lanes.
enum EngineRecovery {
    struct Result {
        var wal: WriteAheadLog
        var height: UInt64
        var metaRoot: Hash32
        var laneRoots: [Hash32]
        var appliedLSNs: [LSN]
        var report: EngineRecoveryReport
        /// The commit records recovery read, up to the committed height, in height order.
        var commits: [CommitRecord]
    }

    static func run(
        fileSystem: any FileSystem, configuration: EngineConfiguration, clock: any WALClock, lanes: [LaneStore],
        walObserver: (any WALObserver)? = nil
    ) throws(EngineError) -> Result {
        var steps = Steps(fileSystem: fileSystem, configuration: configuration, lanes: lanes)
        try steps.readAppliedMarkers()
        var recovered = try steps.recoverLog()
        let checksLanes = !configuration.wal.mutations.active(.trustLaneDirectories)
        if checksLanes { try steps.refuseLanesBelowTheLog(recovered) }
        let committed = try steps.findCommittedHeight()
        try steps.refuseLanesAheadOfLog(committed: committed)
        if checksLanes { try steps.refuseLanesOfAnotherHistory() }
        var (reportLanes, laneRoots, appliedLSNs) = try steps.replayLanes(through: committed)
        let dropped = try steps.discardUncommitted(after: committed, appliedLSNs: appliedLSNs, recovered: &recovered, reportLanes: &reportLanes)
        let metaRoot = try steps.checkMetaRoot(committed: committed, laneRoots: laneRoots)
        let wal = try steps.makeDurable(recovered: recovered, clock: clock, walObserver: walObserver)
        let report = EngineRecoveryReport(
            height: committed, metaRoot: metaRoot, lanes: reportLanes, uncommittedBlocksDropped: dropped,
            wal: recovered.reports, durationNanoseconds: 0)
        let kept = steps.commits.values.filter { $0.height <= committed }.sorted { $0.height < $1.height }
        assert(kept.last.map { $0.height == committed } ?? (committed == 0), "the commits kept end at the committed height")
        assert(appliedLSNs.count == configuration.laneCount && laneRoots.count == configuration.laneCount)
        // A deliberate bug (a mutation) may break these; the simulator's oracles must be the ones
        // to catch it, so they are asserted only when none is on.
        if configuration.wal.mutations.isEmpty {
            assert(
                appliedLSNs.indices.allSatisfy { wal.partition(.lane($0)).writtenLSN >= appliedLSNs[$0] },
                "every lane's log continues from what the lane applied")
            assert(wal.partition(.meta).writtenLSN == committed, "the meta partition ends at the committed height (its LSN is the height)")
        }
        return Result(
            wal: wal, height: committed, metaRoot: metaRoot, laneRoots: laneRoots, appliedLSNs: appliedLSNs, report: report,
            commits: kept)
    }

    /// The steps of recovery over the state they share, each one a function named for what it
    /// does (the numbers are the list above).
    struct Steps {
        let fileSystem: any FileSystem
        let configuration: EngineConfiguration
        let lanes: [LaneStore]
        let laneCount: Int
        let walDirectory: String
        let partitions: [WALPartitionID]
        var markers: [LaneAppliedMarker] = []
        var lowestApplied: UInt64 = 0
        var commits: [UInt64: CommitRecord] = [:]
        var laneRecords: [[LSN: LaneBlockRecord]]

        init(fileSystem: any FileSystem, configuration: EngineConfiguration, lanes: [LaneStore]) {
            self.fileSystem = fileSystem
            self.configuration = configuration
            self.lanes = lanes
            laneCount = configuration.laneCount
            walDirectory = configuration.resolvedWALDirectory
            partitions = (0..<laneCount).map { WALPartitionID.lane($0) } + [.meta]
            laneRecords = Array(repeating: [:], count: laneCount)
        }

        func partitionDirectory(_ partition: WALPartitionID) -> String { WriteAheadLog.partitionDirectory(walDirectory, partition) }

        /// 1. What each lane's RocksDB holds durably.
        mutating func readAppliedMarkers() throws(EngineError) {
            markers = []
            for lane in lanes { markers.append(try lane.applied()) }
            lowestApplied = markers.map(\.height).min() ?? 0
        }

        /// 2. Recovers the WAL and collects the commit records from the lowest applied height and
        /// the lane records past each lane's applied LSN. A record that passes its checksums but
        /// is not a valid engine record is refused.
        mutating func recoverLog() throws(EngineError) -> WriteAheadLog.Recovered {
            var malformed: (WALPartitionID, LSN)?
            var commits: [UInt64: CommitRecord] = [:]
            var laneRecords = self.laneRecords
            let (markers, lowestApplied, laneCount) = (self.markers, self.lowestApplied, self.laneCount)
            let recovered: WriteAheadLog.Recovered
            do {
                try fileSystem.createDirectories(walDirectory)
                recovered = try WriteAheadLog.recover(
                    fileSystem: fileSystem, directory: walDirectory, partitionIDs: partitions, mode: configuration.wal.recoveryMode,
                    mutations: configuration.wal.mutations, policyWhenUnknown: configuration.wal.fsyncPolicy
                ) { partition, header, payload in
                    if partition.isMeta {
                        guard header.lsn >= lowestApplied else { return }
                        guard header.recordType == EngineRecordType.commit.rawValue, let record = CommitRecord.decode(payload),
                            record.height == header.lsn, record.lanes.count == laneCount
                        else {
                            if malformed == nil { malformed = (partition, header.lsn) }
                            return
                        }
                        commits[record.height] = record
                    } else {
                        let lane = Int(partition.rawValue)
                        guard header.lsn > markers[lane].lsn else { return }
                        guard header.recordType == EngineRecordType.laneBlock.rawValue, let record = LaneBlockRecord.decode(payload)
                        else {
                            if malformed == nil { malformed = (partition, header.lsn) }
                            return
                        }
                        laneRecords[lane][header.lsn] = record
                    }
                }
            } catch let error as WALError {
                throw EngineError.wal(error)
            } catch {
                throw EngineError(.storage, path: walDirectory, "creating the WAL directory: \(error)")
            }
            if let (partition, lsn) = malformed {
                throw EngineError(
                    .corruptState, path: partitionDirectory(partition),
                    "the record at LSN \(lsn) of \(partition) passes its checksums but is not a valid engine record")
            }
            self.commits = commits
            self.laneRecords = laneRecords
            return recovered
        }

        /// 2b. Every lane must be able to come forward from what it applied: the log must still
        /// hold the commit records from the lane's height on and the lane's records after its LSN.
        /// Checkpoints write every lane's position before retention retires the log below it,
        /// so only a lane directory put back on its own (from a snapshot older than the log
        /// keeps, or of another chain) stands below; it is refused naming the lane.
        func refuseLanesBelowTheLog(_ recovered: WriteAheadLog.Recovered) throws(EngineError) {
            let metaFirst = recovered.scans[.meta]?.firstLSN ?? 1
            for (lane, marker) in markers.enumerated() {
                let laneFirst = recovered.scans[.lane(lane)]?.firstLSN ?? 1
                // The commit record at the lane's own height too (4b checks the lane against it);
                // a lane at genesis needs them from height 1.
                let reachesBack = marker.height == 0 ? metaFirst <= 1 : marker.height >= metaFirst
                guard reachesBack, marker.lsn + 1 >= laneFirst else {
                    Probe.engineLaneOfAnotherHistoryRefused.hit()
                    throw EngineError(
                        .missingRecord, lane: lane, height: marker.height, path: configuration.laneDirectory(lane),
                        "the lane has applied height \(marker.height) (LSN \(marker.lsn)), but the log keeps commit records only from height "
                            + "\(metaFirst) and this lane's records only from LSN \(laneFirst): the lane cannot be brought forward "
                            + "(restored on its own from a snapshot older than the log, or of another chain)")
                }
            }
        }

        /// 3. H*, the last committed height: walking up from the lowest applied height, a height
        /// is committed when its commit record is present, chains to the previous MetaRoot, and
        /// every lane record it names is present (or applied) with the recorded lane root.
        /// Refuses when a commit record names a later height durable (synced, then damaged).
        func findCommittedHeight() throws(EngineError) -> UInt64 {
            var committed = lowestApplied
            var previousMetaRoot = commits[lowestApplied]?.metaRoot
            // Why the walk stopped, for the refusal below.
            var stoppedBecause = "its commit record is not in the log"
            var stoppedIn = partitionDirectory(.meta)
            // Bounded: one round per commit record recovered.
            scan: while let record = commits[committed + 1] {
                if let previousMetaRoot, record.previousMetaRoot != previousMetaRoot {
                    throw EngineError(
                        .metaRootMismatch, height: record.height, path: partitionDirectory(.meta),
                        "the commit record does not chain to the previous MetaRoot")
                }
                for (lane, entry) in record.lanes.enumerated() {
                    guard let lsn = entry.lsn, lsn > markers[lane].lsn else { continue }
                    guard let laneRecord = laneRecords[lane][lsn], laneRecord.height == record.height else {
                        // The block's lane record never became durable: the block is not committed.
                        stoppedBecause = "its record in lane \(lane) (LSN \(lsn)) is not in the log"
                        stoppedIn = partitionDirectory(.lane(lane))
                        break scan
                    }
                    guard laneRecord.laneRoot == entry.laneRoot else {
                        throw EngineError(
                            .laneRootMismatch, lane: lane, height: record.height, path: partitionDirectory(.lane(lane)),
                            "the lane record's root \(laneRecord.laneRoot.hex.prefix(16)) differs from the commit record's \(entry.laneRoot.hex.prefix(16))")
                    }
                }
                committed = record.height
                previousMetaRoot = record.metaRoot
            }
            // A commit record in the log (committed or not) that names a later height durable
            // proves the block after H* was synced: it was damaged afterwards (rot, a misdirected
            // write), not torn, and dropping it would lose an acknowledged block.
            if let witness = commits.values.max(by: { ($0.durableHeight, $0.height) < ($1.durableHeight, $1.height) }),
                witness.durableHeight > committed
            {
                throw EngineError(
                    .missingRecord, height: committed + 1, path: stoppedIn,
                    "block \(committed + 1) cannot be recovered: \(stoppedBecause), but the commit record of height \(witness.height) "
                        + "records every block through \(witness.durableHeight) as durable, so it was damaged after it was synced")
            }
            return committed
        }

        /// 4. No lane may be ahead of the log.
        func refuseLanesAheadOfLog(committed: UInt64) throws(EngineError) {
            for (lane, marker) in markers.enumerated() where marker.height > committed {
                throw EngineError(
                    .laneAheadOfLog, lane: lane, height: marker.height, path: configuration.laneDirectory(lane),
                    "the lane has applied height \(marker.height), but the log holds committed blocks only up to \(committed)")
            }
        }

        /// 4b. Each lane's applied state must be this chain's at its height: where the log holds
        /// that height's commit record, the lane root the lane recorded with its applied position
        /// must be the one the commit record names for it. A lane directory copied from another
        /// chain, another fork or another history (lanes are restored one by one) is refused
        /// here, naming the lane, before anything is replayed onto it. (A lane from an older
        /// snapshot of this chain passes, and the log brings it forward.)
        func refuseLanesOfAnotherHistory() throws(EngineError) {
            for (lane, marker) in markers.enumerated() where marker.height > 0 {
                guard let record = commits[marker.height] else { continue }
                let recorded = record.lanes[lane].laneRoot
                guard marker.laneRoot == recorded else {
                    Probe.engineLaneOfAnotherHistoryRefused.hit()
                    throw EngineError(
                        .laneRootMismatch, lane: lane, height: marker.height, path: configuration.laneDirectory(lane),
                        "the lane's applied state at height \(marker.height) has lane root \(marker.laneRoot.hex.prefix(16)), this chain's "
                            + "commit record at that height says \(recorded.hex.prefix(16)): the lane directory is of another chain or history")
                }
            }
        }

        /// 5. Replays each lane's records up to H*, checking every resulting lane root; then
        /// every commit up to H* that names a lane must be applied in it.
        /// A lane whose memtable reaches a quarter of its write buffer during the replay is flushed, so
        /// that RocksDB never flushes it on its own (the log it replays is synced already:
        /// `WALRecovery` syncs every segment it recovers).
        func replayLanes(through committed: UInt64) throws(EngineError) -> ([EngineRecoveryReport.Lane], [Hash32], [LSN]) {
            var reportLanes: [EngineRecoveryReport.Lane] = []
            var laneRoots: [Hash32] = []
            var appliedLSNs: [LSN] = []
            for (lane, store) in lanes.enumerated() {
                let (marker, replayed) = try replay(lane: lane, store: store, through: committed)
                laneRoots.append(try store.root())
                appliedLSNs.append(marker.lsn)
                reportLanes.append(
                    EngineRecoveryReport.Lane(lane: lane, appliedHeightBefore: markers[lane].height, recordsReplayed: replayed, walBytesTruncated: 0))
            }
            return (reportLanes, laneRoots, appliedLSNs)
        }

        private func replay(
            lane: Int, store: LaneStore, through committed: UInt64
        ) throws(EngineError) -> (LaneAppliedMarker, Int) {
            var marker = markers[lane]
            var replayed = 0
            // Bounded by the lane records recovered; LSNs must run on without a gap.
            while let record = laneRecords[lane][marker.lsn + 1], record.height <= committed {
                let (root, tree) = try store.stage(record.operations)
                guard root == record.laneRoot, root == commits[record.height]?.lanes[lane].laneRoot else {
                    throw EngineError(
                        .laneRootMismatch, lane: lane, height: record.height, path: store.path,
                        "replaying the block gives lane root \(root.hex.prefix(16)), the lane record says \(record.laneRoot.hex.prefix(16)), "
                            + "the commit record \(commits[record.height].map { String($0.lanes[lane].laneRoot.hex.prefix(16)) } ?? "is missing")")
                }
                marker = LaneAppliedMarker(height: record.height, lsn: marker.lsn + 1, laneRoot: root)
                try store.write(record.operations, tree: tree, marker: marker)
                replayed += 1
                Probe.engineLaneReplayed.hit()
                if !configuration.wal.mutations.active(.ignoreMemtableBound), store.memtableHolds(atLeast: configuration.memtableCheckpointBytes) {
                    try store.flush()
                    Probe.engineCheckpointForMemtable.hit()
                }
            }
            // Every commit up to H* that names this lane must now be applied.
            if let last = (lowestApplied...committed).reversed().lazy.compactMap({ commits[$0]?.lanes[lane].lsn }).first, last > marker.lsn {
                throw EngineError(
                    .missingRecord, lane: lane, height: committed, path: partitionDirectory(.lane(lane)),
                    "the lane record at LSN \(marker.lsn + 1) is missing before LSN \(last)")
            }
            return (marker, replayed)
        }

        /// 6. Drops the log's records past H* (uncommitted blocks); returns how many blocks.
        func discardUncommitted(
            after committed: UInt64, appliedLSNs: [LSN], recovered: inout WriteAheadLog.Recovered, reportLanes: inout [EngineRecoveryReport.Lane]
        ) throws(EngineError) -> UInt64 {
            var dropped: UInt64 = 0
            do {
                for lane in 0..<laneCount {
                    let scan = recovered.scans[.lane(lane)]!
                    if scan.lastLSN > appliedLSNs[lane] {
                        reportLanes[lane].walBytesTruncated = try WriteAheadLog.discardRecords(
                            fileSystem: fileSystem, directory: walDirectory, partition: .lane(lane), after: appliedLSNs[lane],
                            recovered: &recovered)
                    }
                }
                let metaScan = recovered.scans[.meta]!
                if metaScan.lastLSN > committed {
                    dropped = metaScan.lastLSN - committed
                    Probe.engineUncommittedBlockDropped.hit()
                    try WriteAheadLog.discardRecords(
                        fileSystem: fileSystem, directory: walDirectory, partition: .meta, after: committed, recovered: &recovered)
                }
            } catch {
                throw EngineError.wal(error)
            }
            return dropped
        }

        /// 7. Recomputes the MetaRoot from the lane roots; it must equal H*'s commit record's.
        func checkMetaRoot(committed: UInt64, laneRoots: [Hash32]) throws(EngineError) -> Hash32 {
            if committed == 0 { return MetaRoot.compute(chainID: configuration.chainID, height: 0, laneRoots: laneRoots) }
            guard let record = commits[committed] else {
                throw EngineError(
                    .missingRecord, height: committed, path: partitionDirectory(.meta), "the commit record of the last committed height is missing")
            }
            let recomputed = MetaRoot.compute(chainID: configuration.chainID, height: committed, laneRoots: laneRoots)
            // A lane whose root is not the one the commit record names is the one to blame.
            if recomputed != record.metaRoot, !configuration.wal.mutations.active(.trustLaneDirectories),
                let lane = laneRoots.indices.first(where: { laneRoots[$0] != record.lanes[$0].laneRoot })
            {
                throw EngineError(
                    .laneRootMismatch, lane: lane, height: committed, path: configuration.laneDirectory(lane),
                    "the lane's root is \(laneRoots[lane].hex.prefix(16)), the commit record of the last committed height says "
                        + "\(record.lanes[lane].laneRoot.hex.prefix(16))")
            }
            guard recomputed == record.metaRoot else {
                throw EngineError(
                    .metaRootMismatch, height: committed, path: configuration.dataDirectory,
                    "the MetaRoot recomputed from the lane roots is \(recomputed.hex), the log recorded \(record.metaRoot.hex)")
            }
            return record.metaRoot
        }

        /// 8. Durable before anything new: opens the writers, syncs every partition, flushes the
        /// lanes.
        func makeDurable(recovered: WriteAheadLog.Recovered, clock: any WALClock, walObserver: (any WALObserver)?) throws(EngineError) -> WriteAheadLog {
            let wal: WriteAheadLog
            do {
                wal = try WriteAheadLog(
                    fileSystem: fileSystem, directory: walDirectory, configuration: configuration.wal, clock: clock, recovered: recovered,
                    observer: walObserver)
                if !configuration.wal.mutations.active(.skipRecoverySync) {
                    for partition in partitions { try wal.partition(partition).checkpointSync() }
                }
            } catch {
                throw EngineError.wal(error)
            }
            if !configuration.wal.mutations.active(.skipRecoverySync) {
                for store in lanes { try store.flush() }
            }
            return wal
        }
    }
}
