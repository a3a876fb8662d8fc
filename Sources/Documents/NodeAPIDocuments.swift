/// The JSON documents of the node's HTTP API (README, "The node"), shared by the server that writes
/// them and the clients that read them (the CLI, the kill test, peer sync). Hashes are lower-case
/// hex; heights and LSNs are JSON numbers.

/// `GET /health`.
public struct HealthDocument: Codable, Sendable, Equatable {
    public var status: String

    public init(status: String) {
        self.status = status
    }
}

/// An error answer: the message for people and the kind (`bad_request`, `overloaded`,
/// `corrupt_state`, ...) for programs and `rivellum_errors_total`.
public struct ErrorDocument: Codable, Sendable, Equatable {
    public var error: String
    public var kind: String

    public init(error: String, kind: String) {
        self.error = error
        self.kind = kind
    }
}

/// `POST /v1/blocks`: the committed block's height and MetaRoot, and whether it is durable yet
/// under the node's fsync policy.
public struct CommitResultDocument: Codable, Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: String
    public var durable: Bool

    enum CodingKeys: String, CodingKey {
        case height, durable
        case metaRoot = "meta_root"
    }

    public init(height: UInt64, metaRoot: String, durable: Bool) {
        self.height = height
        self.metaRoot = metaRoot
        self.durable = durable
    }
}

/// `GET /v1/blocks/{height}`: a committed block's header.
public struct BlockHeaderDocument: Codable, Sendable, Equatable {
    public var height: UInt64
    public var metaRoot: String
    public var laneRoots: [String]
    public var operationCount: Int

    enum CodingKeys: String, CodingKey {
        case height
        case metaRoot = "meta_root"
        case laneRoots = "lane_roots"
        case operationCount = "op_count"
    }

    public init(height: UInt64, metaRoot: String, laneRoots: [String], operationCount: Int) {
        self.height = height
        self.metaRoot = metaRoot
        self.laneRoots = laneRoots
        self.operationCount = operationCount
    }
}

/// `GET /v1/state_roots`.
public struct StateRootsDocument: Codable, Sendable, Equatable {
    public var globalHeight: UInt64
    public var metaRoot: String
    public var laneRoots: [String]

    enum CodingKeys: String, CodingKey {
        case globalHeight = "global_height"
        case metaRoot = "meta_root"
        case laneRoots = "lane_roots"
    }

    public init(globalHeight: UInt64, metaRoot: String, laneRoots: [String]) {
        self.globalHeight = globalHeight
        self.metaRoot = metaRoot
        self.laneRoots = laneRoots
    }
}

/// `GET /v1/status`: the running node's heights, roots, WAL positions, API load and last recovery.
public struct StatusDocument: Codable, Sendable, Equatable {
    /// One WAL partition's written and durable LSNs; `partition` is `meta` or `lane-N`.
    public struct WALPosition: Codable, Sendable, Equatable {
        public var partition: String
        public var writtenLSN: UInt64
        public var durableLSN: UInt64

        enum CodingKeys: String, CodingKey {
            case partition
            case writtenLSN = "written_lsn"
            case durableLSN = "durable_lsn"
        }

        public init(partition: String, writtenLSN: UInt64, durableLSN: UInt64) {
            self.partition = partition
            self.writtenLSN = writtenLSN
            self.durableLSN = durableLSN
        }
    }

    public struct APILoad: Codable, Sendable, Equatable {
        public var connections: Int
        public var commitsInFlight: Int

        enum CodingKeys: String, CodingKey {
            case connections
            case commitsInFlight = "commits_in_flight"
        }

        public init(connections: Int, commitsInFlight: Int) {
            self.connections = connections
            self.commitsInFlight = commitsInFlight
        }
    }

    /// What one lane's recovery did at the last start.
    public struct LaneRecovery: Codable, Sendable, Equatable {
        public var lane: Int
        public var appliedHeightBefore: UInt64
        public var recordsReplayed: Int
        public var walBytesTruncated: UInt64

        enum CodingKeys: String, CodingKey {
            case lane
            case appliedHeightBefore = "applied_height_before"
            case recordsReplayed = "records_replayed"
            case walBytesTruncated = "wal_bytes_truncated"
        }

        public init(lane: Int, appliedHeightBefore: UInt64, recordsReplayed: Int, walBytesTruncated: UInt64) {
            self.lane = lane
            self.appliedHeightBefore = appliedHeightBefore
            self.recordsReplayed = recordsReplayed
            self.walBytesTruncated = walBytesTruncated
        }
    }

    public struct LastRecovery: Codable, Sendable, Equatable {
        public var height: UInt64
        public var metaRoot: String
        public var durationSeconds: Double
        public var uncommittedBlocksDropped: UInt64
        public var lanes: [LaneRecovery]

        enum CodingKeys: String, CodingKey {
            case height, lanes
            case metaRoot = "meta_root"
            case durationSeconds = "duration_seconds"
            case uncommittedBlocksDropped = "uncommitted_blocks_dropped"
        }

