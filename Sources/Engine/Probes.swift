import Synchronization

/// Named coverage probes on the recovery and durability branches. The simulator's sweep counts
/// how often each was hit and flags those its seeds never reached, so a seed budget that stops
/// exercising a branch is noticed. Counting only: probes never change behaviour.
public enum Probe: String, CaseIterable, Sendable {
    case walSegmentRolled = "wal.segment_rolled"
    case walSyncFailed = "wal.sync_failed"
    case walTornTailDropped = "wal.torn_tail_dropped"
    case walTornSegmentHeaderDropped = "wal.torn_segment_header_dropped"
    case walMidLogRefused = "wal.mid_log_refused"
    case walCleanZeroTailTrimmed = "wal.clean_zero_tail_trimmed"
    case walUncommittedDiscarded = "wal.uncommitted_discarded"
    case walSegmentsRetired = "wal.segments_retired"
    case walTransientReadDamage = "wal.transient_read_damage"
    /// Counted by the simulator's oracle, not the engine: acknowledged records lost at a torn
    /// tail after corruption at rest (the documented limit).
    case walAcknowledgedTailLostToCorruption = "wal.acknowledged_tail_lost_to_corruption"
    case engineLaneReplayed = "engine.lane_replayed"
    case engineUncommittedBlockDropped = "engine.uncommitted_block_dropped"
    case engineCheckpoint = "engine.checkpoint"
    /// A lane's memtable reached a quarter of its write buffer: checkpointed (or, in a replay,
    /// flushed) before RocksDB could flush it on its own.
    case engineCheckpointForMemtable = "engine.checkpoint_for_memtable"
    /// Start refused a lane directory that cannot be this chain's (its applied root differs
    /// from the commit record at its height) or that the log no longer reaches back to.
    case engineLaneOfAnotherHistoryRefused = "engine.lane_of_another_history_refused"
    case engineCommitFailed = "engine.commit_failed"
    case engineRecoveryRefused = "engine.recovery_refused"
    /// Recovery refused and was run again from fresh reads before the refusal stood.
    case engineRecoveryRefusalReread = "engine.recovery_refusal_reread"
    /// A RocksDB read reported corruption and was read again (a bad read, or damage that then
    /// failed every attempt).
    case laneCorruptReadRetried = "lane.corrupt_read_retried"
    /// A lane's level-0 files were compacted at a checkpoint (no automatic compaction).
    case laneCompacted = "lane.compacted"
    case snapshotCheckpoint = "snapshot.checkpoint"
    /// A restore swapped the snapshot's lanes in and completed its journal.
    case snapshotRestored = "snapshot.restored"
    case snapshotPartialRemoved = "snapshot.partial_removed"
    case snapshotRestoreRolledForward = "snapshot.restore_rolled_forward"
    case snapshotRestoreStagingDiscarded = "snapshot.restore_staging_discarded"
    /// Peer sync (the `SyncMachine`): a peer answered falsely and was left alone.
    case syncPeerFaulty = "sync.peer_faulty"
    /// A peer could not be reached (or timed out) and was backed off.
    case syncPeerBackedOff = "sync.peer_backed_off"
    /// A block range was asked for again: its answer failed (unreachable, damaged in flight, timed out) or its block was refused.
    case syncRangeRefetched = "sync.range_refetched"
    /// A block whose MetaRoot the quorum does not attest (another chain's) was refused unapplied.
    case syncForkedBlockRefused = "sync.forked_block_refused"
    /// The engine refused a peer's block (its operations do not give its roots); nothing written.
    case syncBlockRefusedByEngine = "sync.block_refused_by_engine"
    /// Counted by the simulator: a node crashed while behind its peers, recovered, and caught up.
    case syncResumedAfterCrash = "sync.resumed_after_crash"
    /// A writer that came back behind a peer took new blocks only after catching up (`WriterGate`).
    case syncWriterCaughtUpFirst = "sync.writer_caught_up_first"
    /// State sync (`StateSyncMachine`): a snapshot was chosen, attested by the quorum or the anchor.
    case stateSyncChosen = "state_sync.chosen"
    /// A state sync started again with files or chunks already staged, and kept them.
    case stateSyncResumed = "state_sync.resumed"
    /// A staged file did not hash to its manifest's SHA-256 and was fetched again.
    case stateSyncFileRefused = "state_sync.file_refused"
    /// A chunk took longer than the minimum speed allows; its peer was dropped for another.
    case stateSyncSlowPeerDropped = "state_sync.slow_peer_dropped"
    /// A manifest a peer served was refused: not the offered digest, malformed, or not the offer's.
    case stateSyncManifestRefused = "state_sync.manifest_refused"
    /// Every file hashed to its manifest, yet the install's full verification refused the
    /// snapshot (a manifest that lies consistently): another is chosen.
    case stateSyncInstallRefused = "state_sync.install_refused"
    /// Counted by the simulator: an off-site push found an upload the store lost or cut short
    /// (reading it back) and failed rather than report the snapshot pushed.
    case offsiteUploadDamageCaught = "offsite.upload_damage_caught"
    /// Counted by the simulator: a pull refused a snapshot whose object or manifest the store damaged.
    case offsitePullRefusedDamage = "offsite.pull_refused_damage"
    /// Counted by the simulator: a push found objects another snapshot had already stored.
    case offsiteObjectShared = "offsite.object_shared"
    /// Counted by the simulator: a crash interrupted a state sync's install, and the node stood at
    /// a snapshot's height again afterwards (the restore rolled forward, or the install ran again).
    case stateSyncInstallRolledForward = "state_sync.install_rolled_forward"

    /// Branches a sweep of a few hundred seeds may well miss: a zero tail needs a crash between
    /// an extension and its data; a tail lost to corruption is the documented limit (rot in the
    /// last synced record with no later witness); a staging directory left without a journal
    /// needs a crash inside a narrow window of a restore. The sweep's `--require-probes` fails
    /// on every other probe never hit.
    public var isRare: Bool {
        switch self {
        case .walCleanZeroTailTrimmed, .walAcknowledgedTailLostToCorruption, .snapshotRestoreStagingDiscarded: true
        // A crash inside the install of a state sync is a narrow window of a few seeds; a liar's
        // consistent manifest is chosen only when it offers the newest attested snapshot first
        // (its scenario runs it every time).
        case .stateSyncInstallRolledForward, .stateSyncInstallRefused: true
        // The sweep's lanes keep RocksDB's default 64 MiB write buffer, which its blocks never
        // fill; `EngineMemtableBoundTests` reach it with small buffers.
        case .engineCheckpointForMemtable: true
        default: false
        }
    }

    /// Counts one hit.
    @inline(__always)
    public func hit() {
        ProbeCounters.counts.withLock { $0[self, default: 0] += 1 }
    }
}

/// The process-wide probe counters.
public enum ProbeCounters {
    static let counts = Mutex<[Probe: UInt64]>([:])

    /// A copy of every counter.
    public static func snapshot() -> [Probe: UInt64] { counts.withLock { $0 } }
}
