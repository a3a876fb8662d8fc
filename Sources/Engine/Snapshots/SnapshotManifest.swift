import Crypto
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

    static func completeMarker(manifestBytes: [UInt8]) -> [UInt8] {
        Array("format=\(currentFormatVersion)\nmanifest_sha256=\(sha256Hex(manifestBytes))\n".utf8)
    }

    /// Checks what can be checked without reading the files: the format, the lanes, and that
    /// every path is a plain relative path under `lanes/` with a sane size. Returns the first
    /// problem.
    func structuralProblem() -> String? {
        guard formatVersion == Self.currentFormatVersion else { return "format_version \(formatVersion) is not \(Self.currentFormatVersion)" }
        guard (1...1_024).contains(laneCount), lanes.count == laneCount, lanes.map(\.lane) == Array(0..<laneCount) else {
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
            if let problem = Self.pathProblem(file.path) { return "\(jsonString(file.path)): \(problem)" }
            guard seen.insert(file.path).inserted else { return "\(file.path) is listed twice" }
            guard file.sizeBytes <= Self.fileBytesMax else { return "\(file.path) claims \(file.sizeBytes) bytes (size bomb)" }
            guard file.sha256.count == 64, file.sha256.allSatisfy(\.isHexDigit) else { return "\(file.path) has a malformed sha256" }
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
            guard component.utf8.count <= 255, !component.contains("\0"), !component.contains("\\") else { return "a malformed name" }
        }
        guard components[1].hasPrefix("lane-"), Int(components[1].dropFirst(5)) != nil else { return "not under lanes/lane-NNNN/" }
        return nil
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    Hex.encode(SHA256.hash(data: bytes))
}

/// SHA-256 of a file, read in 1 MiB chunks; also returns the size read.
func sha256OfFile(_ fileSystem: any FileSystem, _ path: String) throws(FileSystemError) -> (hex: String, sizeBytes: UInt64) {
    let handle = try fileSystem.openFile(path, options: .readOnly)
    defer { try? handle.close() }
    var hasher = SHA256()
    let size = try handle.size()
    var offset: UInt64 = 0
    // Bounded by the file's size.
    while offset < size {
        let chunk = try handle.read(at: offset, count: Int(min(1 << 20, size - offset)))
        if chunk.isEmpty { break }
        hasher.update(data: chunk)
        offset += UInt64(chunk.count)
    }
    return (Hex.encode(hasher.finalize()), offset)
}

/// Hashes `paths` (SHA-256 and size), optionally fsyncing each, on `concurrency` threads
/// (1: in order on the caller's thread — the simulator's choice, which keeps runs deterministic).
/// Progress is reported as files finish.
func hashFiles(
    fileSystem: any FileSystem, paths: [String], concurrency: Int, syncEach: Bool,
    progress: (_ filesDone: Int, _ bytesDone: UInt64) -> Void
) throws(SnapshotError) -> [(hex: String, sizeBytes: UInt64)] {
    precondition(concurrency >= 1)
    @Sendable func one(_ path: String) throws(SnapshotError) -> (hex: String, sizeBytes: UInt64) {
        try io(path, "hashing") { () throws(FileSystemError) in
            let digest = try sha256OfFile(fileSystem, path)
            if syncEach {
                // fsync through a read-only descriptor syncs the inode.
                let handle = try fileSystem.openFile(path, options: .readOnly)
                defer { try? handle.close() }
                try handle.fullSync()
            }
            return digest
        }
    }
    if concurrency == 1 || paths.count < 2 {
        var results: [(hex: String, sizeBytes: UInt64)] = []
        var bytes: UInt64 = 0
        for path in paths {
            let result = try one(path)
            results.append(result)
            bytes += result.sizeBytes
            progress(results.count, bytes)
        }
        return results
    }
    final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var done = 0
        var bytes: UInt64 = 0
        var results: [(hex: String, sizeBytes: UInt64)?]
        var failure: SnapshotError?
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }
    let shared = Shared(count: paths.count)
    let progressLock = NSLock()
    withoutActuallyEscaping(progress) { progress in
        nonisolated(unsafe) let report = progress
        DispatchQueue.concurrentPerform(iterations: min(concurrency, paths.count)) { _ in
            // Bounded: each round takes the next file index until none is left.
            while true {
                let index: Int? = shared.lock.withLock {
                    guard shared.failure == nil, shared.next < paths.count else { return nil }
                    defer { shared.next += 1 }
                    return shared.next
                }
                guard let index else { return }
                do throws(SnapshotError) {
                    let result = try one(paths[index])
                    let (done, bytes) = shared.lock.withLock { () -> (Int, UInt64) in
                        shared.results[index] = result
                        shared.done += 1
                        shared.bytes += result.sizeBytes
                        return (shared.done, shared.bytes)
                    }
                    progressLock.withLock { report(done, bytes) }
                } catch {
                    shared.lock.withLock { if shared.failure == nil { shared.failure = error } }
                }
            }
        }
    }
    if let failure = shared.failure { throw failure }
    return shared.results.map { $0! }
}

/// Why a snapshot operation refused or failed, with the path and what to do.
public struct SnapshotError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A file, the manifest or a root does not match: the snapshot is damaged or tampered.
        case damaged
        /// Paths escaping the snapshot, symbolic links, size bombs, unexpected files.
        case hostile
        /// Not a complete snapshot (partial, or no completion marker).
        case incomplete
        /// Another chain's (or lane count's) snapshot.
        case wrongChain = "wrong_chain"
        /// A node holds the data directory.
        case locked
        /// The target already exists.
        case exists
        /// The WAL cannot continue from the snapshot (a gap or another history).
        case walGap = "wal_gap"
        /// The snapshot or the data directory could not be read or written.
        case io
        /// The engine could not checkpoint.
        case engine
        /// Nothing to do or a bad request (unknown snapshot, bad arguments).
        case invalid
    }

    public var kind: Kind
    public var path: String
    public var message: String

    public init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(path): \(message)" }
}
