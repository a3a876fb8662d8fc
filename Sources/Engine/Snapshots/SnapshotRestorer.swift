import FaultFS

/// What a restore will do, worked out (and the snapshot fully verified) before anything is
/// written. `--dry-run` prints it.
public struct RestorePlan: Sendable {
    public enum WALAction: Sendable, Equatable {
        /// The log continues from the snapshot: the next start replays blocks height+1...through.
        case keep(replayThrough: UInt64)
        /// There is no log: start one at the snapshot's positions.
        case initialise
        /// The log cannot continue from the snapshot (`reason`); `--reset-wal` moves it aside and
        /// starts a new one at the snapshot's positions (blocks after the snapshot must then come
        /// from peers).
        case reset(reason: String)
    }

    public var snapshotPath: String
    public var manifest: SnapshotManifest
    public var dataDirectory: String
    public var walDirectory: String
    /// The data directory has no genesis yet (new hardware): one is written from the manifest.
    public var createsGenesis: Bool
    public var walAction: WALAction
    /// Where the current lane state is moved (nil when there is none).
    public var lanesAsidePath: String?
    public var stagingPath: String
    public var bytesToCopy: UInt64
    public var id: String

    public var description: String {
        var lines = [
            "restore \(snapshotPath)",
            "  chain \(manifest.chainID), \(manifest.laneCount) lanes, height \(manifest.height), meta_root \(manifest.metaRoot)",
            "  verified: \(manifest.files.count) files, \(manifest.totalBytes) bytes, every lane root and the MetaRoot recomputed",
            "  into \(dataDirectory)" + (createsGenesis ? " (new: a genesis is written from the snapshot)" : ""),
            "  stage: copy \(bytesToCopy) bytes to \(stagingPath), sync, then swap it in as \(dataDirectory)/lanes",
        ]
        if let lanesAsidePath { lines.append("  current lane state moves to \(lanesAsidePath) (kept; --delete-old removes it)") }
        switch walAction {
        case .keep(let through):
            lines.append("  WAL \(walDirectory) kept: the next start replays heights \(manifest.height + 1)...\(through)")
        case .initialise:
            lines.append("  WAL \(walDirectory) does not exist: a new one starts at the snapshot's height")
        case .reset(let reason):
            lines.append("  WAL \(walDirectory) cannot continue from the snapshot (\(reason)); it moves to \(walDirectory).pre-restore-\(id) and a new one starts at height \(manifest.height)")
        }
        return lines.joined(separator: "\n")
    }
}

/// Restores a snapshot into a stopped node's data directory.
///
/// Crash safety: the snapshot's lanes are copied (or, for state sync's staging, hard-linked:
/// `FilePlacement`) into `<data>/lanes.restore-staging` and synced;
/// only then is the journal `<data>/RESTORE_IN_PROGRESS` written (atomically). The swap —
/// current lanes moved aside, staging renamed into place, the WAL reset if planned — happens
/// after it, and `RestoreJournal.complete` (run by the next restore and by every engine open)
/// finishes it from wherever a crash stopped it. Without the journal, a staging directory is a
/// leftover and is removed: the old state stays. Either the old or the new state is usable at
/// every point.
public enum SnapshotRestorer {
    /// Verifies the snapshot fully and works out the plan; writes nothing. The caller holds
    /// the data directory's lock (`lockDataDirectory`).
    public static func plan(
        fileSystem: any FileSystem, snapshotPath: String, dataDirectory: String, walDirectory: String? = nil,
        resetWAL: Bool, id: String, hashingConcurrency: Int = 1
    ) throws(SnapshotError) -> RestorePlan {
        let walDirectory = DataDirectoryLayout(dataDirectory: dataDirectory, walDirectory: walDirectory).wal
        let manifest = try SnapshotVerifier.verify(fileSystem: fileSystem, path: snapshotPath, hashingConcurrency: hashingConcurrency).manifest
        let genesis: (chainID: String, laneCount: Int)?
        do {
            genesis = try Genesis.read(fileSystem: fileSystem, dataDirectory: dataDirectory)
        } catch {
            // A damaged GENESIS is damage (exit 65), not an I/O failure: the remedy is to restore
            // into an empty data directory (or resync), not to retry.
            throw SnapshotError(
                error.isRefusal ? .damaged : .io, path: dataDirectory,
                error.isRefusal ? "\(error.description); restore into an empty data directory, or resync" : error.description)
        }
        if let genesis, genesis.chainID != manifest.chainID || genesis.laneCount != manifest.laneCount {
            throw SnapshotError(
                .wrongChain, path: snapshotPath,
                "the snapshot is of chain \(manifest.chainID) with \(manifest.laneCount) lanes; \(dataDirectory) holds chain \(genesis.chainID) with \(genesis.laneCount) lanes")
        }
        let lanes = DataDirectoryLayout(dataDirectory: dataDirectory).lanes
        let hasLanes = try io(lanes, "checking") { () throws(FileSystemError) in try fileSystem.exists(lanes) }
        var walAction = try walActionFor(fileSystem: fileSystem, manifest: manifest, walDirectory: walDirectory)
        if case .reset(let reason) = walAction, !resetWAL {
            throw SnapshotError(
                .walGap, path: walDirectory,
                "the WAL cannot continue from the snapshot's height \(manifest.height): \(reason). Restore a snapshot the WAL reaches back to, or pass --reset-wal to move the WAL aside (blocks after height \(manifest.height) must then come from peers)")
        }
        if resetWAL, case .keep = walAction { walAction = .reset(reason: "--reset-wal") }
        return RestorePlan(
            snapshotPath: snapshotPath, manifest: manifest, dataDirectory: dataDirectory, walDirectory: walDirectory,
            createsGenesis: genesis == nil, walAction: walAction,
            lanesAsidePath: hasLanes ? lanes + ".pre-restore-\(id)" : nil,
            stagingPath: lanes + ".restore-staging", bytesToCopy: manifest.totalBytes, id: id)
    }

