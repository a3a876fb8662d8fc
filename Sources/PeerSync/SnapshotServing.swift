import Documents
import Engine
import FaultFS

/// The snapshot half of what a node serves its peers for state sync, as both servers give it
/// (the HTTP API's `/v1/sync/snapshots*` routes and the simulator's nodes): the offers, a
/// manifest's stored bytes, and a byte range of a file a verified manifest lists, with the
/// statuses the HTTP API answers. `SnapshotOffers` decides what may be read at all.
public enum SnapshotServing {
    /// The range of `filePath` in snapshot `name` that the `Range` header asks for (the whole
    /// file without one, if it fits in one answer), capped at `SnapshotOffers.rangeBytesMax`.
    public static func fileRange(
        fileSystem: any FileSystem, dataDirectory: String, name: String, filePath: String, rangeHeader: String?
    ) throws(SnapshotError) -> SnapshotOffers.FileRange {
        try SnapshotOffers.fileRange(fileSystem: fileSystem, dataDirectory: dataDirectory, name: name, filePath: filePath) { size throws(SnapshotError) in
            do throws(ByteRangeRequest.Problem) {
                let wanted = try ByteRangeRequest(header: rangeHeader, fileSizeBytes: size, answerBytesMax: SnapshotOffers.rangeBytesMax)
                return (wanted.offset, wanted.count)
            } catch {
                throw SnapshotError(error.rangeRequired ? .rangeRequired : .rangeNotSatisfiable, path: filePath, error.description)
            }
        }
    }

    /// The HTTP status and error kind a failed snapshot read is answered with: not offered 404,
    /// a bad range 416 (413 when a range is required), I/O 503, anything else (damage or a
    /// hostile tree in the node's own snapshot) 500.
    public static func failureStatus(_ error: SnapshotError) -> (status: Int, kind: String) {
        switch error.kind {
        case .rangeRequired: (413, "range_required")
        case .rangeNotSatisfiable: (416, "range_not_satisfiable")
        case .notOffered: (404, "not_offered")
        case .io: (503, "io")
        default: (500, "snapshot_\(error.kind.rawValue)")
        }
    }

    /// The answer to a state-sync request, as the HTTP API gives it: status and links from the
    /// engine (`SyncServing`), offers, manifests and chunks from the node's verified snapshots.
    public static func respond(to request: StateSyncRequest, engine: Engine, fileSystem: any FileSystem) -> PeerResponse {
        let dataDirectory = engine.configuration.dataDirectory
        do throws(SnapshotError) {
            switch request {
            case .status:
                return SyncServing.respond(to: .status, from: engine)
            case .link(let height):
                return SyncServing.respond(to: .links(from: height, count: 1), from: engine)
            case .offers:
                let document = try SyncServing.snapshotOffers(fileSystem: fileSystem, dataDirectory: dataDirectory)
                return PeerResponse(status: 200, headers: ["content-type": "application/json"], body: JSONDocument.encodeBytes(document))
            case .manifest(let name):
                let bytes = try SnapshotOffers.manifest(fileSystem: fileSystem, dataDirectory: dataDirectory, name: name)
                return PeerResponse(status: 200, headers: ["content-type": "application/json"], body: bytes)
            case .chunk(let name, let path, let offset, let count):
                let range = try fileRange(
                    fileSystem: fileSystem, dataDirectory: dataDirectory, name: name, filePath: path, rangeHeader: "bytes=\(offset)-\(offset + count - 1)")
                let last = range.offset + UInt64(range.bytes.count) - 1
                return PeerResponse(
                    status: 206, headers: ["content-type": "application/octet-stream", "content-range": "bytes \(range.offset)-\(last)/\(range.fileSizeBytes)"],
                    body: range.bytes)
            }
        } catch {
            let (status, kind) = failureStatus(error)
            return PeerResponse(status: status, headers: ["content-type": "application/json"], body: JSONDocument.encodeBytes(["error": error.description, "kind": kind]))
        }
    }
}

/// One byte range a peer asks for (`Range: bytes=A-B`, `bytes=A-`, `bytes=-N`), resolved against
/// the file's size and capped at what one answer holds. Without a header: the whole file, if it
/// fits in one answer.
public struct ByteRangeRequest: Sendable, Equatable {
    public var offset: UInt64
    public var count: UInt64

    public struct Problem: Error, CustomStringConvertible {
        public var description: String
        /// No range was given and the whole file is larger than one answer.
        public var rangeRequired = false
    }

    public init(header: String?, fileSizeBytes size: UInt64, answerBytesMax: UInt64) throws(Problem) {
        guard let header else {
            guard size <= answerBytesMax else {
                throw Problem(description: "a Range header is required: the file is \(size) bytes, more than one answer holds (\(answerBytesMax))", rangeRequired: true)
            }
            self.init(offset: 0, count: size)
            return
        }
        guard header.hasPrefix("bytes="), !header.contains(",") else {
            throw Problem(description: "the range \(quoted(header)) is not one bytes=A-B range")
        }
        let spec = header.dropFirst("bytes=".count).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard spec.count == 2 else { throw Problem(description: "the range \(quoted(header)) is not one bytes=A-B range") }
        let first = UInt64(spec[0]), last = UInt64(spec[1])
        switch (spec[0].isEmpty, spec[1].isEmpty) {
        case (false, _) where first != nil && (spec[1].isEmpty || last != nil):
            let start = first!
            let end = min(last ?? (size &- 1), size &- 1)
            guard start < size, last.map({ $0 >= start }) ?? true else {
                throw Problem(description: "the range \(quoted(header)) is past the file's \(size) bytes")
            }
            self.init(offset: start, count: min(end - start + 1, answerBytesMax))
        case (true, false) where last != nil && last! > 0 && size > 0:
            let suffix = min(last!, size)
            self.init(offset: size - suffix, count: min(suffix, answerBytesMax))
        default:
            throw Problem(description: "the range \(quoted(header)) is not satisfiable for a file of \(size) bytes")
        }
    }

    public init(offset: UInt64, count: UInt64) {
        self.offset = offset
        self.count = count
    }
}
