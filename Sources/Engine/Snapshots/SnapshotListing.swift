import FaultFS
import Foundation

/// What `snapshot list` shows for one snapshot: the catalog's entry (if any) and what is on disk.
public struct SnapshotListing: Sendable {
    public enum State: String, Sendable {
        /// Complete: marker and manifest agree.
        case complete
        /// A `.partial` directory left by a create that did not finish.
        case partial
        /// No completion marker, or the manifest does not match it.
        case broken
        /// In the catalog, gone from disk.
        case missing
    }

    public var name: String
    public var path: String
    public var state: State
    public var height: UInt64?
    public var metaRoot: String?
    public var sizeBytes: UInt64?
    public var createdAt: UInt64?
    public var lastVerifiedAt: UInt64?
    public var verified: Bool
    /// The highest height a restore of it reaches with the WAL still kept: the WAL's last
    /// height when it reaches back to the snapshot, else the snapshot's own height.
    public var restorableToHeight: UInt64?
    public var problem: String?

    /// The snapshots recorded in the catalog plus any found in `snapshotDirectory` (complete,
    /// partial or broken), oldest first.
    public static func list(
        fileSystem: any FileSystem, dataDirectory: String, snapshotDirectory: String, walDirectory: String? = nil
    ) throws(SnapshotError) -> [SnapshotListing] {
        let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        var paths = catalog.snapshots.map(\.path)
        let found = try io(snapshotDirectory, "listing") { () throws(FileSystemError) -> [String] in
            guard try fileSystem.exists(snapshotDirectory) else { return [] }
            return try fileSystem.listDirectory(snapshotDirectory).map { PathComponents.join(snapshotDirectory, $0) }
        }
        for path in found where !paths.contains(path) && !paths.contains(where: { $0 + ".partial" == path }) {
            paths.append(path)
        }
        let walDirectory = DataDirectoryLayout(dataDirectory: dataDirectory, walDirectory: walDirectory).wal
        let wal = try? WALVerifier.verify(fileSystem: fileSystem, directory: walDirectory)
        var listings: [SnapshotListing] = []
        for path in paths {
            let entry = catalog.snapshots.first { $0.path == path }
            var listing = SnapshotListing(
                name: PathComponents.name(of: path), path: path, state: .complete, height: entry?.height, metaRoot: entry?.metaRoot,
                sizeBytes: entry?.sizeBytes, createdAt: entry?.createdAt, lastVerifiedAt: entry?.lastVerifiedAt,
                verified: entry?.verified ?? false, restorableToHeight: nil, problem: nil)
            if path.hasSuffix(".partial") {
                listing.state = .partial
                listing.problem = "a create that did not finish; the next create of this name removes it"
            } else if !((try? fileSystem.exists(path)) ?? false) {
                listing.state = .missing
            } else {
                do {
                    let manifest = try SnapshotVerifier.readManifest(fileSystem: fileSystem, path: path)
                    listing.height = manifest.height
                    listing.metaRoot = manifest.metaRoot
                    listing.sizeBytes = manifest.totalBytes
                    listing.createdAt = manifest.createdAt
                    listing.restorableToHeight = manifest.height
                    if let wal, let meta = wal.first(where: { $0.partition.isMeta }), meta.verdict != .midLog,
                        meta.firstLSN <= max(manifest.height, 1), meta.lastLSN >= manifest.height,
                        manifest.lanes.allSatisfy({ lane in
                            wal.first { $0.partition == .lane(lane.lane) }.map { $0.firstLSN <= lane.appliedLSN + 1 && $0.verdict != .midLog } ?? (lane.appliedLSN == 0)
                        })
                    {
                        listing.restorableToHeight = meta.lastLSN
                    }
                } catch {
                    listing.state = .broken
                    listing.problem = error.description
                }
            }
            listings.append(listing)
        }
        // Oldest first; catalogued snapshots in the order they were recorded, then the others.
        func rank(_ listing: SnapshotListing) -> (UInt64, UInt64) {
            (listing.createdAt ?? 0, catalog.snapshots.first { $0.path == listing.path }?.sequence ?? .max)
        }
        return listings.sorted { rank($0) < rank($1) }
    }
}