    /// Whether the WAL can continue from the snapshot: it must hold the snapshot's commit record
    /// (same MetaRoot), each lane's records right after its applied LSN, and no damage.
    static func walActionFor(fileSystem: any FileSystem, manifest: SnapshotManifest, walDirectory: String) throws(SnapshotError) -> RestorePlan.WALAction {
        let reports: [WALPartitionVerifyReport]
        do {
            guard try fileSystem.exists(walDirectory) else { return .initialise }
            reports = try WALVerifier.verify(fileSystem: fileSystem, directory: walDirectory)
        } catch let error as WALError {
            throw SnapshotError(.io, path: walDirectory, error.description)
        } catch {
            throw SnapshotError(.io, path: walDirectory, "\(error)")
        }
        if reports.isEmpty || reports.allSatisfy({ $0.segments.isEmpty }) { return .initialise }
        if let damaged = reports.first(where: { $0.verdict == .midLog }) {
            return .reset(reason: "\(damaged.partition) is damaged: \(damaged.damage.first?.description ?? damaged.evidence)")
        }
        guard let meta = reports.first(where: { $0.partition.isMeta }) else { return .reset(reason: "the meta partition is missing") }
        if manifest.height > 0 {
            guard meta.firstLSN <= manifest.height, meta.lastLSN >= manifest.height else {
                return .reset(reason: "the meta partition holds heights \(meta.firstLSN)...\(meta.lastLSN), not the snapshot's \(manifest.height)")
            }
            let record: WALRecordReader.Record?
            do {
                record = try WALRecordReader.record(fileSystem: fileSystem, walDirectory: walDirectory, partition: .meta, lsn: manifest.height)
            } catch {
                throw SnapshotError(.io, path: walDirectory, error.description)
            }
            guard let record, let commit = CommitRecord.decode(record.payload), commit.metaRoot.hex == manifest.metaRoot else {
                return .reset(reason: "the WAL's block \(manifest.height) has another MetaRoot: it is another history")
            }
        }
        for lane in manifest.lanes {
            guard let report = reports.first(where: { $0.partition == .lane(lane.lane) }) else {
                if lane.appliedLSN == 0 { continue }
                return .reset(reason: "lane \(lane.lane)'s partition is missing")
            }
            guard report.firstLSN <= lane.appliedLSN + 1, report.lastLSN >= lane.appliedLSN else {
                return .reset(reason: "lane \(lane.lane)'s partition holds LSN \(report.firstLSN)...\(report.lastLSN), the snapshot needs \(lane.appliedLSN + 1) onwards")
            }
        }
        return .keep(replayThrough: meta.lastLSN)
    }

