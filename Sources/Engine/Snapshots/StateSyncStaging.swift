import FaultFS

/// A snapshot a peer offers (`GET /v1/sync/snapshots`), as a state sync decoded it, and as
/// its staging records the one chosen (`OFFER`). Nothing in it is trusted: the MetaRoot must be
/// attested, and the manifest must hash to the digest.
public struct SnapshotOffer: Sendable, Equatable {
    public var name: String
    public var height: UInt64
    public var metaRoot: Hash32
    /// SHA-256 of the manifest's bytes, hex.
    public var manifestSHA256: String
    public var sizeBytes: UInt64

    public init(name: String, height: UInt64, metaRoot: Hash32, manifestSHA256: String, sizeBytes: UInt64) {
        self.name = name
        self.height = height
        self.metaRoot = metaRoot
        self.manifestSHA256 = manifestSHA256
        self.sizeBytes = sizeBytes
    }
}

/// What a stopped state sync left in staging, each piece checked again when it was loaded:
/// the offer, the manifest (its bytes hash to the offer's digest and it is well formed), the
/// files already verified (their size checked), and the chunks of others whose bytes still
/// carry the CRC32C recorded when they were written.
public struct StagedDownload: Sendable, Equatable {
    public struct Chunk: Sendable, Hashable {
        public var offset: UInt64
        public var count: UInt64
    }

    public var offer: SnapshotOffer
    public var manifestBytes: [UInt8]
    public var manifest: SnapshotManifest
    public var verifiedPaths: Set<String>
    public var stagedChunks: [String: Set<Chunk>]
}

/// A state sync's staging area, `<data>/state-sync/`, on the `FileSystem` seam. Nothing in it
/// is part of the node's state until `install`; a crash at any point leaves a staging area that
/// `load` resumes from (or discards, when it cannot vouch for it), never a half-written state.
///
/// ```
/// state-sync/OFFER                      the chosen snapshot; written atomically last of `begin`
/// state-sync/CHUNKS                     journal: one line per durable step, each with its CRC32C
/// state-sync/snapshot/MANIFEST.json     the manifest's bytes, as the peers served them
/// state-sync/snapshot/lanes/...         every file at its manifest path (created empty by `begin`)
/// state-sync/snapshot/COMPLETE          written by `install`, right before the staged restore
/// ```
///
/// Durability: a `chunk` line is appended (and the journal synced) only after the chunk's bytes
/// were written and the file synced, so a line vouches for durable bytes; `load` still checks
/// each chunk's CRC32C against the file, so lost or rotten bytes are fetched again rather than
/// trusted. `verified` follows a full SHA-256 check; `discarded` cancels a file's earlier lines.
public struct StateSyncStaging: Sendable {
    public static let folderName = "state-sync"
    static let offerFileName = "OFFER"
    static let journalFileName = "CHUNKS"
    static let snapshotFolderName = "snapshot"
    /// The most bytes the journal may hold (one line per chunk of a 1 TiB snapshot in 4 MiB chunks fits).
    static let journalBytesMax: UInt64 = 64 << 20

    public let fileSystem: any FileSystem
    public let dataDirectory: String
    public let offer: SnapshotOffer
    public let manifest: SnapshotManifest
    private let files: [String: SnapshotManifest.File]

    private init(fileSystem: any FileSystem, dataDirectory: String, offer: SnapshotOffer, manifest: SnapshotManifest) {
        self.fileSystem = fileSystem
        self.dataDirectory = dataDirectory
        self.offer = offer
        self.manifest = manifest
        var files: [String: SnapshotManifest.File] = [:]
        for file in manifest.files { files[file.path] = file }
        self.files = files
    }

    public static func root(_ dataDirectory: String) -> String { PathComponents.join(dataDirectory, folderName) }
    /// The staged snapshot directory (a complete snapshot once `install` wrote its marker).
    public var snapshotPath: String { PathComponents.join(Self.root(dataDirectory), Self.snapshotFolderName) }
    private var journalPath: String { PathComponents.join(Self.root(dataDirectory), Self.journalFileName) }
    private func stagedPath(_ path: String) -> String { PathComponents.join(snapshotPath, path) }