        public init(height: UInt64, metaRoot: String, durationSeconds: Double, uncommittedBlocksDropped: UInt64, lanes: [LaneRecovery]) {
            self.height = height
            self.metaRoot = metaRoot
            self.durationSeconds = durationSeconds
            self.uncommittedBlocksDropped = uncommittedBlocksDropped
            self.lanes = lanes
        }
    }

    /// Sync from peers: the phase (`catching_up`, `following`, `synced`, `stalled`), the height a
    /// quorum of peers serves, how far behind it this node is, and each peer's state.
    public struct Sync: Codable, Sendable, Equatable {
        public struct Peer: Codable, Sendable, Equatable {
            public var url: String
            public var state: String
            public var faults: Int

            public init(url: String, state: String, faults: Int) {
                self.url = url
                self.state = state
                self.faults = faults
            }
        }

        public var phase: String
        @ExplicitNull public var targetHeight: UInt64?
        @ExplicitNull public var lag: UInt64?
        public var peers: [Peer]

        enum CodingKeys: String, CodingKey {
            case phase, lag, peers
            case targetHeight = "target_height"
        }

        public init(phase: String, targetHeight: UInt64?, lag: UInt64?, peers: [Peer]) {
            self.phase = phase
            self.targetHeight = targetHeight
            self.lag = lag
            self.peers = peers
        }
    }

    public var chainID: String
    public var height: UInt64
    public var durableHeight: UInt64
    public var metaRoot: String
    public var lanes: Int
    public var laneRoots: [String]
    public var fsyncPolicy: String
    public var wal: [WALPosition]
    public var api: APILoad
    public var lastRecovery: LastRecovery
    /// Absent when the node has no peers.
    public var sync: Sync?

    enum CodingKeys: String, CodingKey {
        case height, lanes, wal, api, sync
        case chainID = "chain_id"
        case durableHeight = "durable_height"
        case metaRoot = "meta_root"
        case laneRoots = "lane_roots"
        case fsyncPolicy = "fsync_policy"
        case lastRecovery = "last_recovery"
    }

    public init(
        chainID: String, height: UInt64, durableHeight: UInt64, metaRoot: String, laneRoots: [String], fsyncPolicy: String,
        wal: [WALPosition], api: APILoad, lastRecovery: LastRecovery, sync: Sync? = nil
    ) {
        self.sync = sync
        self.chainID = chainID
        self.height = height
        self.durableHeight = durableHeight
        self.metaRoot = metaRoot
        self.lanes = laneRoots.count
        self.laneRoots = laneRoots
        self.fsyncPolicy = fsyncPolicy
        self.wal = wal
        self.api = api
        self.lastRecovery = lastRecovery
    }
}

/// `GET /v1/state/{key}`: the value (`null` when absent) and its proof against the MetaRoot.
public struct StateReadDocument: Codable, Sendable, Equatable {
    /// How the lane's sparse Merkle path ends: the key's leaf (`included`), an empty subtree
    /// (`empty`), or another key's leaf (`other_leaf`, with that leaf's path).
    public struct Terminal: Codable, Sendable, Equatable {
        public var kind: String
        public var valueHash: String?
        public var path: String?

        enum CodingKeys: String, CodingKey {
            case kind, path
            case valueHash = "value_hash"
        }

        public init(kind: String, valueHash: String? = nil, path: String? = nil) {
            self.kind = kind
            self.valueHash = valueHash
            self.path = path
        }
    }

    /// The lane root's path up to the MetaRoot; a `null` sibling is an empty subtree.
    public struct LaneProof: Codable, Sendable, Equatable {
        public var laneIndex: Int
        public var laneCount: Int
        public var siblings: [String?]

        enum CodingKeys: String, CodingKey {
            case siblings
            case laneIndex = "lane_index"
            case laneCount = "lane_count"
        }

        public init(laneIndex: Int, laneCount: Int, siblings: [String?]) {
            self.laneIndex = laneIndex
            self.laneCount = laneCount
            self.siblings = siblings
        }
    }

    public struct Proof: Codable, Sendable, Equatable {
        public var metaRoot: String
        public var laneRoot: String
        public var siblings: [String]
        public var terminal: Terminal
        public var laneProof: LaneProof

        enum CodingKeys: String, CodingKey {
            case siblings, terminal
            case metaRoot = "meta_root"
            case laneRoot = "lane_root"
            case laneProof = "lane_proof"
        }

        public init(metaRoot: String, laneRoot: String, siblings: [String], terminal: Terminal, laneProof: LaneProof) {
            self.metaRoot = metaRoot
            self.laneRoot = laneRoot
            self.siblings = siblings
            self.terminal = terminal
            self.laneProof = laneProof
        }
    }

    public var key: String
    @ExplicitNull public var value: String?
    public var lane: Int
    public var height: UInt64
    public var proof: Proof

    public init(key: String, value: String?, lane: Int, height: UInt64, proof: Proof) {
        self.key = key
        self.value = value
        self.lane = lane
        self.height = height
        self.proof = proof
    }
}

