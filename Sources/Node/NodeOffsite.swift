import Engine
import FaultFS
import Foundation
import Logging
import Offsite

/// Opens the store an off-site URI names (`file:///path` or `s3://bucket/prefix`, with the
/// standard AWS settings for S3), runs `body` with it, and closes it.
public enum OffsiteStores {
    public static func withStore<Result: Sendable>(
        uri: String, environment: [String: String] = ProcessInfo.processInfo.environment, _ body: (any ObjectStore) async throws -> Result
    ) async throws -> Result {
        let fileSystem = PosixFileSystem()
        switch OffsiteLocation.parse(uri) {
        case .failure(let error):
            throw error
        case .success(.directory(let path)):
            return try await body(FileObjectStore(fileSystem: fileSystem, root: path))
        case .success(.s3(let bucket, let prefix)):
            let settings = try S3Settings.load(environment: environment, fileSystem: fileSystem).get()
            return try await S3ObjectStore.withStore(bucket: bucket, prefix: prefix, settings: settings) { try await body($0) }
        }
    }

    /// The exit code for a store error: 69 unavailable, 77 refused (credentials, permissions, a
    /// missing bucket), 65 damaged, 66 not found, 74 local I/O, 78 an unusable URI or settings.
    public static func exitCode(for error: ObjectStoreError) -> Int32 {
        switch error.kind {
        case .unavailable: ExitCodes.unavailable
        case .refused: ExitCodes.noPermission
        case .damaged: ExitCodes.dataError
        case .notFound: ExitCodes.noInput
        case .io: ExitCodes.ioError
        case .invalid: ExitCodes.config
        }
    }
}

extension NodeSnapshots {
    /// After a scheduled snapshot verified: pushes it to `[snapshot] offsite`, when set. A
    /// failure is logged and counted (the next schedule pushes its own snapshot; the local one
    /// stays).
    func pushOffsite(path: String) async {
        guard let uri = configuration.snapshot.offsite else { return }
        let name = PathComponents.name(of: path)
        guard SnapshotManifest.isPlainName(name) else {
            metrics.countError("offsite_push")
            logger.error("off-site push skipped: the snapshot's name is not a plain name (A-Z a-z 0-9 . _ -)", metadata: ["path": "\(path)"])
            return
        }
        do {
            // Just created and verified: each file is hashed again as it is uploaded, not the whole snapshot re-verified.
            let report = try await OffsiteStores.withStore(uri: uri) { store in
                try await OffsiteSnapshots.push(
                    snapshotPath: path, name: name, store: store, fileSystem: PosixFileSystem(), nowSeconds: clock.nowSeconds, verify: false)
            }
            metrics.offsitePushes.increment()
            logger.info(
                "snapshot pushed off-site",
                metadata: [
                    "name": "\(name)", "to": "\(uri)", "files_uploaded": "\(report.filesUploaded)", "bytes_uploaded": "\(report.bytesUploaded)",
                    "files_already_stored": "\(report.filesAlreadyStored)",
                ])
        } catch {
            metrics.countError("offsite_push")
            logger.error("off-site push failed; the snapshot stays local", metadata: ["name": "\(name)", "to": "\(uri)", "error": "\(error)"])
        }
    }
}
