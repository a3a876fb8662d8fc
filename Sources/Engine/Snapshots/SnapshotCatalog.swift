import FaultFS
import Foundation

/// The data directory's record of its snapshots (`SNAPSHOTS.json`, written atomically): what
/// `snapshot list` shows, what `prune` chooses from, and what WAL retention keeps the log for.
public struct SnapshotCatalog: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var name: String
        public var path: String
        public var height: UInt64
        public var metaRoot: String
        public var createdAt: UInt64
        public var sizeBytes: UInt64
        /// Each lane's applied LSN: WAL retention keeps each lane's log after it.
        public var lanePositions: [UInt64]
        /// When a verify last passed (seconds since 1970), 0 never.
        public var lastVerifiedAt: UInt64
        /// Whether the last verify passed.
        public var verified: Bool
        /// The order snapshots were recorded in (breaks ties between equal creation times).
        public var sequence: UInt64

        enum CodingKeys: String, CodingKey {
            case name, path, height, verified, sequence
            case metaRoot = "meta_root"
            case createdAt = "created_at"
            case sizeBytes = "size"
            case lanePositions = "lane_positions"
            case lastVerifiedAt = "last_verified_at"
        }
    }

    public static let fileName = "SNAPSHOTS.json"
    /// 2: with `checksum`. 1 (no checksum) is still read.
    public static let formatVersionCurrent = 2
    public var formatVersion = SnapshotCatalog.formatVersionCurrent
    public var snapshots: [Entry] = []
    /// CRC32C of `snapshots` in their canonical encoding (`canonicalSnapshotBytes`), in hex;
    /// set by `save`. A flipped digit in a lane position still parses as JSON, and WAL
    /// retention would trust it, so the catalog checks itself.
    public var checksum: String?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case snapshots, checksum
    }

    public init() {}

    static func path(_ dataDirectory: String) -> String { PathComponents.join(dataDirectory, fileName) }

    /// The largest catalog `load` reads.
    static let sizeBytesMax: UInt64 = 64 << 20

    /// The catalog of `dataDirectory` (empty when there is none). A catalog that does not
    /// decode or whose checksum does not match is read again from the media (a bad read is not
    /// damage; `BadReads`); when it never verifies it is `damaged`.
    public static func load(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) -> SnapshotCatalog {
        let path = path(dataDirectory)
        let read = try io(path, "reading the catalog") { () throws(FileSystemError) -> (bytes: [UInt8], verified: Bool)? in
            guard let status = try fileSystem.status(path) else { return nil }
            try requireSize(status.sizeBytes, atMost: sizeBytesMax, path)
            return try fileSystem.readFile(path) { decodeVerified($0) != nil }
        }
        guard let read else { return SnapshotCatalog() }
        guard read.verified, let catalog = decodeVerified(read.bytes) else {
            throw SnapshotError(
                .damaged, path: path,
                "the snapshot catalog does not decode or its checksum does not match; move it aside to start a new one "
                    + "(WAL retention keeps the whole log while it is unreadable)")
        }
        return catalog
    }

    /// `bytes` decoded when they are a catalog of a known version whose checksum (version 2)
    /// matches its entries; nil otherwise.
    static func decodeVerified(_ bytes: [UInt8]) -> SnapshotCatalog? {
        guard let catalog = try? JSONDecoder().decode(SnapshotCatalog.self, from: Data(bytes)) else { return nil }
        switch catalog.formatVersion {
        case 1: return catalog
        case 2: return catalog.checksum == catalog.computedChecksum ? catalog : nil
        default: return nil
        }
    }

    /// The entries encoded compactly with sorted keys: what the checksum covers. Decoding and
    /// encoding again gives the same bytes (strings, integers and booleans only).
    var canonicalSnapshotBytes: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(snapshots))
        } catch {
            preconditionFailure("catalog entries always encode: \(error)")
        }
    }

    /// The checksum `snapshots` should carry: CRC32C of `canonicalSnapshotBytes` in hex (as
    /// GENESIS and the restore journal write theirs).
    var computedChecksum: String {
        String(CRC32C.checksum(canonicalSnapshotBytes), radix: 16)
    }

    /// Writes the catalog atomically (temporary file, sync, rename, directory sync), as
    /// version 2 with its checksum.
    public func save(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) {
        var current = self
        current.formatVersion = Self.formatVersionCurrent
        current.checksum = computedChecksum
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let bytes: [UInt8]
        do {
            bytes = Array(try encoder.encode(current)) + [0x0A]
        } catch {
            preconditionFailure("a catalog always encodes: \(error)")
        }
        let path = Self.path(dataDirectory)
        try io(path, "writing the catalog") { () throws(FileSystemError) in try fileSystem.writeFileAtomically(path, bytes: bytes) }
    }

    /// Adds or replaces the entry for `path`.
    public mutating func record(path: String, manifest: SnapshotManifest, verifiedAt: UInt64?) {
        let sequence = snapshots.first { $0.path == path }?.sequence ?? ((snapshots.map(\.sequence).max() ?? 0) + 1)
        snapshots.removeAll { $0.path == path }
        snapshots.append(
            Entry(
                name: PathComponents.name(of: path), path: path, height: manifest.height, metaRoot: manifest.metaRoot,
                createdAt: manifest.createdAt, sizeBytes: manifest.totalBytes, lanePositions: manifest.lanes.map(\.appliedLSN),
                lastVerifiedAt: verifiedAt ?? 0, verified: verifiedAt != nil, sequence: sequence))
        snapshots.sort { ($0.createdAt, $0.sequence) < ($1.createdAt, $1.sequence) }
    }

    /// Loads the catalog of `dataDirectory`, records the snapshot at `path` in it and saves it.
    public static func record(
        fileSystem: any FileSystem, dataDirectory: String, path: String, manifest: SnapshotManifest, verifiedAt: UInt64?
    ) throws(SnapshotError) {
        var catalog = try load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        catalog.record(path: path, manifest: manifest, verifiedAt: verifiedAt)
        try catalog.save(fileSystem: fileSystem, dataDirectory: dataDirectory)
    }

    /// The lowest LSN each WAL partition must keep for the snapshots still on disk to replay to
    /// the present: per lane the lowest applied LSN, for meta the lowest height. nil when no
    /// snapshot constrains retention. When the catalog cannot be read, everything is kept (all
    /// floors 0): not knowing which snapshots exist must never delete the log they need.
    public static func walFloors(fileSystem: any FileSystem, dataDirectory: String, laneCount: Int) -> (lanes: [LSN], meta: LSN)? {
        let keepEverything = (lanes: [LSN](repeating: 0, count: laneCount), meta: LSN(0))
        let catalog: SnapshotCatalog
        do {
            catalog = try load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        } catch {
            return keepEverything
        }
        var present: [Entry] = []
        for entry in catalog.snapshots {
            guard entry.lanePositions.count == laneCount else { return keepEverything }
            do {
                if try fileSystem.exists(entry.path) { present.append(entry) }
            } catch {
                // Unknown: keep what it would need.
                present.append(entry)
            }
        }
        guard !present.isEmpty else { return nil }
        let lanes = (0..<laneCount).map { lane in present.map { $0.lanePositions[lane] }.min()! }
        return (lanes, present.map(\.height).min()!)
    }
}
