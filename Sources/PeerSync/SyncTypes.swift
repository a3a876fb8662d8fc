import Engine

/// What a peer says of itself (`GET /v1/sync/status`), as the driver decoded it. Nothing in it
/// is trusted beyond choosing whom to ask: heights are checked against what the peer then serves.
public struct PeerStatus: Sendable, Equatable {
    public var chainID: String
    public var genesisDigest: Hash32
    public var laneCount: Int
    /// The highest height the peer serves (its durable height).
    public var servableHeight: UInt64
    /// The lowest height the peer still serves whole; nil when it serves none.
    public var oldestServableHeight: UInt64?
    public var archive: Bool

    public init(
        chainID: String, genesisDigest: Hash32, laneCount: Int, servableHeight: UInt64, oldestServableHeight: UInt64?, archive: Bool
    ) {
        self.chainID = chainID
        self.genesisDigest = genesisDigest
        self.laneCount = laneCount
        self.servableHeight = servableHeight
        self.oldestServableHeight = oldestServableHeight
        self.archive = archive
    }
}

/// Why an exchange with a peer failed, as the driver classifies it.
public enum PeerFault: Error, Sendable, Equatable {
    /// It could not be reached, timed out, or answered 5xx: try again later (backoff).
    case unreachable(String)
    /// It answered something false or malformed (an undecodable range, wrong heights, a root the
    /// quorum contradicts): it is faulty and left alone for a while.
    case misbehaved(String)
}

/// A request the machine wants sent to a peer.
public enum SyncRequest: Sendable, Equatable {
    /// `GET /v1/sync/status`.
    case status
    /// `GET /v1/sync/headers?from=&count=`.
    case links(from: UInt64, count: Int)
    /// `GET /v1/sync/blocks?from=&max_blocks=`.
    case blocks(from: UInt64, count: Int)
}

/// What the driver feeds the machine: a timer tick, a peer's answer, or what applying did.
public enum SyncInput: Sendable, Equatable {
    case tick
    case status(peer: Int, Result<PeerStatus, PeerFault>)
    case links(peer: Int, from: UInt64, Result<[ChainLink], PeerFault>)
    case blocks(peer: Int, from: UInt64, Result<[SyncBlock], PeerFault>)
    /// The engine's height and MetaRoot after an `apply` (sent after every apply, also one that
    /// was refused part-way).
    case applied(height: UInt64, metaRoot: Hash32)
    /// The engine refused the block at `height` (`peer_block_mismatch`); nothing of it was written.
    case applyRefused(height: UInt64, reason: String)
    /// The engine is at `height` with `metaRoot` by its own commits (a writer's): the machine
    /// checks that height against its peers too.
    case committedLocally(height: UInt64, metaRoot: Hash32)
}

/// Why syncing stops for good; the driver maps each to an exit code.
public enum SyncStop: Sendable, Equatable {
    /// The quorum attests another MetaRoot at a height this node holds: a fork. Nothing was
    /// overwritten (exit 65).
    case fork(height: UInt64, local: Hash32, attested: Hash32)
    /// Too few peers are on this chain to ever form a quorum (exit 78: the configuration).
    case noQuorumPossible(usable: Int, quorum: Int)
    /// Fewer than a quorum of the peers that have committed the next height still hold it (the
    /// rest retired it): no quorum can attest it again, state sync is needed (exit 79).
    case needsStateSync(nextHeight: UInt64, oldestServable: UInt64)

    /// The stop's name in reports and scenario files: `fork`, `no_quorum_possible`, `needs_state_sync`.
    public var kindName: String {
        switch self {
        case .fork: "fork"
        case .noQuorumPossible: "no_quorum_possible"
        case .needsStateSync: "needs_state_sync"
        }
    }
}

/// What the machine asks the driver to do.
public enum SyncOutput: Sendable, Equatable {
    case request(peer: Int, SyncRequest)
    /// Commit these blocks in order (`Engine.commit(_:attested:)`), then report `.applied`.
    case apply([SyncBlock], attested: [UInt64: Hash32])
    /// The peer answered falsely; it is left alone (log it, count it).
    case peerFaulty(peer: Int, why: String)
    /// The node reached the quorum's height for the first time (the one-shot sync exits 0).
    case caughtUp(height: UInt64)
    case stop(SyncStop)
}

/// Where sync stands, for `/v1/status`.
public enum SyncPhase: String, Sendable, Equatable {
    case catchingUp = "catching_up"
    case following
    case synced
    /// No quorum of peers can be asked right now (they are unreachable, backing off or faulty).
    case stalled
}
