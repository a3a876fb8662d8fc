import Documents
import Engine
import Node
import Offsite
import PeerSync

/// The JSON documents the offline commands print under `--json` (README, "The node"), built
/// from the engine's reports. Partitions are spelled `meta` or `lane-N`; hashes are hex.

/// `rivellum-node status --json`.
struct DataDirectoryStatusDocument: Codable {
    struct Lane: Codable {
        var lane: Int
        var appliedHeight: UInt64
        var appliedLSN: LSN
        var laneRoot: String

        enum CodingKeys: String, CodingKey {
            case lane
            case appliedHeight = "applied_height"
            case appliedLSN = "applied_lsn"
            case laneRoot = "lane_root"
        }
    }

    struct Partition: Codable {
        var partition: String
        var firstLSN: LSN
        var lastLSN: LSN
        var segments: Int
        var bytes: UInt64
        @ExplicitNull var verdict: String?

        enum CodingKeys: String, CodingKey {
            case partition, segments, bytes, verdict
            case firstLSN = "first_lsn"
            case lastLSN = "last_lsn"
        }
    }

    var dataDirectory: String
    var walDirectory: String
    var chainID: String
    var lanes: Int
    var logHeight: UInt64
    @ExplicitNull var logMetaRoot: String?
    var laneStatus: [Lane]
    var wal: [Partition]

    enum CodingKeys: String, CodingKey {
        case lanes, wal
        case dataDirectory = "data_dir"
        case walDirectory = "wal_dir"
        case chainID = "chain_id"
        case logHeight = "log_height"
        case logMetaRoot = "log_meta_root"
        case laneStatus = "lane_status"
    }

    init(_ status: DataDirectoryStatus) {
        dataDirectory = status.dataDirectory
        walDirectory = status.walDirectory
        chainID = status.chainID
        lanes = status.laneCount
        logHeight = status.logHeight
        logMetaRoot = status.logMetaRoot?.hex
        laneStatus = status.lanes.map {
            Lane(lane: $0.lane, appliedHeight: $0.appliedHeight, appliedLSN: $0.appliedLSN, laneRoot: $0.laneRoot.hex)
        }
        wal = status.wal.sorted { $0.partition < $1.partition }.map {
            Partition(
                partition: $0.partition.name, firstLSN: $0.firstLSN, lastLSN: $0.lastLSN, segments: $0.segments.count,
                bytes: $0.totalBytes, verdict: $0.verdict?.rawValue)
        }
    }
}

/// One partition of `rivellum-node wal verify --json`.
struct WALVerifyDocument: Codable {
    struct Damage: Codable {
        var damageClass: String
        var path: String
        var offset: UInt64
        var expectedLSN: LSN

        enum CodingKeys: String, CodingKey {
            case path, offset
            case damageClass = "class"
            case expectedLSN = "expected_lsn"
        }
    }

    var partition: String
    var segments: Int
    var firstLSN: LSN
    var lastLSN: LSN
    var records: UInt64
    @ExplicitNull var verdict: String?
    var damage: [Damage]

    enum CodingKeys: String, CodingKey {
        case partition, segments, records, verdict, damage
        case firstLSN = "first_lsn"
        case lastLSN = "last_lsn"
    }

    init(_ report: WALPartitionVerifyReport) {
        partition = report.partition.name
        segments = report.segments.count
        firstLSN = report.firstLSN
        lastLSN = report.lastLSN
        records = report.records
        verdict = report.verdict?.rawValue
        damage = report.damage.map {
            Damage(damageClass: $0.damageClass.rawValue, path: $0.path, offset: $0.offset, expectedLSN: $0.expectedLSN)
        }
    }
}

/// One partition of `rivellum-node wal inspect --json`: its segments and the records listed.
struct WALInspectDocument: Codable {
    struct Segment: Codable {
        var index: UInt64
        var path: String
        var firstLSN: LSN
        var lastLSN: LSN
        var bytes: UInt64
        var createdAtSeconds: UInt64

        enum CodingKeys: String, CodingKey {
            case index, path, bytes
            case firstLSN = "first_lsn"
            case lastLSN = "last_lsn"
            case createdAtSeconds = "created_at"
        }
    }

    /// A record; `height`, `op_count` and `meta_root` only where the record type has them.
    struct Record: Codable {
        var lsn: LSN
        var recordType: UInt8
        var bytes: Int
        var height: UInt64?
        var operationCount: Int?
        var metaRoot: String?

        enum CodingKeys: String, CodingKey {
            case lsn, bytes, height
            case recordType = "type"
            case operationCount = "op_count"
            case metaRoot = "meta_root"
        }
    }

    var partition: String
    var firstLSN: LSN
    var lastLSN: LSN
    var records: UInt64
    @ExplicitNull var verdict: String?
    var segments: [Segment]
    var listedRecords: [Record]

