/// Deliberate bugs that the simulator's tests switch on, one at a time, to prove the simulator
/// catches them. The checks are compiled only where `RIVELLUM_MUTATIONS` is defined — debug
/// builds, which is what `swift test` builds; a release build contains none of them, whatever a
/// configuration says.
public enum EngineMutation: String, CaseIterable, Sendable {
    /// A new WAL segment is created and synced, but its directory is not.
    case skipSegmentRollDirectorySync = "skip_segment_roll_directory_sync"
    /// Under strict, a commit is acknowledged as durable without the sync that covers it.
    case acknowledgeBeforeSync = "acknowledge_before_sync"
    /// Every damage recovery finds is treated as a torn tail and cut off.
    case midLogDamageAsTornTail = "mid_log_damage_as_torn_tail"
    /// A checkpoint flushes the lanes' RocksDB without syncing the WAL first.
    case flushLanesBeforeLogSync = "flush_lanes_before_log_sync"
    /// Recovery does not make the recovered state durable before accepting writes.
    case skipRecoverySync = "skip_recovery_sync"
    /// A peer's block is taken on its word: its lane roots and MetaRoot are not recomputed
    /// from its operations (only the attested root is compared with its claim).
    case skipPeerBlockRootCheck = "skip_peer_block_root_check"
    /// A snapshot's `.partial` directory is renamed to its name, but the parent directory is
    /// not synced: a power loss can take the snapshot away after create reported it made.
    case skipSnapshotRenameDirectorySync = "skip_snapshot_rename_directory_sync"
    /// Start takes every lane directory on its word: neither a lane's applied root is checked
    /// against the commit record at its height, nor whether the log still reaches back to it,
    /// and a MetaRoot mismatch names no lane.
    case trustLaneDirectories = "trust_lane_directories"
    /// Lanes are flushed only every `flushEveryBlocks` blocks, however full their memtables:
    /// RocksDB would flush a full one on its own, ahead of the log.
    case ignoreMemtableBound = "ignore_memtable_bound"
}

extension Set where Element == EngineMutation {
    /// Whether `mutation` is switched on (always false in builds without `RIVELLUM_MUTATIONS`).
    @inline(__always)
    func active(_ mutation: EngineMutation) -> Bool {
        #if RIVELLUM_MUTATIONS
        return contains(mutation)
        #else
        return false
        #endif
    }
}