    // MARK: Starting

    /// Starts staging `offer` afresh: whatever was staged is removed; the manifest (already
    /// checked against the offer's digest by the caller) is checked for structure, every
    /// directory and an empty file per listed path are created and synced, and the offer is
    /// written last, so that a crash before it leaves nothing `load` would resume.
    public static func begin(
        fileSystem: any FileSystem, dataDirectory: String, offer: SnapshotOffer, manifestBytes: [UInt8]
    ) throws(SnapshotError) -> StateSyncStaging {
        let manifest = try checkedManifest(manifestBytes, offer: offer, path: root(dataDirectory))
        let staging = StateSyncStaging(fileSystem: fileSystem, dataDirectory: dataDirectory, offer: offer, manifest: manifest)
        let root = root(dataDirectory)
        try io(root, "staging a state sync") { () throws(FileSystemError) in
            try fileSystem.removeTree(root)
            try fileSystem.createDirectories(staging.snapshotPath)
            try fileSystem.writeFileAtomically(PathComponents.join(staging.snapshotPath, SnapshotManifest.fileName), bytes: manifestBytes)
            try staging.createFiles(manifest.files.map(\.path))
            try fileSystem.writeFileAtomically(staging.journalPath, bytes: [])
            try fileSystem.writeFileAtomically(PathComponents.join(root, offerFileName), bytes: encodeOffer(offer))
        }
        return staging
    }

    /// Creates each listed file empty (and its directories), then syncs every directory made.
    private func createFiles(_ paths: [String]) throws(FileSystemError) {
        var directories = Set<String>()
        for path in paths {
            let target = stagedPath(path)
            let parent = PathComponents.parent(of: target)
            if directories.insert(parent).inserted { try fileSystem.createDirectories(parent) }
            let handle = try fileSystem.openFile(target, options: OpenOptions(creation: .createIfMissing, writable: true, truncate: true))
            try handle.sync()
            try handle.close()
        }
        for directory in directories.sorted(by: >) { try fileSystem.syncDirectory(directory) }
    }

    /// The manifest's bytes must hash to the offer's digest, decode, be well formed (plain paths
    /// under `lanes/`, sane sizes) and describe the offered height and root.
    static func checkedManifest(_ bytes: [UInt8], offer: SnapshotOffer, path: String) throws(SnapshotError) -> SnapshotManifest {
        guard sha256Hex(bytes) == offer.manifestSHA256 else { throw SnapshotError(.damaged, path: path, "the manifest does not hash to the offered digest") }
        guard let manifest = SnapshotManifest.decode(bytes) else { throw SnapshotError(.damaged, path: path, "the manifest does not decode") }
        if let problem = manifest.structuralProblem() { throw SnapshotError(.hostile, path: path, problem) }
        guard manifest.height == offer.height, manifest.metaRoot == offer.metaRoot.hex else {
            throw SnapshotError(.damaged, path: path, "the manifest is of height \(manifest.height) with another MetaRoot than the offer")
        }
        return manifest
    }

    // MARK: Downloading

    /// Writes one chunk of a listed file and makes it durable, then journals it.
    public func writeChunk(path: String, offset: UInt64, bytes: [UInt8]) throws(SnapshotError) {
        let file = files[path]
        precondition(file != nil && offset + UInt64(bytes.count) <= file!.sizeBytes && !bytes.isEmpty, "a chunk lies inside a listed file")
        let target = stagedPath(path)
        try io(target, "writing a state-sync chunk") { () throws(FileSystemError) in
            let handle = try fileSystem.openFile(target, options: .readWrite)
            do throws(FileSystemError) {
                try handle.write(bytes, at: offset)
                try handle.sync()
            } catch {
                try? handle.close()
                throw error
            }
            try handle.close()
            try appendJournal(.chunk(path: path, offset: offset, count: UInt64(bytes.count), crc: CRC32C.checksum(bytes)))
        }
    }

