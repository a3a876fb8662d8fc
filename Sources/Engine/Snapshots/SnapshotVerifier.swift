import FaultFS

/// Verifies a snapshot without writing anything, in two levels:
/// 1. files: the completion marker holds the manifest's SHA-256; the manifest is well formed
///    (format, lanes, plain relative paths under `lanes/`, sane sizes); the directory holds
///    exactly the listed files — no symbolic links, no extra files — each with the listed size
///    and SHA-256;
/// 2. state: each lane's RocksDB checkpoint, opened read-only, has its applied marker at the
///    snapshot's height and LSN, and its lane root recomputed from its key-values equals the
///    manifest's and the stored tree's; the MetaRoot recomputed from the lane roots equals the
///    manifest's.
public enum SnapshotVerifier {
    public struct Report: Sendable {
        public var path: String
        public var manifest: SnapshotManifest
        public var filesChecked: Int
        public var bytesChecked: UInt64
        public var lanesChecked: Int
    }

    /// Verifies the snapshot at `path`; throws `damaged`, `hostile` or `incomplete` with the
    /// first problem found.
    public static func verify(
        fileSystem: any FileSystem, path: String, hashingConcurrency: Int = 1,
        progress: (SnapshotCreator.Progress) -> Void = { _ in }
    ) throws(SnapshotError) -> Report {
        let manifest = try readManifest(fileSystem: fileSystem, path: path)
        try checkTree(fileSystem: fileSystem, path: path, manifest: manifest)
        let hashed = try hashFiles(
            fileSystem: fileSystem, paths: manifest.files.map { PathComponents.join(path, $0.path) }, concurrency: hashingConcurrency,
            syncEach: false
        ) { filesDone, bytesDone in
            progress(SnapshotCreator.Progress(filesDone: filesDone, filesTotal: manifest.files.count, bytesDone: bytesDone, bytesTotal: manifest.totalBytes))
        }
        var done: UInt64 = 0
        for (file, result) in zip(manifest.files, hashed) {
            let filePath = PathComponents.join(path, file.path)
            guard result.sizeBytes == file.sizeBytes else {
                throw SnapshotError(.damaged, path: filePath, "\(result.sizeBytes) bytes, the manifest says \(file.sizeBytes)")
            }
            if result.hex != file.sha256 {
                guard try rehashMatches(fileSystem: fileSystem, path: filePath, expected: file.sha256) else {
                    throw SnapshotError(.damaged, path: filePath, "SHA-256 \(result.hex.prefix(16))…, the manifest says \(file.sha256.prefix(16))…")
                }
            }
            done += result.sizeBytes
        }
        try checkState(fileSystem: fileSystem, path: path, manifest: manifest)
        return Report(path: path, manifest: manifest, filesChecked: manifest.files.count, bytesChecked: done, lanesChecked: manifest.laneCount)
    }

    /// Hashes `path` again, from the media, up to `BadReads.rereadsMax` times; `true` once it
    /// matches (a bad read is not damage on the media).
    static func rehashMatches(fileSystem: any FileSystem, path: String, expected: String) throws(SnapshotError) -> Bool {
        try io(path, "hashing") { () throws(FileSystemError) -> Bool in
            for _ in 0..<BadReads.rereadsMax {
                try fileSystem.dropCachedPages(of: path)
                if try sha256OfFile(fileSystem, path).hex == expected { return true }
            }
            return false
        }
    }

    /// Reads the manifest and checks it against the completion marker and for structure. A
    /// manifest that does not match its marker is read again (bounded) before it counts as
    /// damaged.
    public static func readManifest(fileSystem: any FileSystem, path: String) throws(SnapshotError) -> SnapshotManifest {
        try readManifestAndBytes(fileSystem: fileSystem, path: path).manifest
    }

