import FaultFS
import PeerSync

/// The shape of one `SyncSwarmWorkload` seed: how many lanes and followers, who lies and how,
/// how faulty the network is, how the late node starts. A sweep draws it from the seed
/// (`drawn`); a sync scenario fixes the parts it names and draws the rest.
struct SyncSwarmSetup: CustomStringConvertible {
    /// How the node that starts late gets its first state.
    enum CatcherStart: String {
        /// An empty data directory: every block from an archive peer (full resync).
        case genesis
        /// The primary's snapshot, copied over and restored into an empty directory (new
        /// hardware), then the blocks after it from peers.
        case snapshot
        /// An empty data directory and no archive peer: state sync from the snapshots the peers
        /// offer (the primary takes them, the followers hold copies), then blocks from its height.
        case stateSync = "state_sync"
    }

    var laneCount: Int
    var followers: Int
    var byzantine: ByzantineMode?
    var rates: SimulatedNetwork.Rates
    var networkSeed: UInt64
    /// The chance per step that a crash point is armed in a live syncing node.
    var crashChance: Double
    var blocksPerRequest: Int
    var applyBatchMax: Int
    var catcherStart: CatcherStart = .genesis
    /// false: every node retires WAL segments (no archive), so a node starting from genesis
    /// finds no peer holding height 1 and must stop, naming state sync.
    var archive = true
    /// false: no file-system faults at all (a scenario about the network or a peer).
    var fileSystemFaults = true
    /// Each node's WAL segment size and checkpoint interval are drawn from these.
    var segmentSizeBytes = 2_048...16_384
    var flushEveryBlocks = Self.flushEveryBlocksUsual
    static let flushEveryBlocksUsual = 4...24
    /// Blocks the catcher commits on its own before it syncs: a local fork the quorum contradicts.
    var catcherOwnBlocks = 0
    /// The primary loses its newest acknowledged block to rot after every follower holds it,
    /// and comes back as a writer with them as peers: it must take the block back from them
    /// before it commits again.
    var writerLosesTail = false
    /// The primary takes a snapshot every this many blocks (0: never), offered to peers and
    /// copied to every follower that is up.
    var snapshotEveryBlocks = 0
    /// How the byzantine node lies about snapshots (state-sync seeds).
    var snapshotLie: SnapshotLie?
    /// The catcher's state-sync chunk size (small, so that files take several chunks).
    var stateSyncChunkBytes: UInt64 = 4_096
    /// The byzantine node is the catcher's first peer (asked first for manifests and chunks,
    /// winning ties), not its last.
    var byzantineFirst = false

    /// A state-sync seed: no archive, snapshots taken and copied, the catcher starting empty.
    mutating func stateSyncFromPeers(random: inout DeterministicRandom) {
        catcherStart = .stateSync
        archive = false
        writerLosesTail = false
        flushEveryBlocks = Self.flushEveryBlocksUsual
        snapshotEveryBlocks = random.int(in: 8...16)
        snapshotLie = random.chance(0.6) ? SnapshotLie.allCases[random.int(in: 0...(SnapshotLie.allCases.count - 1))] : nil
        stateSyncChunkBytes = [1_024, 4_096, 16_384][random.int(in: 0...2)]
        byzantineFirst = random.chance(0.5)
    }

    /// The writer loses its newest block to rot once, mid-run; no node checkpoints on its own
    /// (the lost block's lane state must not be flushed ahead of the log, which would be a
    /// correct refusal instead).
    mutating func loseWriterTail() {
        writerLosesTail = true
        flushEveryBlocks = 1_000...1_000
    }

    /// Whether the catcher is meant to stop syncing (a fork, or no peer holding its next height);
    /// otherwise any stop is a violation.
    var catcherMayStop: Bool { (!archive && catcherStart != .stateSync) || catcherOwnBlocks > 0 }

    /// Whether a node of `role` may stop for `stop`: the catcher when it is meant to, and,
    /// without an archive, a follower that fell behind every peer's retention (the documented
    /// outcome: the blocks it needs are gone; the simulator's retention is a few blocks long).
    func mayStop(_ role: SimulatedNode.Role, _ stop: SyncStop) -> Bool {
        switch role {
        case .catcher: catcherMayStop
        case .follower:
            if case .needsStateSync = stop { !archive } else { false }
        case .primary: false
        }
    }

    /// Draws every part from the seed, in a fixed order (a seed replays exactly).
    static func drawn(random: inout DeterministicRandom) -> SyncSwarmSetup {
        let laneCount = random.int(in: 1...4)
        let followers = random.int(in: 1...3)
        let byzantine = random.chance(0.5) ? ByzantineMode.allCases[random.int(in: 0...(ByzantineMode.allCases.count - 1))] : nil
        var rates = SimulatedNetwork.Rates()
        rates.drop = random.chance(0.5) ? Double(random.int(in: 1...100)) / 1_000 : 0
        rates.duplicate = random.chance(0.5) ? Double(random.int(in: 1...50)) / 1_000 : 0
        rates.corrupt = random.chance(0.4) ? Double(random.int(in: 1...20)) / 1_000 : 0
        rates.partition = random.chance(0.4) ? Double(random.int(in: 1...20)) / 1_000 : 0
        rates.delayMaxNanoseconds = UInt64(random.int(in: 5...300)) * 1_000_000
        let networkSeed = random.next()
        let crashChance = random.chance(0.8) ? Double(random.int(in: 5...40)) / 1_000 : 0
        var setup = SyncSwarmSetup(
            laneCount: laneCount, followers: followers, byzantine: byzantine, rates: rates, networkSeed: networkSeed,
            crashChance: crashChance, blocksPerRequest: random.int(in: 2...64), applyBatchMax: random.int(in: 1...64))
        setup.catcherStart = random.chance(0.3) ? .snapshot : .genesis
        if random.chance(0.15) { setup.loseWriterTail() }
        // Its own stream, so that the draws above stay what they were for every seed.
        var stateSyncRandom = DeterministicRandom(seed: networkSeed ^ 0x5354_4154)
        if setup.catcherStart == .genesis && stateSyncRandom.chance(0.4) { setup.stateSyncFromPeers(random: &stateSyncRandom) }
        return setup
    }

    var description: String {
        "lanes=\(laneCount) followers=\(followers) byzantine=\(byzantine?.rawValue ?? "none") catcher_start=\(catcherStart.rawValue) "
            + "archive=\(archive) snapshot_every=\(snapshotEveryBlocks) snapshot_lie=\(snapshotLie?.rawValue ?? "none") byzantine_first=\(byzantineFirst) chunk_bytes=\(stateSyncChunkBytes) "
            + "fs_faults=\(fileSystemFaults) catcher_own_blocks=\(catcherOwnBlocks) writer_loses_tail=\(writerLosesTail) "
            + "blocks_per_request=\(blocksPerRequest) apply_batch_max=\(applyBatchMax) crash_chance=\(crashChance) network: \(rates)"
    }
}
