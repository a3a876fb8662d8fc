import FaultFS

/// What a node offers its peers of its own snapshots (state sync): the catalogued snapshots
/// that were verified, each named by its manifest's SHA-256, and, for one of them, its manifest
/// or a byte range of one of the files that manifest lists. Read-only; nothing else is ever
/// readable through it:
/// - a snapshot is found by its catalogued name only, never by a path the peer gives;
/// - a file is found by its exact path in the snapshot's manifest, which was checked against
///   its `COMPLETE` marker and for structure (plain relative paths under `lanes/`); every
///   component on the way must be a directory and the file a regular file (no symbolic link is
///   followed), of the size the manifest lists;
/// - a range is at most `rangeBytesMax` bytes.
/// The peer verifies every byte against the manifest's SHA-256 anyway; these checks keep a
/// node from ever serving what is not its snapshot.
public enum SnapshotOffers {
    /// One offered snapshot.
    public struct Offer: Sendable, Equatable {
        public var name: String
        public var height: UInt64
        public var metaRoot: String
        /// SHA-256 of the manifest's bytes, hex: what a peer checks the manifest it fetches against.
        public var manifestSHA256: String
        public var sizeBytes: UInt64
        public var fileCount: Int
    }

    /// A byte range of one snapshot file.
    public struct FileRange: Sendable, Equatable {
        public var bytes: [UInt8]
        /// The first byte's offset in the file.
        public var offset: UInt64
        public var fileSizeBytes: UInt64
    }

    /// The most bytes one range answer holds (4 MiB).
    public static let rangeBytesMax: UInt64 = 4 << 20
    /// The most snapshots one listing names.
    public static let offersMax = 64

    /// The digest a manifest is offered under: the SHA-256 of its bytes, hex.
    public static func digest(of manifestBytes: [UInt8]) -> String { sha256Hex(manifestBytes) }

    /// The verified, catalogued snapshots whose manifest still matches its marker, newest
    /// first (at most `offersMax`). One that cannot be read is left out, not an error.
    public static func list(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) -> [Offer] {
        let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        var offers: [Offer] = []
        for entry in catalog.snapshots.reversed() where entry.verified && offers.count < offersMax {
            guard let (manifest, bytes) = try? readManifest(fileSystem: fileSystem, path: entry.path) else { continue }
            offers.append(
                Offer(
                    name: PathComponents.name(of: entry.path), height: manifest.height, metaRoot: manifest.metaRoot,
                    manifestSHA256: digest(of: bytes), sizeBytes: manifest.totalBytes, fileCount: manifest.files.count))
        }
        return offers
    }

    /// The manifest's bytes of the offered snapshot `name`, exactly as they are on disk.
    public static func manifest(fileSystem: any FileSystem, dataDirectory: String, name: String) throws(SnapshotError) -> [UInt8] {
        try readManifest(fileSystem: fileSystem, path: try offeredPath(fileSystem: fileSystem, dataDirectory: dataDirectory, name: name)).bytes
    }

    /// Bytes `offset ..< offset + count` of the file at `filePath` in the offered snapshot `name`
    /// (`count` capped at `rangeBytesMax` and at the file's end).
    public static func fileRange(
        fileSystem: any FileSystem, dataDirectory: String, name: String, filePath: String, offset: UInt64, count: UInt64
    ) throws(SnapshotError) -> FileRange {
        try fileRange(fileSystem: fileSystem, dataDirectory: dataDirectory, name: name, filePath: filePath) { _ throws(SnapshotError) in (offset, count) }
    }

    /// A byte range of the file at `filePath` in the offered snapshot `name`, the range chosen by
    /// `resolve` from the file's size (one resolution of the name, one read of the manifest).
    /// Throws `notOffered` for a name or path not offered, `rangeNotSatisfiable` for an offset at
    /// or past the end of a non-empty file.
    public static func fileRange(
        fileSystem: any FileSystem, dataDirectory: String, name: String, filePath: String,
        resolve: (_ fileSizeBytes: UInt64) throws(SnapshotError) -> (offset: UInt64, count: UInt64)
    ) throws(SnapshotError) -> FileRange {
        let path = try offeredPath(fileSystem: fileSystem, dataDirectory: dataDirectory, name: name)
        let manifest = try SnapshotVerifier.readManifest(fileSystem: fileSystem, path: path)
        guard let file = manifest.files.first(where: { $0.path == filePath }) else {
            throw SnapshotError(.notOffered, path: filePath, "snapshot \(name) lists no such file")
        }
        let (offset, count) = try resolve(file.sizeBytes)
        guard offset < file.sizeBytes || (offset == 0 && file.sizeBytes == 0) else {
            throw SnapshotError(.rangeNotSatisfiable, path: filePath, "offset \(offset) is past the file's \(file.sizeBytes) bytes")
        }
        let full = try checkedFile(fileSystem: fileSystem, snapshotPath: path, file: file)
        let length = min(count, rangeBytesMax, file.sizeBytes - offset)
        let bytes = try io(full, "reading") { () throws(FileSystemError) -> [UInt8] in
            let handle = try fileSystem.openFile(full, options: .readOnly)
            defer { try? handle.close() }
            return try handle.read(at: offset, count: Int(length))
        }
        guard UInt64(bytes.count) == length else {
            throw SnapshotError(.damaged, path: full, "read \(bytes.count) of \(length) bytes at \(offset): the file is shorter than its manifest says")
        }
        return FileRange(bytes: bytes, offset: offset, fileSizeBytes: file.sizeBytes)
    }

    /// The catalogued, verified snapshot called `name`.
    private static func offeredPath(fileSystem: any FileSystem, dataDirectory: String, name: String) throws(SnapshotError) -> String {
        let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        guard let entry = catalog.snapshots.last(where: { PathComponents.name(of: $0.path) == name && $0.verified }) else {
            throw SnapshotError(.notOffered, path: name, "no verified snapshot of that name is offered")
        }
        return entry.path
    }

    /// The manifest and the exact bytes its completion marker vouches for.
    private static func readManifest(fileSystem: any FileSystem, path: String) throws(SnapshotError) -> (manifest: SnapshotManifest, bytes: [UInt8]) {
        try SnapshotVerifier.readManifestAndBytes(fileSystem: fileSystem, path: path)
    }

    /// The file's full path, after checking that every directory on the way is a directory (not
    /// a symbolic link) and the file a regular file of the listed size.
    private static func checkedFile(fileSystem: any FileSystem, snapshotPath: String, file: SnapshotManifest.File) throws(SnapshotError) -> String {
        var current = snapshotPath
        let components = file.path.split(separator: "/").map(String.init)
        for (index, component) in components.enumerated() {
            current = PathComponents.join(current, component)
            let status = try io(current, "checking") { () throws(FileSystemError) in try fileSystem.status(current) }
            let isLast = index == components.count - 1
            guard let status, status.kind == (isLast ? .file : .directory) else {
                throw SnapshotError(.hostile, path: current, "not a \(isLast ? "regular file" : "directory") (a symbolic link, or missing)")
            }
            if isLast && status.sizeBytes != file.sizeBytes {
                throw SnapshotError(.damaged, path: current, "\(status.sizeBytes) bytes, the manifest says \(file.sizeBytes)")
            }
        }
        return current
    }
}