    /// Carries out `plan`: stage (every copy read back and hashed against the manifest; links
    /// share the verified bytes), journal,
    /// swap (see the type's comment). The caller holds the data directory's lock. `clock` is the
    /// one the WAL started for the snapshot is given (the simulator's, or the system's).
    public static func restore(
        fileSystem: any FileSystem, plan: RestorePlan, deleteOld: Bool, clock: any WALClock, placement: FilePlacement = .copy,
        progress: (SnapshotCreator.Progress) -> Void = { _ in }
    ) throws(SnapshotError) {
        let staging = plan.stagingPath
        try io(plan.dataDirectory, "staging") { () throws(FileSystemError) in
            try fileSystem.removeTree(staging)
            try fileSystem.createDirectory(staging)
        }
        var done: UInt64 = 0
        var directories = Set<String>()
        for (index, file) in plan.manifest.files.enumerated() {
            // "lanes/lane-0000/000012.sst" → "<staging>/lane-0000/000012.sst"
            let relative = file.path.split(separator: "/").dropFirst().joined(separator: "/")
            let target = PathComponents.join(staging, relative)
            let parent = PathComponents.parent(of: target)
            try io(target, "copying") { () throws(FileSystemError) in
                if directories.insert(parent).inserted { try fileSystem.createDirectories(parent) }
            }
            let source = PathComponents.join(plan.snapshotPath, file.path)
            var isLinked = false
            if placement == .link { isLinked = try linked(fileSystem, source, to: target) }
            if !isLinked { try copyCheckingReadBack(fileSystem, source, to: target, sha256: file.sha256) }
            done += file.sizeBytes
            progress(SnapshotCreator.Progress(filesDone: index + 1, filesTotal: plan.manifest.files.count, bytesDone: done, bytesTotal: plan.bytesToCopy))
        }
        let journal = RestoreJournal(
            id: plan.id, snapshotPath: plan.snapshotPath, height: plan.manifest.height, walDirectory: plan.walDirectory,
            resetWAL: !isKeep(plan.walAction),
            lanePositions: plan.manifest.lanes.map(\.appliedLSN), commitRecord: plan.manifest.commitRecord)
        try io(plan.dataDirectory, "writing the journal") { () throws(FileSystemError) in
            for directory in directories.sorted(by: >) { try fileSystem.syncDirectory(directory) }
            try fileSystem.syncDirectory(staging)
            try fileSystem.syncDirectory(plan.dataDirectory)
            if plan.createsGenesis {
                try fileSystem.writeFileAtomically(
                    PathComponents.join(plan.dataDirectory, Genesis.fileName),
                    bytes: Genesis.encode(chainID: plan.manifest.chainID, laneCount: plan.manifest.laneCount))
            }
            try fileSystem.writeFileAtomically(PathComponents.join(plan.dataDirectory, RestoreJournal.fileName), bytes: journal.encoded())
        }
        try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: plan.dataDirectory, clock: clock)
        Probe.snapshotRestored.hit()
        if deleteOld, let aside = plan.lanesAsidePath {
            try io(aside, "removing the old lane state") { () throws(FileSystemError) in try fileSystem.removeTree(aside) }
        }
    }

    /// How a restore puts the snapshot's files into its staging directory.
    public enum FilePlacement: Sendable, Equatable {
        /// Copied, each copy read back from the media and hashed: the snapshot stays as it was,
        /// and a bad read of it or a bad write of the copy is copied again (bounded), never
        /// swapped in.
        case copy
        /// Hard-linked (the plan verified these very bytes): nothing is read or written again and
        /// no second copy needs room. Only for a source nobody keeps as a snapshot — state sync's
        /// staging, removed right after the install — since the lanes then share its inodes. A
        /// file system that cannot link there (another device, no hard links) gets the copy.
        case link
    }

    /// Copies of one file made before a restore gives up (each read back and hashed).
    static let copyAttemptsMax = 3

    /// Copies `source` to `target` until the copy reads back from the media as `sha256`.
    static func copyCheckingReadBack(_ fileSystem: any FileSystem, _ source: String, to target: String, sha256: String) throws(SnapshotError) {
        for attempt in 1...copyAttemptsMax {
            try io(target, "copying") { () throws(FileSystemError) in
                if try fileSystem.exists(target) { try fileSystem.removeFile(target) }
                try fileSystem.copyFile(source, to: target)
            }
            if try SnapshotVerifier.rehashMatches(fileSystem: fileSystem, path: target, expected: sha256) { return }
            guard attempt < copyAttemptsMax else { break }
        }
        throw SnapshotError(.io, path: target, "the copy does not read back as the snapshot's file after \(copyAttemptsMax) attempts")
    }

    /// Hard-links `source` as `target`; false when the file system cannot link them (the caller
    /// copies instead). Any other failure throws.
    static func linked(_ fileSystem: any FileSystem, _ source: String, to target: String) throws(SnapshotError) -> Bool {
        do {
            if try fileSystem.exists(target) { try fileSystem.removeFile(target) }
            try fileSystem.link(source, to: target)
            return true
        } catch where error.code == .crossDevice || error.code == .permissionDenied || error.code == .other {
            return false
        } catch {
            throw SnapshotError(error.code == .alreadyExists ? .exists : .io, path: target, "linking \(source): \(error)")
        }
    }

    static func isKeep(_ action: RestorePlan.WALAction) -> Bool {
        if case .keep = action { return true }
        return false
    }
}

