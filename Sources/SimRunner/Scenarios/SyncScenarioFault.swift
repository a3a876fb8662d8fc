import FaultFS

/// The named sync cases a scenario can run (`fault = "..."`): each fixes the parts of a
/// `SyncSwarmWorkload` seed's setup it is about and leaves the rest drawn from the scenario's
/// seed. Unless a case says so, the network is clean and nothing crashes, so the named fault is
/// the only one and its branch is the one exercised (`expect_probes` says which).
public enum SyncScenarioFault: String, Sendable, CaseIterable {
    /// A byzantine peer alters one operation of a block it serves, keeping the block's claims.
    case peerAlteredOperation = "peer_altered_operation"
    /// A byzantine peer serves a self-consistent chain of its own from the same genesis.
    case peerOwnFork = "peer_own_fork"
    /// A byzantine peer claims heights it does not have.
    case peerFalseHeights = "peer_false_heights"
    /// A byzantine peer answers block requests with more than any bound allows.
    case peerOversized = "peer_oversized"
    /// A byzantine peer never answers.
    case peerStalls = "peer_stalls"
    /// Bits flip in block ranges in flight (the range checksums catch them).
    case corruptedInFlight = "corrupted_in_flight"
    /// Messages dropped and duplicated, pairs partitioned for seconds at a time.
    case partitionedNetwork = "partitioned_network"
    /// Followers and the catching-up node crash and lose power at any operation, catch-up too.
    case crashDuringCatchUp = "crash_during_catch_up"
    /// New hardware: the primary's snapshot restored into an empty directory (crashing inside
    /// the restore in some seeds), then the blocks after it from peers.
    case restoreSnapshotThenSync = "restore_snapshot_then_sync"
    /// An empty directory, and no peer keeps the whole history: the node must stop, naming
    /// state sync.
    case resyncWithoutArchivePeer = "resync_without_archive_peer"
    /// The catching-up node holds blocks of its own the quorum contradicts: it must stop on
    /// the fork, overwriting nothing.
    case localFork = "local_fork"
    /// The writer loses its newest acknowledged block to rot after its followers hold it; it
    /// restarts with them as peers and must take it back from them before it commits again.
    case writerBehindPeers = "writer_behind_peers"
    /// No peer keeps the whole history; the peers keep snapshots (the writer takes them, the
    /// followers hold copies): an empty node state-syncs, then syncs blocks, and converges.
    case stateSyncFromPeers = "state_sync_from_peers"
    /// State sync with a byzantine peer that flips a bit in every chunk it serves.
    case stateSyncAlteredChunk = "state_sync_altered_chunk"
    /// State sync with a byzantine peer that alters the manifests it serves.
    case stateSyncAlteredManifest = "state_sync_altered_manifest"
    /// State sync with a byzantine peer offering a newer snapshot under a true root whose
    /// manifest lies consistently about one altered SST: only the install's verification refuses it.
    case stateSyncTamperedSnapshot = "state_sync_tampered_snapshot"
    /// State sync with a byzantine peer offering a snapshot with a MetaRoot nobody vouches for.
    case stateSyncForgedSnapshot = "state_sync_forged_snapshot"
    /// State sync with a byzantine peer that never answers a chunk request.
    case stateSyncSlowPeer = "state_sync_slow_peer"
    /// State sync while the syncing nodes crash and lose power at any operation of the download,
    /// the checks and the install, with file-system faults.
    case crashDuringStateSync = "crash_during_state_sync"

    /// The snapshot lie of a state-sync case (nil: none, or not a state-sync case).
    var stateSyncLie: SnapshotLie?? {
        switch self {
        case .stateSyncFromPeers, .crashDuringStateSync: .some(nil)
        case .stateSyncAlteredChunk: .alteredChunk
        case .stateSyncAlteredManifest: .alteredManifest
        case .stateSyncTamperedSnapshot: .tamperedSnapshot
        case .stateSyncForgedSnapshot: .forgedSnapshot
        case .stateSyncSlowPeer: .slowChunks
        default: nil
        }
    }

    /// Fixes the setup's named parts.
    func adjust(_ setup: inout SyncSwarmSetup, followers: Int?) {
        setup.rates = SimulatedNetwork.Rates(delayMaxNanoseconds: setup.rates.delayMaxNanoseconds)
        setup.crashChance = 0
        setup.fileSystemFaults = false
        setup.byzantine = nil
        setup.writerLosesTail = false
        setup.flushEveryBlocks = SyncSwarmSetup.flushEveryBlocksUsual
        if let followers { setup.followers = followers }
        switch self {
        case .peerAlteredOperation: setup.byzantine = .alteredOperation
        case .peerOwnFork: setup.byzantine = .ownFork
        case .peerFalseHeights: setup.byzantine = .falseHeights
        case .peerOversized: setup.byzantine = .oversized
        case .peerStalls: setup.byzantine = .stall
        case .corruptedInFlight: setup.rates.corrupt = 0.2
        case .partitionedNetwork:
            setup.rates.drop = 0.05
            setup.rates.duplicate = 0.05
            setup.rates.partition = 0.05
        case .crashDuringCatchUp:
            setup.crashChance = 0.04
            setup.fileSystemFaults = true
        case .restoreSnapshotThenSync:
            setup.catcherStart = .snapshot
            setup.crashChance = 0.02
            setup.fileSystemFaults = true
        case .resyncWithoutArchivePeer:
            // Small segments and frequent checkpoints retire height 1 before the node starts, while
            // the followers (a few blocks behind at most) still find what they need.
            setup.archive = false
            setup.segmentSizeBytes = 4_096...4_096
            setup.flushEveryBlocks = 2...4
        case .localFork: setup.catcherOwnBlocks = 3
        case .writerBehindPeers: setup.loseWriterTail()
        case .crashDuringStateSync:
            setup.crashChance = 0.04
            setup.fileSystemFaults = true
        default: break
        }
        if self != .restoreSnapshotThenSync { setup.catcherStart = .genesis }
        if case .some(let lie) = stateSyncLie {
            var random = DeterministicRandom(seed: setup.networkSeed ^ 0x5354_4154)
            setup.stateSyncFromPeers(random: &random)
            setup.snapshotLie = lie
            // A liar asked first is asked for the manifest and its share of the chunks.
            setup.byzantineFirst = lie != nil
        }
    }
}