    /// Whether the staged file has the manifest's size and SHA-256 (read again from the media
    /// before it counts as wrong); an intact file is journaled as verified.
    public func checkFile(path: String) throws(SnapshotError) -> Bool {
        guard let file = files[path] else { preconditionFailure("a checked file is listed") }
        let target = stagedPath(path)
        let size = try io(target, "checking a staged file") { () throws(FileSystemError) in try fileSystem.status(target)?.sizeBytes }
        guard size == file.sizeBytes, try SnapshotVerifier.rehashMatches(fileSystem: fileSystem, path: target, expected: file.sha256) else { return false }
        try io(target, "journaling a verified file") { () throws(FileSystemError) in try appendJournal(.verified(path: path)) }
        return true
    }

    /// Replaces a staged file that failed its check by a new empty one (it is fetched again) and
    /// journals it. Never empties the old file in place: after an install that a crash left
    /// unfinished, staged files are hard links of the lanes' own (`SnapshotRestorer.FilePlacement.link`).
    public func discardFile(path: String) throws(SnapshotError) {
        precondition(files[path] != nil, "a discarded file is listed")
        let target = stagedPath(path)
        try io(target, "discarding a staged file") { () throws(FileSystemError) in
            if try fileSystem.exists(target) { try fileSystem.removeFile(target) }
            try createFiles([path])
            try appendJournal(.discarded(path: path))
        }
    }

    private func appendJournal(_ entry: JournalEntry) throws(FileSystemError) {
        // `begin` created the journal durably: appending needs only the file's own sync.
        let handle = try fileSystem.openFile(journalPath, options: .readWrite)
        do throws(FileSystemError) {
            try handle.append(entry.line())
            try handle.sync()
        } catch {
            try? handle.close()
            throw error
        }
        // Closed once, whatever close reports (a second close could close another file).
        try handle.close()
    }

    // MARK: Installing

    /// Makes staging a complete snapshot (its marker) and restores it through the staged restore
    /// (`SnapshotRestorer`, files hard-linked rather than copied), which verifies it fully first
    /// — every file's SHA-256, then every lane root and the MetaRoot recomputed — and writes
    /// nothing outside staging if it refuses. The log is started afresh at the snapshot (the old
    /// one, if any, is moved aside). Staging is removed once the restore is complete. The caller holds the data directory's lock.
    public func install(walDirectory: String?, id: String, clock: any WALClock) throws(SnapshotError) -> RestorePlan {
        let marker = PathComponents.join(snapshotPath, SnapshotManifest.completeMarkerName)
        let manifestPath = PathComponents.join(snapshotPath, SnapshotManifest.fileName)
        // The marker vouches for the manifest's bytes on the media, which must still hash to the offer's digest.
        let manifestBytes = try io(manifestPath, "reading the staged manifest") { () throws(FileSystemError) in try fileSystem.readFileFromMedia(manifestPath) }
        _ = try Self.checkedManifest(manifestBytes, offer: offer, path: manifestPath)
        try io(marker, "completing the staged snapshot") { () throws(FileSystemError) in
            try fileSystem.writeFileAtomically(marker, bytes: SnapshotManifest.completeMarker(manifestBytes: manifestBytes))
        }
        let plan = try SnapshotRestorer.plan(
            fileSystem: fileSystem, snapshotPath: snapshotPath, dataDirectory: dataDirectory, walDirectory: walDirectory, resetWAL: true, id: id)
        // Staging is removed right after: its verified files become the lanes' by hard link.
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: false, clock: clock, placement: .link)
        try Self.discard(fileSystem: fileSystem, dataDirectory: dataDirectory)
        return plan
    }

    /// Removes the staging area (durably).
    public static func discard(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) {
        let root = root(dataDirectory)
        try io(root, "removing state-sync staging") { () throws(FileSystemError) in
            guard try fileSystem.exists(root) else { return }
            try fileSystem.removeTree(root)
            try fileSystem.syncDirectory(dataDirectory)
        }
    }
}

