import Engine

/// One file of the chosen snapshot, as its verified manifest lists it.
public struct StateSyncFile: Sendable, Equatable {
    public var path: String
    public var sizeBytes: UInt64
    public var sha256: String

    public init(path: String, sizeBytes: UInt64, sha256: String) {
        self.path = path
        self.sizeBytes = sizeBytes
        self.sha256 = sha256
    }
}

/// The manifest of the chosen snapshot, after the driver checked its bytes against the
/// offered digest and decoded it (`SnapshotManifest`); the machine checks it against the offer.
public struct StateSyncManifest: Sendable, Equatable {
    public var chainID: String
    public var laneCount: Int
    public var height: UInt64
    public var metaRoot: Hash32
    public var files: [StateSyncFile]

    public init(chainID: String, laneCount: Int, height: UInt64, metaRoot: Hash32, files: [StateSyncFile]) {
        self.chainID = chainID
        self.laneCount = laneCount
        self.height = height
        self.metaRoot = metaRoot
        self.files = files
    }
}

/// A manifest as a peer served it: its bytes (checked against the offered digest by the
/// driver) and what they decode to.
public struct FetchedManifest: Sendable, Equatable {
    public var bytes: [UInt8]
    public var manifest: StateSyncManifest

    public init(bytes: [UInt8], manifest: StateSyncManifest) {
        self.bytes = bytes
        self.manifest = manifest
    }
}

/// What a crashed or stopped state sync left in staging, verified by the driver when it
/// starts again: the manifest it was fetching, the files already whole and verified, and the
/// chunks of others already written durably. None of it is fetched again.
public struct StateSyncStaged: Sendable, Equatable {
    public var manifestSHA256: String
    public var manifestBytes: [UInt8]
    public var manifest: StateSyncManifest
    public var offer: SnapshotOffer
    public var verifiedFiles: Set<String>
    /// Per file, the offsets of the chunks already staged.
    public var stagedChunks: [String: Set<UInt64>]

    public init(
        manifestSHA256: String, manifestBytes: [UInt8], manifest: StateSyncManifest, offer: SnapshotOffer, verifiedFiles: Set<String>,
        stagedChunks: [String: Set<UInt64>]
    ) {
        self.manifestSHA256 = manifestSHA256
        self.manifestBytes = manifestBytes
        self.manifest = manifest
        self.offer = offer
        self.verifiedFiles = verifiedFiles
        self.stagedChunks = stagedChunks
    }
}

/// A request the state-sync machine wants sent to a peer.
public enum StateSyncRequest: Sendable, Equatable {
    /// `GET /v1/sync/status`.
    case status
    /// `GET /v1/sync/snapshots`.
    case offers
    /// `GET /v1/sync/headers?from=H&count=1`: the peer's MetaRoot at one height.
    case link(height: UInt64)
    /// `GET /v1/sync/snapshots/{name}/manifest`.
    case manifest(name: String)
    /// `GET /v1/sync/snapshots/{name}/file?path=` with `Range: bytes=offset-(offset+count-1)`.
    case chunk(name: String, path: String, offset: UInt64, count: UInt64)
}

/// What the driver feeds the state-sync machine.
public enum StateSyncInput: Sendable, Equatable {
    case tick
    case status(peer: Int, Result<PeerStatus, PeerFault>)
    case offers(peer: Int, Result<[SnapshotOffer], PeerFault>)
    case link(peer: Int, height: UInt64, Result<ChainLink, PeerFault>)
    /// The manifest the peer served, already checked against the digest and decoded.
    case manifest(peer: Int, name: String, Result<FetchedManifest, PeerFault>)
    case chunk(peer: Int, path: String, offset: UInt64, Result<[UInt8], PeerFault>)
    /// After `.checkFile`: whether the staged file has the manifest's size and SHA-256.
    case fileChecked(path: String, intact: Bool)
    /// After `.install`: the engine now stands at the snapshot's height and MetaRoot.
    case installed(height: UInt64, metaRoot: Hash32)
    /// After `.install`: the full verification of the staged snapshot refused it (staging is
    /// discarded by the driver).
    case installRefused(reason: String)
}

/// What the state-sync machine asks the driver to do.
public enum StateSyncOutput: Sendable, Equatable {
    case request(peer: Int, StateSyncRequest)
    /// The chosen snapshot and its manifest bytes: the driver records them in staging (durably)
    /// before any chunk is written, so that a restart resumes this one.
    case stage(offer: SnapshotOffer, manifestBytes: [UInt8])
    /// Write `bytes` at `offset` of the staged file `path`.
    case writeChunk(path: String, offset: UInt64, bytes: [UInt8])
    /// Every chunk of `path` is staged: hash it, answer `.fileChecked`.
    case checkFile(path: String)
    /// A staged file did not hash to the manifest's: delete it from staging.
    case discardFile(path: String)
    /// Every file is staged and verified: verify the whole snapshot (files, then lane roots
    /// and MetaRoot) and install it through the staged restore; answer `.installed`.
    case install(offer: SnapshotOffer)
    case peerFaulty(peer: Int, why: String)
    /// Installed: block sync continues from this height.
    case stateSynced(height: UInt64, metaRoot: Hash32)
    case stop(StateSyncStop)
}

/// Why state sync stops for good.
public enum StateSyncStop: Sendable, Equatable {
    /// Too few peers are on this chain to ever form a quorum (exit 78).
    case noQuorumPossible(usable: Int, quorum: Int)
    /// Every usable peer answered and none offers a snapshot whose MetaRoot a quorum (or the
    /// trust anchor) attests (exit 79: restore one by hand, or add peers that keep snapshots).
    case noAttestedSnapshot(offered: Int)

    public var kindName: String {
        switch self {
        case .noQuorumPossible: "no_quorum_possible"
        case .noAttestedSnapshot: "no_attested_snapshot"
        }
    }
}

/// Where state sync stands, for `/v1/status` and progress lines.
public enum StateSyncPhase: String, Sendable, Equatable {
    /// Asking peers what they offer and whether a quorum vouches for it.
    case choosing
    case fetchingManifest = "fetching_manifest"
    case downloading
    case installing
    case installed
}
