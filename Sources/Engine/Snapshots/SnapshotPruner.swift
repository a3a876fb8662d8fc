import FaultFS
import Foundation

/// Chooses and removes old snapshots.
public enum SnapshotPruner {
    public struct Decision: Sendable {
        public var remove: [SnapshotCatalog.Entry]
        public var keep: [SnapshotCatalog.Entry]
        /// Why a snapshot that matched was kept anyway.
        public var protected: [(name: String, reason: String)]
    }

    /// Keeps the newest `keep` snapshots and those younger than `olderThanSeconds`; never
    /// removes the newest verified snapshot unless `force`.
    public static func decide(
        catalog: SnapshotCatalog, keep: Int?, olderThanSeconds: UInt64?, nowSeconds: UInt64, force: Bool
    ) -> Decision {
        precondition(keep != nil || olderThanSeconds != nil, "prune needs --keep or --older-than")
        let newestFirst = catalog.snapshots.sorted { ($0.createdAt, $0.sequence) > ($1.createdAt, $1.sequence) }
        let newestVerified = newestFirst.first { $0.verified }
        var decision = Decision(remove: [], keep: [], protected: [])
        for (rank, entry) in newestFirst.enumerated() {
            var remove = true
            if let keep, rank < keep { remove = false }
            if let olderThanSeconds, nowSeconds &- entry.createdAt < olderThanSeconds { remove = false }
            if remove && !force && entry.path == newestVerified?.path {
                decision.protected.append((entry.name, "the newest verified snapshot (use --force to remove it)"))
                remove = false
            }
            if remove { decision.remove.append(entry) } else { decision.keep.append(entry) }
        }
        return decision
    }

    /// Removes the decided snapshots from disk and the catalog (the catalog is saved after each
    /// removal, so a crash leaves at most a catalog entry whose directory is gone: `missing`).
    public static func apply(
        _ decision: Decision, fileSystem: any FileSystem, dataDirectory: String
    ) throws(SnapshotError) {
        var catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        for entry in decision.remove {
            try io(entry.path, "removing") { () throws(FileSystemError) in try fileSystem.removeTree(entry.path) }
            catalog.snapshots.removeAll { $0.path == entry.path }
            try catalog.save(fileSystem: fileSystem, dataDirectory: dataDirectory)
        }
    }
}
