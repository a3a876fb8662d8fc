/// An operating error of the engine, with the lane, height and file it concerns and what an
/// operator should do.
public struct EngineError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The write-ahead log failed or refused (see `walError`).
        case wal
        /// A lane's RocksDB failed.
        case storage
        /// Stored state does not decode (a malformed node, marker or record).
        case corruptState = "corrupt_state"
        /// A lane has applied a block the log does not hold as committed.
        case laneAheadOfLog = "lane_ahead_of_log"
        /// A record a committed block needs is missing from the log.
        case missingRecord = "missing_record"
        /// Replaying a block gave another lane root than the one recorded.
        case laneRootMismatch = "lane_root_mismatch"
        /// The MetaRoot recomputed from the lane roots differs from the recorded one.
        case metaRootMismatch = "meta_root_mismatch"
        /// The data directory belongs to another chain or lane count.
        case genesisMismatch = "genesis_mismatch"
        /// Another process holds the data directory.
        case locked
        /// An earlier failure left the engine unusable until it is reopened.
        case failed
        /// The block or request is invalid.
        case invalidInput = "invalid_input"
        /// The data directory was never initialised (no genesis).
        case notInitialised = "not_initialised"
        /// A block from a peer does not follow this chain or its roots are not what staging its
        /// operations gives (or not the attested MetaRoot). Nothing was written; the engine stays
        /// usable and the block must come from another peer.
        case peerBlockMismatch = "peer_block_mismatch"
    }

    public var kind: Kind
    public var lane: Int?
    public var height: UInt64?
    public var path: String?
    public var message: String
    public var walError: WALError?

    public init(_ kind: Kind, lane: Int? = nil, height: UInt64? = nil, path: String? = nil, _ message: String, walError: WALError? = nil) {
        self.kind = kind
        self.lane = lane
        self.height = height
        self.path = path
        self.message = message
        self.walError = walError
    }

    /// A lane's RocksDB failure: corruption RocksDB found (after the reads were retried) is
    /// damage, `corruptState`; anything else is `storage`.
    init(rocksDB error: RocksDBError, lane: Int, path: String) {
        self.init(error.isCorruption ? .corruptState : .storage, lane: lane, path: path, error.description)
    }

    static func wal(_ error: WALError) -> EngineError {
        EngineError(.wal, lane: error.partition.isMeta ? nil : Int(error.partition.rawValue), path: error.damage?.path, error.description, walError: error)
    }

    /// `true` when the engine refuses to start on state it cannot prove (damage, a lane ahead of
    /// the log, a mismatching root or genesis) — the operator must restore or resync. `false`
    /// for conditions a restart can clear (I/O errors, a failed sync, a held lock).
    public var isRefusal: Bool {
        switch kind {
        case .corruptState, .laneAheadOfLog, .missingRecord, .laneRootMismatch, .metaRootMismatch, .genesisMismatch:
            true
        case .wal:
            walError?.kind == .midLogDamage || walError?.kind == .damageInAbsoluteMode
        case .storage, .locked, .failed, .invalidInput, .notInitialised, .peerBlockMismatch:
            false
        }
    }

    /// What to do about it.
    public var remedy: String {
        switch kind {
        case .wal: walError?.remedy ?? "restart the node"
        case .storage, .failed: "restart the node; recovery replays the log"
        case .corruptState, .laneAheadOfLog, .missingRecord, .laneRootMismatch, .metaRootMismatch:
            "restore the most recent snapshot (rivellum-node snapshot restore --from PATH --data-dir DIR), then restart; or resync from peers"
        case .genesisMismatch: "point the node at this chain's data directory, or use an empty one"
        case .locked: "stop the other node using this data directory first"
        case .invalidInput: "fix the request"
        case .peerBlockMismatch: "nothing was written; fetch the block from another peer and mark this one faulty"
        case .notInitialised: "check --data-dir; `rivellum-node run` initialises an empty data directory"
        }
    }

    public var description: String {
        var context: [String] = []
        if let lane { context.append("lane \(lane)") }
        if let height { context.append("height \(height)") }
        if let path { context.append(path) }
        let prefix = context.isEmpty ? "" : "[" + context.joined(separator: ", ") + "] "
        if kind == .wal { return prefix + message }
        return "\(prefix)\(kind.rawValue): \(message). Remedy: \(remedy)"
    }
}