    /// `readManifest`, with the bytes the completion marker vouched for.
    public static func readManifestAndBytes(fileSystem: any FileSystem, path: String) throws(SnapshotError) -> (manifest: SnapshotManifest, bytes: [UInt8]) {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try readManifestOnce(fileSystem: fileSystem, path: path)
            } catch where error.kind == .damaged && attempt <= BadReads.rereadsMax {
                continue
            }
        }
    }

    private static func readManifestOnce(fileSystem: any FileSystem, path: String) throws(SnapshotError) -> (manifest: SnapshotManifest, bytes: [UInt8]) {
        let markerPath = PathComponents.join(path, SnapshotManifest.completeMarkerName)
        let manifestPath = PathComponents.join(path, SnapshotManifest.fileName)
        let (marker, manifestBytes) = try io(path, "reading") { () throws(FileSystemError) -> ([UInt8]?, [UInt8]?) in
            guard let status = try fileSystem.status(path) else {
                throw FileSystemError(.notFound, operation: "snapshot", path: path)
            }
            guard status.kind == .directory else { throw FileSystemError(.wrongKind, operation: "snapshot", path: path, detail: "not a directory") }
            for name in [SnapshotManifest.completeMarkerName, SnapshotManifest.fileName] {
                if let kind = try fileSystem.status(PathComponents.join(path, name))?.kind, kind != .file {
                    return (nil, nil)
                }
            }
            let marker = try fileSystem.exists(markerPath) ? try fileSystem.readFile(markerPath) : nil
            let manifest = try fileSystem.exists(manifestPath) ? try readBounded(fileSystem, manifestPath, limit: 256 << 20) : nil
            return (marker, manifest)
        }
        guard let marker else {
            throw SnapshotError(.incomplete, path: path, "no \(SnapshotManifest.completeMarkerName) marker: the snapshot was never completed")
        }
        guard let manifestBytes else { throw SnapshotError(.damaged, path: manifestPath, "the manifest is missing") }
        guard marker == SnapshotManifest.completeMarker(manifestBytes: manifestBytes) else {
            throw SnapshotError(.damaged, path: manifestPath, "the manifest does not match the SHA-256 in \(markerPath): it was changed")
        }
        guard let manifest = SnapshotManifest.decode(manifestBytes) else {
            throw SnapshotError(.damaged, path: manifestPath, "the manifest does not decode")
        }
        if let problem = manifest.structuralProblem() {
            throw SnapshotError(.hostile, path: manifestPath, problem)
        }
        return (manifest, manifestBytes)
    }

    /// The directory must hold exactly the manifest's files (plus the manifest and marker), as
    /// regular files and directories only.
    static func checkTree(fileSystem: any FileSystem, path: String, manifest: SnapshotManifest) throws(SnapshotError) {
        let entries = try io(path, "listing") { () throws(FileSystemError) in
            try fileSystem.walkTree(path, maximumEntries: SnapshotManifest.filesMax + 10_000)
        }
        let listed = Dictionary(uniqueKeysWithValues: manifest.files.map { ($0.path, $0) })
        var found = Set<String>()
        for entry in entries {
            let full = PathComponents.join(path, entry.path)
            switch entry.status.kind {
            case .symbolicLink:
                throw SnapshotError(.hostile, path: full, "a symbolic link; snapshots hold regular files only")
            case .other:
                throw SnapshotError(.hostile, path: full, "not a regular file or directory")
            case .directory:
                continue
            case .file:
                if entry.path == SnapshotManifest.fileName || entry.path == SnapshotManifest.completeMarkerName { continue }
                guard let file = listed[entry.path] else {
                    throw SnapshotError(.hostile, path: full, "a file the manifest does not list")
                }
                guard entry.status.sizeBytes == file.sizeBytes else {
                    throw SnapshotError(.damaged, path: full, "\(entry.status.sizeBytes) bytes, the manifest says \(file.sizeBytes)")
                }
                found.insert(entry.path)
            }
        }
        if let missing = manifest.files.first(where: { !found.contains($0.path) }) {
            throw SnapshotError(.damaged, path: PathComponents.join(path, missing.path), "missing (listed in the manifest)")
        }
    }

    /// Level 2: lane roots recomputed from each lane's key-values, and the MetaRoot.
    static func checkState(fileSystem: any FileSystem, path: String, manifest: SnapshotManifest) throws(SnapshotError) {
        let environment = RocksDBEnvironment(fileSystem: fileSystem)
        var laneRoots: [Hash32] = []
        for lane in manifest.lanes {
            let directory = SnapshotLayout.lane(path, lane.lane)
            let expected = Hash32(hex: lane.laneRoot)!
            let store: LaneStore
            do {
                store = try LaneStore.open(index: lane.lane, path: directory, environment: environment, readOnly: true)
            } catch {
                throw SnapshotError(laneFailure: error, path: directory, "lane \(lane.lane)'s RocksDB does not open: \(error)")
            }
            defer { store.close() }
            do {
                let marker = try store.applied()
                guard marker.height == manifest.height, marker.lsn == lane.appliedLSN, marker.laneRoot == expected else {
                    throw SnapshotError(
                        .damaged, path: directory,
                        "lane \(lane.lane) holds height \(marker.height) LSN \(marker.lsn), the manifest says height \(manifest.height) LSN \(lane.appliedLSN)")
                }
                let recomputed = try store.recomputeRootFromScratch()
                guard recomputed == expected else {
                    throw SnapshotError(
                        .damaged, path: directory,
                        "lane \(lane.lane)'s root recomputed from its key-values is \(recomputed.hex.prefix(16))…, the manifest says \(expected.hex.prefix(16))…")
                }
                let stored = try store.root()
                guard stored == expected else {
                    throw SnapshotError(.damaged, path: directory, "lane \(lane.lane)'s stored tree root \(stored.hex.prefix(16))… differs from its key-values")
                }
            } catch let error as SnapshotError {
                throw error
            } catch let error as EngineError {
                throw SnapshotError(laneFailure: error, path: directory, "reading lane \(lane.lane): \(error)")
            } catch {
                throw SnapshotError(.damaged, path: directory, "reading lane \(lane.lane): \(error)")
            }
            laneRoots.append(expected)
        }
        let metaRoot = MetaRoot.compute(chainID: manifest.chainID, height: manifest.height, laneRoots: laneRoots)
        guard metaRoot.hex == manifest.metaRoot else {
            throw SnapshotError(
                .damaged, path: PathComponents.join(path, SnapshotManifest.fileName),
                "the MetaRoot recomputed from the lane roots is \(metaRoot.hex), the manifest says \(manifest.metaRoot)")
        }
    }
}

/// Reads a whole file, refusing one larger than `limit` bytes.
func readBounded(_ fileSystem: any FileSystem, _ path: String, limit: UInt64) throws(FileSystemError) -> [UInt8] {
    let handle = try fileSystem.openFile(path, options: .readOnly)
    defer { try? handle.close() }
    let size = try handle.size()
    try requireSize(size, atMost: limit, path)
    return try handle.read(at: 0, count: Int(size))
}

/// Throws when a file of `sizeBytes` is larger than a reader accepts (a size bomb).
func requireSize(_ sizeBytes: UInt64, atMost limit: UInt64, _ path: String) throws(FileSystemError) {
    guard sizeBytes <= limit else {
        throw FileSystemError(.other, operation: "read", path: path, detail: "\(sizeBytes) bytes is more than the \(limit) allowed")
    }
}