// MARK: The journal and the offer's encoding

extension StateSyncStaging {
    enum JournalEntry: Equatable {
        case chunk(path: String, offset: UInt64, count: UInt64, crc: UInt32)
        case verified(path: String)
        case discarded(path: String)

        /// `chunk <offset> <count> <crc32c hex> <path>|<line crc32c hex>\n`: the path is the rest of
        /// the line up to the last `|` (`SnapshotManifest.pathProblem` refuses control characters).
        /// Checksums are 8 hex digits, so a line's length does not depend on the bytes it covers.
        func line() -> [UInt8] {
            let body: String
            switch self {
            case .chunk(let path, let offset, let count, let crc): body = "chunk \(offset) \(count) \(hex8(crc)) \(path)"
            case .verified(let path): body = "verified \(path)"
            case .discarded(let path): body = "discarded \(path)"
            }
            return Array("\(body)|\(hex8(CRC32C.checksum(Array(body.utf8))))\n".utf8)
        }

        /// One line without its newline; nil when torn or damaged.
        static func decode(_ line: Substring) -> JournalEntry? {
            guard let bar = line.lastIndex(of: "|"), let crc = UInt32(line[line.index(after: bar)...], radix: 16) else { return nil }
            let body = line[..<bar]
            guard CRC32C.checksum(Array(body.utf8)) == crc else { return nil }
            guard let space = body.firstIndex(of: " ") else { return nil }
            let rest = body[body.index(after: space)...]
            switch body[..<space] {
            case "verified" where !rest.isEmpty: return .verified(path: String(rest))
            case "discarded" where !rest.isEmpty: return .discarded(path: String(rest))
            case "chunk":
                let words = rest.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard words.count == 4, let offset = UInt64(words[0]), let count = UInt64(words[1]), let chunkCRC = UInt32(words[2], radix: 16), !words[3].isEmpty
                else { return nil }
                return .chunk(path: String(words[3]), offset: offset, count: count, crc: chunkCRC)
            default: return nil
            }
        }
    }

    static func encodeOffer(_ offer: SnapshotOffer) -> [UInt8] {
        let body = "format=1\nname=\(offer.name)\nheight=\(offer.height)\nmeta_root=\(offer.metaRoot.hex)\nmanifest_sha256=\(offer.manifestSHA256)\nsize=\(offer.sizeBytes)\n"
        return Array((body + "crc32c=\(hex8(CRC32C.checksum(Array(body.utf8))))\n").utf8)
    }

    /// A checksum as exactly 8 lower-case hex digits.
    static func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func decodeOffer(_ bytes: [UInt8]) -> SnapshotOffer? {
        var fields: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { return nil }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard fields["format"] == "1", let name = fields["name"], let height = fields["height"].flatMap({ UInt64($0) }),
            let root = fields["meta_root"].flatMap({ Hash32(hex: $0) }), let digest = fields["manifest_sha256"], digest.count == 64,
            let size = fields["size"].flatMap({ UInt64($0) })
        else { return nil }
        let offer = SnapshotOffer(name: name, height: height, metaRoot: root, manifestSHA256: digest, sizeBytes: size)
        return encodeOffer(offer) == bytes ? offer : nil
    }
}

// MARK: Resuming

/// What a state sync (re)starting finds in its data directory (`StateSyncStaging.resume`).
public enum StateSyncResumption: Sendable {
    /// Nothing to resume: a new download starts, for a snapshot above `heightFloor` (the floor
    /// asked for, or the height of a restore that `resume` has just finished, if higher).
    case nothingStaged(heightFloor: UInt64)
    /// A download to carry on: the staging handle and what it holds, checked again.
    case staged(StateSyncStaging, StagedDownload)
    /// A crash interrupted the install of this download's snapshot after its restore was
    /// journalled; the restore is finished now and the lanes stand at the snapshot's height.
    /// Block sync follows; nothing is fetched or installed again.
    case installed(StagedDownload)
}

