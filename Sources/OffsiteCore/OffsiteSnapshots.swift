import Engine
import FaultFS

/// Snapshots kept off-site in an `ObjectStore`, content-addressed as restic and pgBackRest do:
///
/// ```
/// objects/<sha256>                   each file's bytes, stored once however many snapshots share it
/// snapshots/<name>/MANIFEST.json     the manifest, uploaded last: a snapshot is listed only once whole
/// snapshots/<name>/PUSHING           while a push runs: the objects it is uploading (prune keeps them)
/// ```
///
/// Nothing read back is trusted: a push reads every object it uploaded back and checks its
/// SHA-256 before the manifest goes up; a pull checks every object against the manifest, then
/// verifies the whole snapshot (files, lane roots, MetaRoot) before it is put in place.
public enum OffsiteSnapshots {
    public struct PushReport: Sendable, Equatable {
        public var name: String
        public var files: Int
        public var filesUploaded: Int
        public var bytesUploaded: UInt64
        /// Files whose object the store already held (another snapshot shares them).
        public var filesAlreadyStored: Int
        public var bytesAlreadyStored: UInt64
        public var manifestSHA256: String
    }

    public struct PullReport: Sendable, Equatable {
        public var name: String
        public var path: String
        public var files: Int
        public var bytes: UInt64
        public var height: UInt64
        public var metaRoot: String
    }

    public struct Listed: Sendable, Equatable {
        public var name: String
        /// nil when the stored manifest does not decode (it is damaged).
        public var manifest: SnapshotManifest?
        public var manifestSHA256: String
    }

    public struct PruneReport: Sendable, Equatable {
        public var kept: [String]
        public var removed: [String]
        public var objectsRemoved: Int
        public var bytesRemoved: UInt64
    }

    /// The most bytes one object holds (one S3 `PUT`; files are stored whole).
    public static let objectBytesMax: UInt64 = 1 << 30

    static func objectKey(_ sha256: String) -> String { "objects/" + sha256 }
    static func manifestKey(_ name: String) -> String { "snapshots/\(name)/" + SnapshotManifest.fileName }
    static func pushingKey(_ name: String) -> String { "snapshots/\(name)/PUSHING" }
    static let pruningKey = "locks/PRUNING"
    /// A prune marker older than this is a crashed prune's: pushes go on.
    public static let pruneMarkerLifetimeSeconds: UInt64 = 3_600
    /// A push marker older than this is a crashed push's: prune removes it and stops keeping its objects.
    public static let pushMarkerLifetimeSeconds: UInt64 = 24 * 3_600

    // MARK: Push

