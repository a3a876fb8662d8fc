import Crypto
import Documents
import FaultFS
import Foundation

/// A snapshot's manifest (`MANIFEST.json`): the point in time it holds, each lane's position,
/// and every file with its size and SHA-256. The `COMPLETE` marker, written last, holds the
/// manifest's own SHA-256, so a changed manifest is detected too.
///
/// Layout of a snapshot directory:
/// ```
/// <name>/MANIFEST.json
/// <name>/COMPLETE                      format=1, manifest_sha256=<hex>
/// <name>/lanes/lane-0000/...           lane 0's RocksDB checkpoint (hard links where possible)
/// ```
public struct SnapshotManifest: Codable, Sendable, Equatable {
    public struct Lane: Codable, Sendable, Equatable {
        public var lane: Int
        public var laneRoot: String
        /// The lane's last applied WAL LSN: replay continues after it.
        public var appliedLSN: UInt64

        enum CodingKeys: String, CodingKey {
            case lane
            case laneRoot = "lane_root"
            case appliedLSN = "applied_lsn"
        }
    }

    public struct File: Codable, Sendable, Equatable {
        /// Relative to the snapshot directory, `/`-separated, under `lanes/`.
        public var path: String
        public var sizeBytes: UInt64
        public var sha256: String

        enum CodingKeys: String, CodingKey {
            case path
            case sizeBytes = "size"
            case sha256
        }
    }

    public static let currentFormatVersion = 1
    public static let fileName = "MANIFEST.json"
    public static let completeMarkerName = "COMPLETE"
    /// A file larger than this is refused as a size bomb (1 TiB).
    public static let fileBytesMax: UInt64 = 1 << 40
    /// A snapshot with more files is refused.
    public static let filesMax = 1_000_000

    public var formatVersion: Int
    public var chainID: String
    public var laneCount: Int
    public var height: UInt64
    public var metaRoot: String
    /// Seconds since 1970.
    public var createdAt: UInt64
    public var lanes: [Lane]
    /// Hex of the commit record of `height` (empty at height 0): a restore that starts a new
    /// WAL writes it back, so the chain continues from it.
    public var commitRecord: String
    public var files: [File]

    enum CodingKeys: String, CodingKey {
        case commitRecord = "commit_record"
        case formatVersion = "format_version"
        case chainID = "chain_id"
        case laneCount = "lane_count"
        case height
        case metaRoot = "meta_root"
        case createdAt = "created_at"
        case lanes, files
    }

    public var totalBytes: UInt64 { files.reduce(0) { $0 + $1.sizeBytes } }

    /// The manifest's bytes (sorted keys, so the same manifest always hashes the same).
    public func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(self)) + [0x0A]
        } catch {
            preconditionFailure("a manifest always encodes: \(error)")
        }
    }

    static func decode(_ bytes: [UInt8]) -> SnapshotManifest? {
        try? JSONDecoder().decode(SnapshotManifest.self, from: Data(bytes))
    }

    /// A snapshot name a node could have made (and that is safe in a URL path, an object key and
    /// a file name): 1–128 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
    public static func isPlainName(_ name: String) -> Bool {
        (1...128).contains(name.utf8.count) && name != "." && name != ".."
            && name.utf8.allSatisfy { (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// A manifest a peer served: it must decode and be well formed (`structuralProblem`);
    /// whether it is the one wanted (its digest, chain and roots) is the caller's check.
    public static func decodeServed(_ bytes: [UInt8]) -> Result<SnapshotManifest, SnapshotError> {
        guard let manifest = decode(bytes) else { return .failure(SnapshotError(.damaged, path: fileName, "the manifest does not decode")) }
        if let problem = manifest.structuralProblem() { return .failure(SnapshotError(.hostile, path: fileName, problem)) }
        return .success(manifest)
    }

    public static func completeMarker(manifestBytes: [UInt8]) -> [UInt8] {
        Array("format=\(currentFormatVersion)\nmanifest_sha256=\(sha256Hex(manifestBytes))\n".utf8)
    }

    /// Checks what can be checked without reading the files: the format, the lanes, and that
    /// every path is a plain relative path under `lanes/` with a sane size. Returns the first
    /// problem.
    func structuralProblem() -> String? {
        guard formatVersion == Self.currentFormatVersion else { return "format_version \(formatVersion) is not \(Self.currentFormatVersion)" }
        guard EngineConfiguration.laneCountRange.contains(laneCount), lanes.count == laneCount, lanes.map(\.lane) == Array(0..<laneCount) else {
            return "the lanes do not match lane_count \(laneCount)"
        }
        guard Hash32(hex: metaRoot) != nil, lanes.allSatisfy({ Hash32(hex: $0.laneRoot) != nil }) else { return "a root is not 64 hex digits" }
        if height == 0 {
            guard commitRecord.isEmpty else { return "a commit record at height 0" }
        } else {
            guard let record = Hex.decode(commitRecord).flatMap({ CommitRecord.decode($0) }), record.height == height, record.metaRoot.hex == metaRoot,
                record.lanes.map(\.laneRoot.hex) == lanes.map(\.laneRoot)
            else { return "the commit record does not match the height, MetaRoot and lane roots" }
        }
        guard files.count <= Self.filesMax else { return "\(files.count) files (more than \(Self.filesMax))" }
        var seen = Set<String>()
        for file in files {
            if let problem = Self.pathProblem(file.path) { return "\(quoted(file.path)): \(problem)" }
            guard seen.insert(file.path).inserted else { return "\(file.path) is listed twice" }
            guard file.sizeBytes <= Self.fileBytesMax else { return "\(file.path) claims \(file.sizeBytes) bytes (size bomb)" }
            guard file.sha256.count == 64, file.sha256.allSatisfy(\.isHexDigit) else { return "\(file.path) has a malformed sha256" }
        }
        // A file cannot also be a directory of another (`a` and `a/b`).
        for file in files {
            var ancestor = Substring(file.path)
            // Bounded by the path's components.
            while let slash = ancestor.lastIndex(of: "/") {
                ancestor = ancestor[..<slash]
                if seen.contains(String(ancestor)) { return "\(ancestor) is listed as a file and as a directory of \(file.path)" }
            }
        }
        return nil
    }

    /// Why `path` may not appear in a snapshot: absolute, escaping (`..`), empty or odd
    /// components, or outside `lanes/lane-NNNN/`.
    static func pathProblem(_ path: String) -> String? {
        guard !path.hasPrefix("/") else { return "an absolute path" }
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        guard components.count >= 3, components[0] == "lanes" else { return "not under lanes/lane-NNNN/" }
        for component in components {
            guard !component.isEmpty, component != ".", component != ".." else { return "a path escaping the snapshot" }
            guard component.utf8.count <= 255, !component.contains("\\"), !component.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F })
            else { return "a malformed name" }
        }
        guard components[1].hasPrefix("lane-"), Int(components[1].dropFirst(5)) != nil else { return "not under lanes/lane-NNNN/" }
        return nil
    }
}