extension StateSyncStaging {
    /// Where a state sync (re)starts, under the data directory's lock, as both drivers (the node
    /// and the simulator) run it. A restore a crash interrupted is finished first
    /// (`RestoreJournal.complete`). When that restore was staging's install (at its snapshot's
    /// height), the install is done: staging is removed and `.installed` says so, so that block
    /// sync follows and nothing is fetched or installed again. Staging of a snapshot at or below
    /// the floor (installed already: a stop between the install and the removal of staging; or
    /// below a finished restore) is removed too. Otherwise what `load` vouches for.
    public static func resume(
        fileSystem: any FileSystem, dataDirectory: String, walDirectory: String?, heightFloor: UInt64, clock: any WALClock
    ) throws(SnapshotError) -> StateSyncResumption {
        var floor = heightFloor
        let restoredHeight = try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: dataDirectory, clock: clock)
        if restoredHeight != nil {
            // The lanes are in place now: where the restore kept the log, it replays past the snapshot.
            do {
                floor = max(floor, try localHeight(fileSystem: fileSystem, dataDirectory: dataDirectory, walDirectory: walDirectory, lockHeld: true))
            } catch {
                throw SnapshotError(.io, path: dataDirectory, "reading the height a finished restore left: \(error)")
            }
        }
        guard let loaded = try load(fileSystem: fileSystem, dataDirectory: dataDirectory) else { return .nothingStaged(heightFloor: floor) }
        let offer = loaded.1.offer
        guard offer.height > floor else {
            try discard(fileSystem: fileSystem, dataDirectory: dataDirectory)
            // Staging at exactly the height the lanes stand at is the install that put them there
            // (its restore just finished, or it finished before staging could be removed).
            return offer.height == restoredHeight || offer.height == floor ? .installed(loaded.1) : .nothingStaged(heightFloor: floor)
        }
        return .staged(loaded.0, loaded.1)
    }

    /// Block sync is to run at `localHeight`: staging of a snapshot at or below it (a crash
    /// between the install and the removal of staging) is removed. Returns the offer removed.
    public static func discardIfInstalled(fileSystem: any FileSystem, dataDirectory: String, localHeight: UInt64) throws(SnapshotError) -> SnapshotOffer? {
        guard let offer = stagedOffer(fileSystem: fileSystem, dataDirectory: dataDirectory), offer.height <= localHeight else { return nil }
        try discard(fileSystem: fileSystem, dataDirectory: dataDirectory)
        return offer
    }

    /// The height a stopped node's data directory recovers to (0 when it holds no genesis): state
    /// sync takes only a snapshot above it. A restore that a crash interrupted counts at its
    /// snapshot's height, where its roll-forward (`RestoreJournal.complete`, which every start
    /// runs first) puts the lanes — at least. Takes the data directory's lock while it reads the
    /// lanes, unless the caller holds it (`lockHeld`).
    public static func localHeight(
        fileSystem: any FileSystem, dataDirectory: String, walDirectory: String?, lockHeld: Bool = false
    ) throws(EngineError) -> UInt64 {
        let genesis = DataDirectoryLayout(dataDirectory: dataDirectory).genesis
        guard (try? fileSystem.exists(genesis)) == true else { return 0 }
        let restoring: RestoreJournal?
        do {
            restoring = try RestoreJournal.pending(fileSystem: fileSystem, dataDirectory: dataDirectory)
        } catch {
            throw EngineError(.storage, path: PathComponents.join(dataDirectory, RestoreJournal.fileName), "reading the restore journal: \(error)")
        }
        // Its lanes may be mid-swap; the snapshot's height is where they will stand (a restore that
        // kept the log replays further: a lower bound, which `resume` raises once it is finished).
        if let restoring { return restoring.height }
        let status = try DataDirectoryStatus.read(fileSystem: fileSystem, dataDirectory: dataDirectory, walDirectory: walDirectory, lockHeld: lockHeld)
        return max(status.logHeight, status.lanes.map(\.appliedHeight).min() ?? 0)
    }

    /// What a stopped state sync left, checked again: nil when there is no staging area, or when
    /// it cannot be vouched for (no offer, a damaged offer or manifest) — then it is removed. A
    /// torn or damaged journal line ends the journal (it is rewritten to the good lines before
    /// them); a chunk whose bytes no longer carry their CRC32C, a verified file of the wrong
    /// size, and a listed file that is missing are all fetched again.
    public static func load(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) -> (StateSyncStaging, StagedDownload)? {
        let root = root(dataDirectory)
        let offerPath = PathComponents.join(root, offerFileName)
        let found = try io(root, "reading state-sync staging") { () throws(FileSystemError) -> (offer: [UInt8], manifest: [UInt8])? in
            guard try fileSystem.exists(root) else { return nil }
            let manifestPath = PathComponents.join(PathComponents.join(root, snapshotFolderName), SnapshotManifest.fileName)
            guard try fileSystem.status(offerPath)?.kind == .file, try fileSystem.status(manifestPath)?.kind == .file else { return ([], []) }
            return (try readBounded(fileSystem, offerPath, limit: 4_096), try readBounded(fileSystem, manifestPath, limit: 256 << 20))
        }
        guard let found else { return nil }
        guard let offer = decodeOffer(found.offer), let manifest = try? checkedManifest(found.manifest, offer: offer, path: root) else {
            try discard(fileSystem: fileSystem, dataDirectory: dataDirectory)
            return nil
        }
        let staging = StateSyncStaging(fileSystem: fileSystem, dataDirectory: dataDirectory, offer: offer, manifest: manifest)
        guard let (verified, chunks) = try staging.replayJournal() else {
            try discard(fileSystem: fileSystem, dataDirectory: dataDirectory)
            return nil
        }
        let download = StagedDownload(offer: offer, manifestBytes: found.manifest, manifest: manifest, verifiedPaths: verified, stagedChunks: chunks)
        return (staging, download)
    }

    /// Replays the journal against the staged files (see `load`); nil when the journal is past
    /// its bound (staging is then started afresh).
    private func replayJournal() throws(SnapshotError) -> (verified: Set<String>, chunks: [String: Set<StagedDownload.Chunk>])? {
        guard let (entries, torn) = try readJournal() else { return nil }
        var verified = Set<String>()
        var chunks: [String: [StagedDownload.Chunk: UInt32]] = [:]
        for entry in entries {
            switch entry {
            case .chunk(let path, let offset, let count, let crc):
                guard let file = files[path], count > 0, offset <= file.sizeBytes, count <= file.sizeBytes - offset else { continue }
                chunks[path, default: [:]][StagedDownload.Chunk(offset: offset, count: count)] = crc
            case .verified(let path) where files[path] != nil: verified.insert(path)
            case .discarded(let path):
                verified.remove(path)
                chunks[path] = nil
            default: continue
            }
        }
        let checked = try checkStagedFiles(verified: verified, chunks: chunks)
        // Torn, or grown well past what is live (refetches): rewritten to what still holds.
        let live = checked.verified.count + checked.chunks.values.reduce(0) { $0 + $1.count }
        if torn || entries.count > 2 * live + 1_024 { try rewriteJournal(liveEntries(checked.verified, checked.chunks, recorded: chunks)) }
        return checked
    }

    private func liveEntries(_ verified: Set<String>, _ intact: [String: Set<StagedDownload.Chunk>], recorded: [String: [StagedDownload.Chunk: UInt32]]) -> [JournalEntry] {
        var entries: [JournalEntry] = []
        for file in manifest.files {
            for chunk in (intact[file.path] ?? []).sorted(by: { $0.offset < $1.offset }) {
                entries.append(.chunk(path: file.path, offset: chunk.offset, count: chunk.count, crc: recorded[file.path]![chunk]!))
            }
            if verified.contains(file.path) { entries.append(.verified(path: file.path)) }
        }
        return entries
    }

    /// Each listed file against what the journal says of it: a verified file must still hash to
    /// the manifest (else its chunks are checked one by one); a missing file is created empty.
    private func checkStagedFiles(
        verified: Set<String>, chunks: [String: [StagedDownload.Chunk: UInt32]]
    ) throws(SnapshotError) -> (verified: Set<String>, chunks: [String: Set<StagedDownload.Chunk>]) {
        var verified = verified
        return try io(snapshotPath, "checking staged files") { () throws(FileSystemError) in
            var intact: [String: Set<StagedDownload.Chunk>] = [:]
            for file in manifest.files {
                let target = stagedPath(file.path)
                guard let status = try fileSystem.status(target), status.kind == .file else {
                    verified.remove(file.path)
                    try createFiles([file.path])
                    continue
                }
                if verified.contains(file.path) {
                    let stillWhole = status.sizeBytes == file.sizeBytes && (try? SnapshotVerifier.rehashMatches(fileSystem: fileSystem, path: target, expected: file.sha256)) == true
                    if stillWhole { continue }
                    verified.remove(file.path)
                    if status.linkCount > 1 {
                        // Linked into the lanes by an install: replaced, never written in place.
                        try fileSystem.removeFile(target)
                        try createFiles([file.path])
                        continue
                    }
                }
                intact[file.path] = try chunksStillIntact(target, chunks[file.path] ?? [:])
            }
            return (verified, intact.filter { !$0.value.isEmpty })
        }
    }

    /// The journal's good lines, and whether a torn or damaged line ended it early; nil when it
    /// is larger than its bound.
    private func readJournal() throws(SnapshotError) -> (entries: [JournalEntry], torn: Bool)? {
        let read = try io(journalPath, "reading the state-sync journal") { () throws(FileSystemError) -> [UInt8]? in
            guard let status = try fileSystem.status(journalPath) else { return [] }
            guard status.sizeBytes <= Self.journalBytesMax else { return nil }
            return try readBounded(fileSystem, journalPath, limit: Self.journalBytesMax)
        }
        guard let bytes = read else { return nil }
        var entries: [JournalEntry] = []
        let lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        // The last element is what follows the last newline: empty unless a line was torn.
        for (index, line) in lines.enumerated() {
            let isLast = index == lines.count - 1
            if isLast && line.isEmpty { break }
            guard !isLast, let entry = JournalEntry.decode(Substring(decoding: line, as: UTF8.self)) else { return (entries, true) }
            entries.append(entry)
        }
        return (entries, false)
    }

    private func rewriteJournal(_ entries: [JournalEntry]) throws(SnapshotError) {
        try io(journalPath, "rewriting the state-sync journal") { () throws(FileSystemError) in
            try fileSystem.writeFileAtomically(journalPath, bytes: entries.flatMap { $0.line() })
        }
    }

    /// The chunks whose bytes in the file still carry their recorded CRC32C (read from the media).
    private func chunksStillIntact(_ target: String, _ recorded: [StagedDownload.Chunk: UInt32]) throws(FileSystemError) -> Set<StagedDownload.Chunk> {
        guard !recorded.isEmpty else { return [] }
        let handle = try fileSystem.openFile(target, options: .readOnly)
        defer { try? handle.close() }
        try handle.dropCachedPages()
        var intact = Set<StagedDownload.Chunk>()
        // Bounded by the journal's chunks of this file.
        for (chunk, crc) in recorded.sorted(by: { $0.key.offset < $1.key.offset }) {
            let bytes = try handle.read(at: chunk.offset, count: Int(chunk.count))
            if bytes.count == Int(chunk.count), CRC32C.checksum(bytes) == crc { intact.insert(chunk) }
        }
        return intact
    }
}

extension StateSyncStaging {
    /// The offer staging holds, when it holds a readable one (nothing else is checked).
    public static func stagedOffer(fileSystem: any FileSystem, dataDirectory: String) -> SnapshotOffer? {
        let path = PathComponents.join(root(dataDirectory), offerFileName)
        return (try? readBounded(fileSystem, path, limit: 4_096)).flatMap(decodeOffer)
    }
}