    /// Uploads the snapshot at `snapshotPath` as `name`: verifies it fully first, uploads each
    /// file the store does not hold yet (by SHA-256, size checked), reads each upload back and
    /// checks it, then uploads the manifest and reads it back. Throws `SnapshotError` for a local
    /// snapshot that does not verify, `ObjectStoreError` for the store.
    ///
    /// Against a concurrent prune: the push writes its `PUSHING` marker, then refuses
    /// (`unavailable`) while a `locks/PRUNING` marker younger than its lifetime exists; a prune
    /// writes that marker before it reads the push markers, so either the prune sees this push's
    /// marker and keeps its objects, or the push sees the prune and stops.
    public static func push(
        snapshotPath: String, name: String, store: any ObjectStore, fileSystem: any FileSystem, nowSeconds: UInt64, verify: Bool = true,
        verifyExisting: Bool = false
    ) async throws -> PushReport {
        precondition(SnapshotManifest.isPlainName(name), "a snapshot's name is plain")
        if verify { _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: snapshotPath) }
        let (manifest, manifestBytes) = try SnapshotVerifier.readManifestAndBytes(fileSystem: fileSystem, path: snapshotPath)
        var report = PushReport(
            name: name, files: manifest.files.count, filesUploaded: 0, bytesUploaded: 0, filesAlreadyStored: 0, bytesAlreadyStored: 0,
            manifestSHA256: SnapshotOffers.digest(of: manifestBytes))
        let marker = "started=\(nowSeconds)\n" + Set(manifest.files.map(\.sha256)).sorted().joined(separator: "\n") + "\n"
        try await store.put(pushingKey(name), bytes: Array(marker.utf8))
        if let started = try await markerStart(store, pruningKey), started + pruneMarkerLifetimeSeconds >= nowSeconds {
            try await store.delete(pushingKey(name))
            throw ObjectStoreError(.unavailable, store: store.description, key: pruningKey, operation: "push", "a prune is running (since \(started)); push again once it is done")
        }
        var done = Set<String>()
        var missing: [SnapshotManifest.File] = []
        for file in manifest.files where done.insert(file.sha256).inserted {
            if try await isStored(store, key: objectKey(file.sha256), file: file, verify: verifyExisting) {
                report.filesAlreadyStored += 1
                report.bytesAlreadyStored += file.sizeBytes
            } else {
                missing.append(file)
            }
        }
        try await upload(missing, snapshotPath: snapshotPath, store: store, fileSystem: fileSystem)
        report.filesUploaded = missing.count
        report.bytesUploaded = missing.reduce(0) { $0 + $1.sizeBytes }
        try await store.put(manifestKey(name), bytes: manifestBytes)
        guard try await store.get(manifestKey(name), bytesMax: UInt64(manifestBytes.count)) == manifestBytes else {
            throw ObjectStoreError(.damaged, store: store.description, key: manifestKey(name), operation: "read back", "the stored manifest is not what was uploaded")
        }
        try await store.delete(pushingKey(name))
        return report
    }

    /// Uploads at most this many objects at once (a push is bound by round trips, as `aws s3 cp`'s
    /// ten concurrent requests are)...
    public static let uploadsInFlightMax = 4
    /// ...reading at most this many bytes of their files at once (a larger object goes alone; the
    /// store's request body and the read-back come on top of each).
    public static let uploadBytesInFlightMax: UInt64 = 256 << 20

    /// Uploads each of `files` (read and checked against the manifest), then reads it back and
    /// checks it, several at once within the bounds above. The first failure is thrown; the
    /// uploads still running are cancelled and awaited. Within one thread (the simulator's
    /// drained executor, whose stores never suspend) the uploads run one after another in order.
    static func upload(_ files: [SnapshotManifest.File], snapshotPath: String, store: any ObjectStore, fileSystem: any FileSystem) async throws {
        try await withThrowingTaskGroup(of: UInt64.self) { group in
            var inFlight = 0
            var bytesInFlight: UInt64 = 0
            for file in files {
                while inFlight > 0, inFlight >= uploadsInFlightMax || bytesInFlight + file.sizeBytes > uploadBytesInFlightMax {
                    guard let finished = try await group.next() else { break }
                    inFlight -= 1
                    bytesInFlight -= finished
                }
                inFlight += 1
                bytesInFlight += file.sizeBytes
                group.addTask {
                    let key = objectKey(file.sha256)
                    let bytes = try readChecked(fileSystem: fileSystem, path: PathComponents.join(snapshotPath, file.path), file: file)
                    try await store.put(key, bytes: bytes)
                    try await readBack(store, key: key, sha256: file.sha256, sizeBytes: file.sizeBytes)
                    return file.sizeBytes
                }
            }
            try await group.waitForAll()
        }
    }

    /// Whether the store holds `file`'s object already: by its size, or (`verify`) read back and
    /// hashed, so that a damaged one is uploaded again.
    static func isStored(_ store: any ObjectStore, key: String, file: SnapshotManifest.File, verify: Bool) async throws(ObjectStoreError) -> Bool {
        guard try await store.size(key) == file.sizeBytes else { return false }
        guard verify else { return true }
        guard let stored = try await store.get(key, bytesMax: file.sizeBytes) else { return false }
        return UInt64(stored.count) == file.sizeBytes && sha256Hex(stored) == file.sha256
    }

    /// A snapshot file's bytes, bounded, checked against the manifest (it may have changed
    /// since the verify).
    static func readChecked(fileSystem: any FileSystem, path: String, file: SnapshotManifest.File) throws -> [UInt8] {
        guard file.sizeBytes <= objectBytesMax else {
            throw SnapshotError(.invalid, path: path, "\(file.sizeBytes) bytes: an off-site object holds at most \(objectBytesMax)")
        }
        let bytes: [UInt8]
        do {
            bytes = try fileSystem.readFileFromMedia(path)
        } catch {
            throw SnapshotError(.io, path: path, "reading for upload: \(error)")
        }
        guard UInt64(bytes.count) == file.sizeBytes, sha256Hex(bytes) == file.sha256 else {
            throw SnapshotError(.damaged, path: path, "changed since it was verified: it does not hash to the manifest's SHA-256")
        }
        return bytes
    }

    static func readBack(_ store: any ObjectStore, key: String, sha256: String, sizeBytes: UInt64) async throws(ObjectStoreError) {
        let stored = try await store.get(key, bytesMax: sizeBytes)
        guard let stored, UInt64(stored.count) == sizeBytes, sha256Hex(stored) == sha256 else {
            throw ObjectStoreError(.damaged, store: store.description, key: key, operation: "read back", "the stored object does not hash to what was uploaded")
        }
    }

    // MARK: Pull

    /// Downloads `name` into `outPath` (which must not exist): every object is checked against
    /// the manifest's size and SHA-256 as it arrives, written to `<outPath>.partial`, and the
    /// whole snapshot verified (files, lane roots, MetaRoot) before it is renamed into place. A
    /// damaged or missing object refuses the pull (`ObjectStoreError.damaged`) and leaves nothing.
    public static func pull(store: any ObjectStore, name: String, outPath: String, fileSystem: any FileSystem) async throws -> PullReport {
        precondition(SnapshotManifest.isPlainName(name), "a snapshot's name is plain")
        guard let manifestBytes = try await store.get(manifestKey(name), bytesMax: 256 << 20) else {
            throw ObjectStoreError(.notFound, store: store.description, key: manifestKey(name), operation: "pull", "no snapshot \(name) in the store")
        }
        let manifest: SnapshotManifest
        switch SnapshotManifest.decodeServed(manifestBytes) {
        case .success(let decoded): manifest = decoded
        case .failure(let error): throw ObjectStoreError(.damaged, store: store.description, key: manifestKey(name), operation: "pull", error.message)
        }
        if (try? fileSystem.exists(outPath)) != false { throw SnapshotError(.exists, path: outPath, "the target already exists (or cannot be checked)") }
        let partial = outPath + ".partial"
        do {
            try await download(store: store, manifest: manifest, manifestBytes: manifestBytes, into: partial, fileSystem: fileSystem)
            _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: partial)
            try fileSystem.rename(partial, to: outPath)
            try fileSystem.syncDirectory(PathComponents.parent(of: outPath))
        } catch {
            try? fileSystem.removeTree(partial)
            throw error
        }
        return PullReport(name: name, path: outPath, files: manifest.files.count, bytes: manifest.totalBytes, height: manifest.height, metaRoot: manifest.metaRoot)
    }

    private static func download(
        store: any ObjectStore, manifest: SnapshotManifest, manifestBytes: [UInt8], into partial: String, fileSystem: any FileSystem
    ) async throws {
        try fileSystem.removeTree(partial)
        try fileSystem.createDirectories(partial)
        var directories = Set<String>()
        for file in manifest.files {
            let key = objectKey(file.sha256)
            guard file.sizeBytes <= objectBytesMax else {
                throw ObjectStoreError(.damaged, store: store.description, key: key, operation: "pull", "\(file.path) claims \(file.sizeBytes) bytes, more than an object holds")
            }
            guard let bytes = try await store.get(key, bytesMax: file.sizeBytes) else {
                throw ObjectStoreError(.damaged, store: store.description, key: key, operation: "pull", "the object of \(file.path) is missing")
            }
            guard UInt64(bytes.count) == file.sizeBytes, sha256Hex(bytes) == file.sha256 else {
                throw ObjectStoreError(.damaged, store: store.description, key: key, operation: "pull", "the object of \(file.path) does not hash to the manifest's SHA-256")
            }
            let target = PathComponents.join(partial, file.path)
            let parent = PathComponents.parent(of: target)
            if directories.insert(parent).inserted { try fileSystem.createDirectories(parent) }
            let handle = try fileSystem.openFile(target, options: .createNew)
            try handle.write(bytes, at: 0)
            try handle.sync()
            try handle.close()
        }
        for directory in directories.sorted(by: >) { try fileSystem.syncDirectory(directory) }
        try fileSystem.writeFileAtomically(PathComponents.join(partial, SnapshotManifest.fileName), bytes: manifestBytes)
        try fileSystem.writeFileAtomically(PathComponents.join(partial, SnapshotManifest.completeMarkerName), bytes: SnapshotManifest.completeMarker(manifestBytes: manifestBytes))
    }

    // MARK: List and prune

    /// Every snapshot whose manifest is in the store (a partial push has none), newest first.
    public static func list(store: any ObjectStore) async throws(ObjectStoreError) -> [Listed] {
        var listed: [Listed] = []
        for object in try await store.list(prefix: "snapshots/") where object.key.hasSuffix("/" + SnapshotManifest.fileName) {
            let name = String(object.key.dropFirst("snapshots/".count).dropLast(SnapshotManifest.fileName.count + 1))
            guard SnapshotManifest.isPlainName(name), let bytes = try await store.get(object.key, bytesMax: 256 << 20) else { continue }
            listed.append(Listed(name: name, manifest: try? SnapshotManifest.decodeServed(bytes).get(), manifestSHA256: sha256Hex(bytes)))
        }
        return listed.sorted { lhs, rhs in
            let left = lhs.manifest.map { ($0.height, $0.createdAt) } ?? (0, 0), right = rhs.manifest.map { ($0.height, $0.createdAt) } ?? (0, 0)
            return left != right ? left > right : lhs.name > rhs.name
        }
    }

    /// Keeps the newest `keep` snapshots (by height, then creation time): the others' manifests
    /// are removed first (they stop being listed), then every object no kept manifest and no
    /// running push needs. A damaged manifest counts as the oldest.
    public static func prune(store: any ObjectStore, keep: Int, nowSeconds: UInt64) async throws(ObjectStoreError) -> PruneReport {
        precondition(keep >= 1, "prune keeps at least one snapshot")
        // The marker first, then the pushes' markers, then the manifests (see `push`).
        try await store.put(pruningKey, bytes: Array("started=\(nowSeconds)\n".utf8))
        var needed = try await runningPushes(store: store, nowSeconds: nowSeconds)
        let listed = try await list(store: store)
        let kept = Array(listed.prefix(keep)), removed = Array(listed.dropFirst(keep))
        for snapshot in removed { try await store.delete(manifestKey(snapshot.name)) }
        needed.formUnion(kept.flatMap { $0.manifest?.files.map(\.sha256) ?? [] })
        var report = PruneReport(kept: kept.map(\.name), removed: removed.map(\.name), objectsRemoved: 0, bytesRemoved: 0)
        // A kept snapshot whose manifest does not decode names no objects: nothing is collected.
        if kept.contains(where: { $0.manifest == nil }) {
            try await store.delete(pruningKey)
            return report
        }
        for object in try await store.list(prefix: "objects/") where !needed.contains(String(object.key.dropFirst("objects/".count))) {
            try await store.delete(object.key)
            report.objectsRemoved += 1
            report.bytesRemoved += object.sizeBytes
        }
        try await store.delete(pruningKey)
        return report
    }

    /// The `started=` time of a marker, nil when there is none.
    static func markerStart(_ store: any ObjectStore, _ key: String) async throws(ObjectStoreError) -> UInt64? {
        guard let bytes = try await store.get(key, bytesMax: 64 << 20) else { return nil }
        let first = String(decoding: bytes.prefix { $0 != 0x0A }, as: UTF8.self)
        return first.hasPrefix("started=") ? UInt64(first.dropFirst("started=".count)) ?? 0 : 0
    }

    /// The objects pushes still running need; a marker past its lifetime is removed.
    private static func runningPushes(store: any ObjectStore, nowSeconds: UInt64) async throws(ObjectStoreError) -> Set<String> {
        var needed = Set<String>()
        for object in try await store.list(prefix: "snapshots/") where object.key.hasSuffix("/PUSHING") {
            guard let bytes = try await store.get(object.key, bytesMax: 64 << 20) else { continue }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
            let started = lines.first.flatMap { $0.hasPrefix("started=") ? UInt64($0.dropFirst("started=".count)) : nil } ?? 0
            if started + pushMarkerLifetimeSeconds < nowSeconds {
                try await store.delete(object.key)
                continue
            }
            needed.formUnion(lines.dropFirst().map(String.init))
        }
        return needed
    }
}
