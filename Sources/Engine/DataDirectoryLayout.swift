import FaultFS

/// The main paths of a node's data directory, named once (the restore journal and staging
/// folders are named by `SnapshotRestorer`, the catalog by `SnapshotCatalog`, `node.api` by the
/// node). What each holds:
///
/// | path                      | what                                                              |
/// |---------------------------|-------------------------------------------------------------------|
/// | `GENESIS`                 | chain id and lane count, checksummed (`Genesis`)                  |
/// | `LOCK`                    | flock held by the one process using the directory                 |
/// | `SNAPSHOTS.json`          | the snapshot catalog (`SnapshotCatalog`)                          |
/// | `wal/` (or `wal_dir`)     | the write-ahead log, one folder per partition                     |
/// | `lanes/lane-NNNN/`        | each lane's RocksDB                                               |
/// | `snapshots/`              | the default folder of snapshots (`[snapshot] dir` overrides it)   |
///
/// A snapshot directory has the same `lanes/lane-NNNN/` shape (`SnapshotLayout`).
public struct DataDirectoryLayout: Sendable, Equatable {
    public var dataDirectory: String
    /// The configured WAL directory, when it is not `<data directory>/wal`.
    public var walDirectoryOverride: String?

    public init(dataDirectory: String, walDirectory: String? = nil) {
        self.dataDirectory = dataDirectory
        self.walDirectoryOverride = walDirectory
    }

    public static let genesisFileName = "GENESIS"
    public static let lockFileName = "LOCK"
    public static let walFolderName = "wal"
    public static let lanesFolderName = "lanes"
    public static let snapshotsFolderName = "snapshots"

    public var genesis: String { PathComponents.join(dataDirectory, Self.genesisFileName) }
    public var lock: String { PathComponents.join(dataDirectory, Self.lockFileName) }
    public var wal: String { walDirectoryOverride ?? PathComponents.join(dataDirectory, Self.walFolderName) }
    public var lanes: String { PathComponents.join(dataDirectory, Self.lanesFolderName) }
    public var defaultSnapshots: String { PathComponents.join(dataDirectory, Self.snapshotsFolderName) }

    public func lane(_ lane: Int) -> String { SnapshotLayout.laneDirectory(under: lanes, lane) }
}

/// The paths inside a snapshot directory: `lanes/lane-NNNN/` (each lane's RocksDB checkpoint),
/// `MANIFEST.json` and the `COMPLETE` marker (`SnapshotManifest`).
public enum SnapshotLayout {
    public static func lanes(_ snapshot: String) -> String { PathComponents.join(snapshot, DataDirectoryLayout.lanesFolderName) }

    public static func lane(_ snapshot: String, _ lane: Int) -> String { laneDirectory(under: lanes(snapshot), lane) }

    static func laneDirectory(under lanes: String, _ lane: Int) -> String {
        PathComponents.join(lanes, WALPartitionID.lane(lane).directoryName)
    }
}
