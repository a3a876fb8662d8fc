import FaultFS
import Foundation

/// Creates a snapshot of a running engine at a block boundary.
///
/// Durability: everything is written under `<out>.partial` — the lanes' RocksDB checkpoints
/// (hard links to already-durable SST files; copies across file systems) and the manifest —
/// every file and directory synced; then renamed to `<out>` and the parent synced; then the
/// `COMPLETE` marker is written atomically. A crash at any point leaves either no snapshot, a
/// `.partial` directory (shown by `list` as partial, removed by the next create of the same
/// name), or a snapshot without a marker (shown as incomplete, refused by verify and restore).
public enum SnapshotCreator {
    public struct Progress: Sendable {
        public var filesDone: Int
        public var filesTotal: Int
        public var bytesDone: UInt64
        public var bytesTotal: UInt64
    }

    /// Creates the snapshot at `outputPath` (which must not exist) and returns its manifest.
    /// `hashingConcurrency` threads hash the files (1 keeps the file-system calls in order, as
    /// the simulator needs).
    /// The engine pauses commits only while it checkpoints and links; hashing and syncing run
    /// after. The caller verifies and records it (`SnapshotCatalog`).
    public static func create(
        engine: Engine, fileSystem: any FileSystem, outputPath: String, nowSeconds: UInt64, hashingConcurrency: Int = 1,
        progress: (Progress) -> Void = { _ in }
    ) throws(SnapshotError) -> SnapshotManifest {
        let partial = outputPath + ".partial"
        let parent = PathComponents.parent(of: outputPath)
        try io(outputPath, "preparing") { () throws(FileSystemError) in
            if try fileSystem.exists(outputPath) {
                throw FileSystemError(.alreadyExists, operation: "snapshot create", path: outputPath)
            }
            if try fileSystem.exists(partial) {
                // Left by a create that crashed: never part of a snapshot.
                try fileSystem.removeTree(partial)
                Probe.snapshotPartialRemoved.hit()
            }
            try fileSystem.createDirectories(parent)
            try fileSystem.createDirectory(partial)
            try fileSystem.createDirectory(SnapshotLayout.lanes(partial))
        }
        let point: Engine.SnapshotPoint
        do {
            point = try engine.checkpointForSnapshot { lane in SnapshotLayout.lane(partial, lane) }
        } catch {
            throw SnapshotError(.engine, path: outputPath, error.description)
        }
        let entries = try io(partial, "listing") { () throws(FileSystemError) in try fileSystem.walkTree(partial) }
        let regular = entries.filter { $0.status.kind == .file }
        let total = regular.reduce(UInt64(0)) { $0 + $1.status.sizeBytes }
        let hashed = try hashFiles(
            fileSystem: fileSystem, paths: regular.map { PathComponents.join(partial, $0.path) }, concurrency: hashingConcurrency,
            syncEach: true
        ) { filesDone, bytesDone in
            progress(Progress(filesDone: filesDone, filesTotal: regular.count, bytesDone: bytesDone, bytesTotal: total))
        }
        // Hard-linked files were durable already; the copied ones (CURRENT, OPTIONS, MANIFEST) are
        // synced by the hashing pass.
        let files = zip(regular, hashed).map { SnapshotManifest.File(path: $0.path, sizeBytes: $1.sizeBytes, sha256: $1.hex) }
        let manifest = SnapshotManifest(
            formatVersion: SnapshotManifest.currentFormatVersion, chainID: point.chainID, laneCount: point.laneRoots.count,
            height: point.height, metaRoot: point.metaRoot.hex, createdAt: nowSeconds,
            lanes: point.laneRoots.enumerated().map { SnapshotManifest.Lane(lane: $0.offset, laneRoot: $0.element.hex, appliedLSN: point.appliedLSNs[$0.offset]) },
            commitRecord: point.commitRecord.map { Hex.encode($0.encoded()) } ?? "",
            files: files)
        let manifestBytes = manifest.encoded()
        try io(outputPath, "writing") { () throws(FileSystemError) in
            let manifestPath = PathComponents.join(partial, SnapshotManifest.fileName)
            let handle = try fileSystem.openFile(manifestPath, options: OpenOptions(creation: .createNew, writable: true))
            try handle.write(manifestBytes, at: 0)
            try handle.fullSync()
            try handle.close()
            // Directories deepest first, then the partial directory itself.
            for entry in entries.reversed() where entry.status.kind == .directory {
                try fileSystem.syncDirectory(PathComponents.join(partial, entry.path))
            }
            try fileSystem.syncDirectory(partial)
            try fileSystem.rename(partial, to: outputPath)
            if !engine.configuration.wal.mutations.active(.skipSnapshotRenameDirectorySync) { try fileSystem.syncDirectory(parent) }
            try fileSystem.writeFileAtomically(
                PathComponents.join(outputPath, SnapshotManifest.completeMarkerName),
                bytes: SnapshotManifest.completeMarker(manifestBytes: manifestBytes))
        }
        return manifest
    }
}

extension SnapshotCreator {
    /// What the node and the CLI do: create the snapshot, verify it in full (every file read
    /// back against the manifest, every lane root and the MetaRoot recomputed), and record it,
    /// verified, in the engine's data directory's catalog. A snapshot that does not verify
    /// right after it was written is removed and the error thrown.
    public static func createVerifiedAndRecorded(
        engine: Engine, fileSystem: any FileSystem, outputPath: String, nowSeconds: UInt64, hashingConcurrency: Int = 1,
        progress: (Progress) -> Void = { _ in }
    ) throws(SnapshotError) -> SnapshotManifest {
        let manifest = try create(
            engine: engine, fileSystem: fileSystem, outputPath: outputPath, nowSeconds: nowSeconds,
            hashingConcurrency: hashingConcurrency, progress: progress)
        do {
            _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: outputPath, hashingConcurrency: hashingConcurrency)
        } catch where error.kind == .damaged {
            // What was written does not read back as recorded (a bad read while hashing, or the
            // media): a snapshot that does not verify is removed, never left looking complete.
            try? fileSystem.removeTree(outputPath)
            throw error
        }
        try SnapshotCatalog.record(
            fileSystem: fileSystem, dataDirectory: engine.configuration.dataDirectory, path: outputPath, manifest: manifest,
            verifiedAt: nowSeconds)
        return manifest
    }
}

/// Runs file-system work, turning its error into a `SnapshotError(.io)` naming `path`.
func io<Result>(_ path: String, _ doing: String, _ body: () throws(FileSystemError) -> Result) throws(SnapshotError) -> Result {
    do {
        return try body()
    } catch {
        throw SnapshotError(error.code == .alreadyExists ? .exists : .io, path: path, "\(doing): \(error)")
    }
}