/// `POST /v1/admin/snapshots`'s body: where to write the snapshot (an absolute path), or `{}`
/// for the node's default `<snapshot dir>/snapshot-YYYYmmdd-HHMMSS`.
public struct SnapshotRequestDocument: Codable, Sendable, Equatable {
    public var out: String?

    public init(out: String?) {
        self.out = out
    }
}

/// `POST /v1/blocks`'s body: the block's operations in order; a `null` value deletes the key.
/// (The server reads bodies with its own strict decoder, which also refuses unknown and repeated
/// fields; this is the document clients write.)
public struct BlockRequestDocument: Codable, Sendable, Equatable {
    public struct Operation: Codable, Sendable, Equatable {
        public var key: String
        @ExplicitNull public var value: String?

        public init(key: String, value: String?) {
            self.key = key
            self.value = value
        }
    }

    public var ops: [Operation]

    public init(ops: [Operation]) {
        self.ops = ops
    }
}

/// `GET /v1/sync/status`: what a syncing peer needs to decide whether and how to use this node.
public struct SyncStatusDocument: Codable, Sendable, Equatable {
    public var chainID: String
    /// The MetaRoot of height 0 over empty lanes: binds the chain id and the lane count.
    public var genesisDigest: String
    public var lanes: Int
    public var height: UInt64
    /// The highest height served (blocks this node has made durable).
    public var servableHeight: UInt64
    public var metaRoot: String
    /// The lowest height still served whole; `null` when the log holds no block.
    @ExplicitNull public var oldestServableHeight: UInt64?
    /// Whether this node keeps every block from genesis (peers can resync from it).
    public var archive: Bool

    enum CodingKeys: String, CodingKey {
        case lanes, height, archive
        case chainID = "chain_id"
        case genesisDigest = "genesis_digest"
        case servableHeight = "servable_height"
        case metaRoot = "meta_root"
        case oldestServableHeight = "oldest_servable_height"
    }

    public init(
        chainID: String, genesisDigest: String, lanes: Int, height: UInt64, servableHeight: UInt64, metaRoot: String,
        oldestServableHeight: UInt64?, archive: Bool
    ) {
        self.chainID = chainID
        self.genesisDigest = genesisDigest
        self.lanes = lanes
        self.height = height
        self.servableHeight = servableHeight
        self.metaRoot = metaRoot
        self.oldestServableHeight = oldestServableHeight
        self.archive = archive
    }
}

/// `GET /v1/sync/headers?from=H&count=N`: consecutive chain links from `from` (fewer where the
/// served log ends).
public struct SyncHeadersDocument: Codable, Sendable, Equatable {
    public struct Link: Codable, Sendable, Equatable {
        public var height: UInt64
        public var metaRoot: String
        public var previousMetaRoot: String

        enum CodingKeys: String, CodingKey {
            case height
            case metaRoot = "meta_root"
            case previousMetaRoot = "previous_meta_root"
        }

        public init(height: UInt64, metaRoot: String, previousMetaRoot: String) {
            self.height = height
            self.metaRoot = metaRoot
            self.previousMetaRoot = previousMetaRoot
        }
    }

    public var headers: [Link]

    public init(headers: [Link]) {
        self.headers = headers
    }
}

/// The 410 of `GET /v1/sync/blocks` below what the log holds (`/v1/sync/headers` answers an empty list there).
public struct BelowRetentionDocument: Codable, Sendable, Equatable {
    public var error: String
    public var kind: String
    @ExplicitNull public var oldestServableHeight: UInt64?

    enum CodingKeys: String, CodingKey {
        case error, kind
        case oldestServableHeight = "oldest_servable_height"
    }

    public init(error: String, oldestServableHeight: UInt64?) {
        self.error = error
        self.kind = "below_retention"
        self.oldestServableHeight = oldestServableHeight
    }
}

/// `GET /v1/sync/snapshots`: the verified snapshots a node offers its peers, newest first.
public struct SnapshotOffersDocument: Codable, Sendable, Equatable {
    public struct Offer: Codable, Sendable, Equatable {
        public var name: String
        public var height: UInt64
        public var metaRoot: String
        /// SHA-256 of the manifest's bytes (`/v1/sync/snapshots/{name}/manifest`), hex.
        public var manifestSHA256: String
        public var sizeBytes: UInt64
        public var files: Int

        enum CodingKeys: String, CodingKey {
            case name, height, files
            case metaRoot = "meta_root"
            case manifestSHA256 = "manifest_sha256"
            case sizeBytes = "size_bytes"
        }

        public init(name: String, height: UInt64, metaRoot: String, manifestSHA256: String, sizeBytes: UInt64, files: Int) {
            self.name = name
            self.height = height
            self.metaRoot = metaRoot
            self.manifestSHA256 = manifestSHA256
            self.sizeBytes = sizeBytes
            self.files = files
        }
    }

    public var snapshots: [Offer]

    public init(snapshots: [Offer]) {
        self.snapshots = snapshots
    }
}