    enum CodingKeys: String, CodingKey {
        case partition, records, verdict, segments
        case firstLSN = "first_lsn"
        case lastLSN = "last_lsn"
        case listedRecords = "listed_records"
    }

    init(_ report: WALPartitionVerifyReport, records listed: [WALRecordSummary]) {
        partition = report.partition.name
        firstLSN = report.firstLSN
        lastLSN = report.lastLSN
        records = report.records
        verdict = report.verdict?.rawValue
        segments = report.segments.map {
            Segment(
                index: $0.index, path: $0.path, firstLSN: $0.firstLSN, lastLSN: $0.lastLSN, bytes: $0.sizeBytes,
                createdAtSeconds: $0.createdAtSeconds)
        }
        listedRecords = listed.map {
            Record(
                lsn: $0.lsn, recordType: $0.recordType, bytes: $0.payloadBytes, height: $0.height, operationCount: $0.operationCount,
                metaRoot: $0.metaRoot?.hex)
        }
    }
}

/// One snapshot of `rivellum-node snapshot list --json`; what is unknown is `null`.
struct SnapshotListingDocument: Codable {
    var name: String
    var path: String
    var state: String
    @ExplicitNull var height: UInt64?
    @ExplicitNull var metaRoot: String?
    @ExplicitNull var sizeBytes: UInt64?
    @ExplicitNull var createdAt: UInt64?
    @ExplicitNull var lastVerifiedAt: UInt64?
    var verified: Bool
    @ExplicitNull var restorableToHeight: UInt64?
    @ExplicitNull var problem: String?

    enum CodingKeys: String, CodingKey {
        case name, path, state, height, verified, problem
        case metaRoot = "meta_root"
        case sizeBytes = "size"
        case createdAt = "created_at"
        case lastVerifiedAt = "last_verified_at"
        case restorableToHeight = "restorable_to_height"
    }

    init(_ listing: SnapshotListing) {
        name = listing.name
        path = listing.path
        state = listing.state.rawValue
        height = listing.height
        metaRoot = listing.metaRoot
        sizeBytes = listing.sizeBytes
        createdAt = listing.createdAt
        lastVerifiedAt = listing.lastVerifiedAt
        verified = listing.verified
        restorableToHeight = listing.restorableToHeight
        problem = listing.problem
    }
}

/// `rivellum-node snapshot verify --json`: what was checked when `ok`, the refusal when not.
struct SnapshotVerifyDocument: Codable {
    var path: String
    var ok: Bool
    var height: UInt64?
    var metaRoot: String?
    var files: Int?
    var bytes: UInt64?
    var lanes: Int?
    var kind: String?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case path, ok, height, files, bytes, lanes, kind, error
        case metaRoot = "meta_root"
    }

    init(path: String, report: SnapshotVerifier.Report) {
        self.path = path
        ok = true
        height = report.manifest.height
        metaRoot = "\(report.manifest.metaRoot)"
        files = report.filesChecked
        bytes = report.bytesChecked
        lanes = report.lanesChecked
    }

    init(path: String, error: SnapshotError) {
        self.path = path
        ok = false
        kind = error.kind.rawValue
        self.error = error.description
    }
}

/// One `rivellum-node sync` event (a JSON line): `progress` about once a second, then
/// `caught_up` or `interrupted`. Rates are over the whole run; bytes are the blocks' wire bytes.
struct SyncEventDocument: Codable {
    var event: String
    var height: UInt64
    @ExplicitNull var targetHeight: UInt64?
    var phase: String
    var blocksApplied: UInt64
    var bytesApplied: UInt64
    var elapsedMilliseconds: UInt64
    var blocksPerSecond: Double
    var megabytesPerSecond: Double
    @ExplicitNull var etaSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case event, height, phase
        case targetHeight = "target_height"
        case blocksApplied = "blocks_applied"
        case bytesApplied = "bytes_applied"
        case elapsedMilliseconds = "elapsed_ms"
        case blocksPerSecond = "blocks_per_second"
        case megabytesPerSecond = "mb_per_second"
        case etaSeconds = "eta_seconds"
    }

    init(event: String, _ progress: SyncProgress) {
        self.event = event
        height = progress.height
        targetHeight = progress.targetHeight
        phase = progress.phase.rawValue
        blocksApplied = progress.blocksApplied
        bytesApplied = progress.bytesApplied
        elapsedMilliseconds = progress.elapsedNanoseconds / 1_000_000
        let seconds = max(Double(progress.elapsedNanoseconds) / 1e9, 0.001)
        blocksPerSecond = Double(progress.blocksApplied) / seconds
        megabytesPerSecond = Double(progress.bytesApplied) / seconds / 1e6
        etaSeconds = progress.targetHeight.flatMap { target in
            guard blocksPerSecond > 0 else { return nil }
            return Double(target > progress.height ? target - progress.height : 0) / blocksPerSecond
        }
    }

    /// Stopped before any progress was reported.
    init(interruptedAt height: UInt64) {
        event = "interrupted"
        self.height = height
        targetHeight = nil
        phase = SyncPhase.catchingUp.rawValue
        blocksApplied = 0
        bytesApplied = 0
        elapsedMilliseconds = 0
        blocksPerSecond = 0
        megabytesPerSecond = 0
        etaSeconds = nil
    }
}