/// The journal of a restore in progress (`RESTORE_IN_PROGRESS`): text lines `key=value` with a
/// CRC32C line last. While it exists, `complete` rolls the restore forward.
public struct RestoreJournal: Sendable, Equatable {
    public static let fileName = "RESTORE_IN_PROGRESS"

    var id: String
    var snapshotPath: String
    var height: UInt64
    var walDirectory: String
    var resetWAL: Bool
    var lanePositions: [LSN]
    /// Hex of the snapshot height's commit record (empty at height 0).
    var commitRecord: String

    func encoded() -> [UInt8] {
        let body = "format=1\nid=\(id)\nsnapshot=\(snapshotPath)\nheight=\(height)\nwal_dir=\(walDirectory)\n"
            + "reset_wal=\(resetWAL ? 1 : 0)\nlane_positions=\(lanePositions.map(String.init).joined(separator: ","))\n"
            + "commit_record=\(commitRecord)\n"
        return Array((body + "crc32c=\(String(CRC32C.checksum(Array(body.utf8)), radix: 16))\n").utf8)
    }

    static func decode(_ bytes: [UInt8]) -> RestoreJournal? {
        let text = String(decoding: bytes, as: UTF8.self)
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { return nil }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard fields["format"] == "1", let id = fields["id"], let snapshot = fields["snapshot"],
            let height = fields["height"].flatMap({ UInt64($0) }), let wal = fields["wal_dir"], let reset = fields["reset_wal"],
            let positions = fields["lane_positions"], let commit = fields["commit_record"], Hex.decode(commit) != nil
        else { return nil }
        let lanes = positions.isEmpty ? [] : positions.split(separator: ",").compactMap { UInt64($0) }
        let journal = RestoreJournal(
            id: id, snapshotPath: snapshot, height: height, walDirectory: wal, resetWAL: reset == "1", lanePositions: lanes,
            commitRecord: commit)
        return journal.encoded() == bytes ? journal : nil
    }

    /// The journal of a restore a crash interrupted, when one is left and decodes (a damaged one
    /// is `complete`'s to report). A journal that cannot be read throws.
    static func pending(fileSystem: any FileSystem, dataDirectory: String) throws(FileSystemError) -> RestoreJournal? {
        let journalPath = PathComponents.join(dataDirectory, fileName)
        guard try fileSystem.exists(journalPath) else { return nil }
        return decode(try fileSystem.readFile(journalPath))
    }

    /// Finishes a restore a crash interrupted, or removes a staging directory no journal vouches
    /// for. Idempotent; every step is durable before the next. Called with the data directory's
    /// lock held, before the lanes are opened. Returns the height of the restore it finished
    /// (nil when no journal was left): the lanes stand at that snapshot's height now.
    @discardableResult
    public static func complete(fileSystem: any FileSystem, dataDirectory: String, clock: any WALClock) throws(SnapshotError) -> UInt64? {
        let journalPath = PathComponents.join(dataDirectory, fileName)
        let lanes = DataDirectoryLayout(dataDirectory: dataDirectory).lanes
        let staging = lanes + ".restore-staging"
        return try io(dataDirectory, "completing a restore") { () throws(FileSystemError) -> UInt64? in
            guard try fileSystem.exists(journalPath) else {
                if try fileSystem.exists(staging) {
                    try fileSystem.removeTree(staging)
                    Probe.snapshotRestoreStagingDiscarded.hit()
                }
                return nil
            }
            guard let journal = decode(try fileSystem.readFile(journalPath)) else {
                throw FileSystemError(.other, operation: "restore journal", path: journalPath, detail: "damaged; inspect it and the lanes.* directories by hand")
            }
            Probe.snapshotRestoreRolledForward.hit()
            let aside = lanes + ".pre-restore-\(journal.id)"
            if try fileSystem.exists(staging) {
                if try fileSystem.exists(lanes) {
                    guard !(try fileSystem.exists(aside)) else {
                        throw FileSystemError(.alreadyExists, operation: "restore", path: aside, detail: "both the old and the current lane state exist")
                    }
                    try fileSystem.rename(lanes, to: aside)
                    try fileSystem.syncDirectory(dataDirectory)
                }
                try fileSystem.rename(staging, to: lanes)
                try fileSystem.syncDirectory(dataDirectory)
            }
            if journal.resetWAL {
                let walAside = journal.walDirectory + ".pre-restore-\(journal.id)"
                if try fileSystem.exists(journal.walDirectory), !(try fileSystem.exists(walAside)) {
                    try fileSystem.rename(journal.walDirectory, to: walAside)
                    try fileSystem.syncDirectory(PathComponents.parent(of: journal.walDirectory))
                }
            }
            try startWAL(fileSystem: fileSystem, journal: journal, clock: clock)
            try fileSystem.removeFile(journalPath)
            try fileSystem.syncDirectory(dataDirectory)
            return journal.height
        }
    }

