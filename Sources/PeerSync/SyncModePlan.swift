/// How a node brings itself up to date from its peers (`sync.mode`, `--mode`).
public enum SyncMode: String, Sendable, Equatable, CaseIterable {
    /// Blocks, or state sync when the data directory is empty or the peers no longer hold the
    /// next block (falling back to blocks from genesis when no attested snapshot is offered to
    /// an empty directory).
    case auto
    /// Blocks only: a node whose next block no quorum of peers holds stops (exit 79).
    case blocks
    /// State sync (a peer's snapshot) first, then blocks from its height.
    case snapshot
}

/// Which sync runs next, decided from what the last one ended with — the one decision table
/// the node's `sync` and `run` follow (and the simulator's nodes). Bounded: at most
/// `stateSyncRoundsMax` state syncs, so peers whose retention outruns every snapshot they offer
/// end in a stop, not a loop.
public struct SyncModePlan: Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case stateSync
        case blockSync
        /// Give up with this reason (the caller maps it to its exit code).
        case stop(StopReason)
    }

    public enum StopReason: Sendable, Equatable {
        /// State sync stopped for good.
        case stateSync(StateSyncStop)
        /// No quorum of peers holds the next block, and state sync may not run (blocks mode) or
        /// already ran `stateSyncRoundsMax` times.
        case needsStateSync
        /// State sync made no progress for its stall bound, and blocks may not be tried instead.
        case stateSyncStalled(seconds: Int)
    }

    public enum BlockSyncEnd: Sendable, Equatable {
        /// Too few peers to make a quorum still hold the next block.
        case needsStateSync
    }

    public static let stateSyncRoundsMax = 2

    public let mode: SyncMode
    public let startedEmpty: Bool
    public private(set) var stateSyncRounds = 0
    public private(set) var installed = false

    /// - Parameter dataDirectoryEmpty: no genesis yet (a new or wiped data directory).
    public init(mode: SyncMode, dataDirectoryEmpty: Bool) {
        self.mode = mode
        startedEmpty = dataDirectoryEmpty
    }

    /// The first step: state sync when forced, or (auto) into an empty data directory.
    public mutating func first() -> Step {
        switch mode {
        case .snapshot: return beginStateSync()
        case .blocks: return .blockSync
        case .auto: return startedEmpty ? beginStateSync() : .blockSync
        }
    }

    /// After a state sync installed its snapshot: blocks from its height.
    public mutating func stateSyncInstalled() -> Step {
        installed = true
        return .blockSync
    }

    /// After a state sync stopped without installing. An empty directory in auto mode with no
    /// attested snapshot to take syncs blocks from genesis instead (archive peers may hold them;
    /// if not, block sync stops in turn).
    public mutating func stateSyncStopped(_ stop: StateSyncStop) -> Step {
        if case .noAttestedSnapshot = stop, mode == .auto, startedEmpty, !installed { return .blockSync }
        return .stop(.stateSync(stop))
    }

    /// After a state sync made no progress for its stall bound (peers unreachable, or none
    /// answering what it needs). An empty directory in auto mode tries blocks instead (the
    /// daemon then serves its API and waits for peers as block sync does).
    public mutating func stateSyncStalled(seconds: Int) -> Step {
        if mode == .auto, startedEmpty, !installed { return .blockSync }
        return .stop(.stateSyncStalled(seconds: seconds))
    }

    /// After block sync stopped: state sync when allowed and not yet run too often.
    public mutating func blockSyncEnded(_ end: BlockSyncEnd) -> Step {
        switch end {
        case .needsStateSync:
            guard mode != .blocks, stateSyncRounds < Self.stateSyncRoundsMax else { return .stop(.needsStateSync) }
            return beginStateSync()
        }
    }

    private mutating func beginStateSync() -> Step {
        precondition(stateSyncRounds < Self.stateSyncRoundsMax, "state sync runs a bounded number of times")
        stateSyncRounds += 1
        return .stateSync
    }
}