/// One `sync` event about the mode: `{"event":"mode","next":"state_sync"|"blocks","reason":…}`,
/// `{"event":"state_sync_progress","phase":…,"bytes_downloaded":…,"snapshot_bytes":…}`, or
/// `{"event":"state_synced","snapshot":…,"height":…,"meta_root":…,"bytes_downloaded":…,"snapshot_bytes":…,"resumed":…}`.
struct SyncModeEventDocument: Codable {
    var event: String
    var next: String?
    var reason: String?
    var phase: String?
    var snapshot: String?
    var height: UInt64?
    var metaRoot: String?
    var bytesDownloaded: UInt64?
    var snapshotBytes: UInt64?
    var resumed: Bool?
    var elapsedMilliseconds: UInt64?

    enum CodingKeys: String, CodingKey {
        case event, next, reason, phase, snapshot, height, resumed
        case elapsedMilliseconds = "elapsed_ms"
        case metaRoot = "meta_root"
        case bytesDownloaded = "bytes_downloaded"
        case snapshotBytes = "snapshot_bytes"
    }

    init(_ event: SyncModeEvent) {
        switch event {
        case .chose(let step, let reason):
            self.event = "mode"
            switch step {
            case .stateSync: next = "state_sync"
            case .blockSync: next = "blocks"
            case .stop: next = "stop"
            }
            self.reason = reason
        case .stateSyncProgress(let progress):
            self.event = "state_sync_progress"
            phase = progress.phase.rawValue
            bytesDownloaded = progress.bytesDownloaded
            snapshotBytes = progress.snapshotBytes
        case .stateSynced(let report):
            self.event = "state_synced"
            snapshot = report.name
            height = report.height
            metaRoot = report.metaRoot.hex
            bytesDownloaded = report.bytesDownloaded
            snapshotBytes = report.snapshotBytes
            resumed = report.resumed
            elapsedMilliseconds = report.elapsedNanoseconds / 1_000_000
        }
    }
}

/// `snapshot push --json`.
struct OffsitePushDocument: Codable {
    var name: String
    var to: String
    var files: Int
    var filesUploaded: Int
    var bytesUploaded: UInt64
    var filesAlreadyStored: Int
    var bytesAlreadyStored: UInt64
    var manifestSHA256: String

    enum CodingKeys: String, CodingKey {
        case name, to, files
        case filesUploaded = "files_uploaded"
        case bytesUploaded = "bytes_uploaded"
        case filesAlreadyStored = "files_already_stored"
        case bytesAlreadyStored = "bytes_already_stored"
        case manifestSHA256 = "manifest_sha256"
    }

    init(_ report: OffsiteSnapshots.PushReport, to: String) {
        name = report.name
        self.to = to
        files = report.files
        filesUploaded = report.filesUploaded
        bytesUploaded = report.bytesUploaded
        filesAlreadyStored = report.filesAlreadyStored
        bytesAlreadyStored = report.bytesAlreadyStored
        manifestSHA256 = report.manifestSHA256
    }
}

/// `snapshot pull --json`.
struct OffsitePullDocument: Codable {
    var name: String
    var path: String
    var files: Int
    var bytes: UInt64
    var height: UInt64
    var metaRoot: String
    var verified = true

    enum CodingKeys: String, CodingKey {
        case name, path, files, bytes, height, verified
        case metaRoot = "meta_root"
    }

    init(_ report: OffsiteSnapshots.PullReport) {
        name = report.name
        path = report.path
        files = report.files
        bytes = report.bytes
        height = report.height
        metaRoot = report.metaRoot
    }
}

/// One entry of `snapshot list --offsite URI --json`.
struct OffsiteListedDocument: Codable {
    var name: String
    var height: UInt64?
    var metaRoot: String?
    var sizeBytes: UInt64?
    var createdAt: UInt64?
    var manifestSHA256: String
    var damaged: Bool

    enum CodingKeys: String, CodingKey {
        case name, height, damaged
        case metaRoot = "meta_root"
        case sizeBytes = "size_bytes"
        case createdAt = "created_at"
        case manifestSHA256 = "manifest_sha256"
    }

    init(_ listed: OffsiteSnapshots.Listed) {
        name = listed.name
        height = listed.manifest?.height
        metaRoot = listed.manifest?.metaRoot
        sizeBytes = listed.manifest?.totalBytes
        createdAt = listed.manifest?.createdAt
        manifestSHA256 = listed.manifestSHA256
        damaged = listed.manifest == nil
    }
}