    /// When the WAL was reset or never existed: each lane's partition starts after its applied
    /// LSN and the meta partition holds the snapshot height's commit record, so recovery finds
    /// the height committed and the next block continues the chain. Partitions already started
    /// correctly are left alone.
    static func startWAL(fileSystem: any FileSystem, journal: RestoreJournal, clock: any WALClock) throws(FileSystemError) {
        var starts: [(WALPartitionID, LSN)] = journal.lanePositions.enumerated().map { (.lane($0.offset), $0.element) }
        starts.append((.meta, journal.height == 0 ? 0 : journal.height - 1))
        try fileSystem.createDirectories(journal.walDirectory)
        for (partition, after) in starts {
            let directory = WriteAheadLog.partitionDirectory(journal.walDirectory, partition)
            let scanner = WALScanner(fileSystem: fileSystem, directory: directory, partition: partition)
            let existing: WALPartitionScan?
            do {
                existing = try fileSystem.exists(directory) ? try scanner.scan(mode: .tolerateTornTail) : nil
            } catch {
                throw FileSystemError(.other, operation: "restore WAL", path: directory, detail: "\(error)")
            }
            let wanted = partition.isMeta && journal.height > 0 ? journal.height : after
            if let existing, existing.damage == nil, !existing.segments.isEmpty {
                if existing.lastLSN == wanted { continue }
                // A kept log that continues from the snapshot: leave it.
                if existing.firstLSN <= wanted + 1 && existing.lastLSN >= wanted && !journal.resetWAL { continue }
            }
            try fileSystem.removeTree(directory)
            var configuration = WALConfiguration()
            configuration.fsyncPolicy = .strict
            let scan = WALPartitionScan(
                partition: partition, directory: directory, segments: [], segmentsAfterDamage: [], firstLSN: after + 1,
                lastLSN: after, closingChecksum: 0, damage: nil, verdict: nil, evidence: "", skipped: [], recordsRead: 0, bytesRead: 0)
            do {
                let writer = try WALPartition(
                    fileSystem: fileSystem, directory: directory, partition: partition, configuration: configuration,
                    clock: clock, recovered: scan)
                if partition.isMeta && journal.height > 0 {
                    // `decode` accepted only a journal whose commit record is hex.
                    let record = Hex.decode(journal.commitRecord)!
                    let lsn = try writer.append([record], recordType: EngineRecordType.commit.rawValue).upperBound
                    try writer.commit(through: lsn)
                }
                try writer.close()
            } catch {
                throw FileSystemError(.other, operation: "restore WAL", path: directory, detail: error.description)
            }
            try fileSystem.syncDirectory(journal.walDirectory)
        }
    }
}

/// Takes the data directory's lock for an offline tool (creating the directory if needed);
/// refuses with `locked` while a node holds it.
public func lockDataDirectory(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) -> any FileLock {
    do {
        try fileSystem.createDirectories(dataDirectory)
    } catch {
        throw SnapshotError(.io, path: dataDirectory, "creating the data directory: \(error)")
    }
    do {
        return try DataDirectoryLock.acquire(fileSystem: fileSystem, dataDirectory: dataDirectory)
    } catch {
        throw SnapshotError(error.kind == .locked ? .locked : .io, path: dataDirectory, error.message)
    }
}
