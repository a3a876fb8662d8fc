import Documents
import Engine
import FaultFS
import HTTPTypes
import Hummingbird
import NIOCore
import PeerSync

/// The snapshot half of what a node serves its peers (state sync): its verified snapshots, each
/// one's manifest, and byte ranges of the files a manifest lists (`SnapshotOffers` decides what
/// may be read). Reads share the peer-read bound with block serving.
extension NodeAPI {
    func addSnapshotOfferRoutes(to router: Router<NodeRequestContext>) {
        router.get("/v1/sync/snapshots") { _, _ in json(try await snapshotOffers()) }
        router.get("/v1/sync/snapshots/{name}/manifest") { _, context in try await snapshotManifest(try context.parameters.require("name")) }
        router.get("/v1/sync/snapshots/{name}/file") { request, context in
            try await snapshotFile(request, name: try context.parameters.require("name"))
        }
    }

    private func snapshotOffers() async throws -> SnapshotOffersDocument {
        let dataDirectory = configuration.node.dataDirectory
        return try await servingSnapshot { () throws(SnapshotError) in
            try SyncServing.snapshotOffers(fileSystem: PosixFileSystem(), dataDirectory: dataDirectory)
        }
    }

    /// The manifest's bytes exactly as stored: the peer checks them against `manifest_sha256`.
    private func snapshotManifest(_ name: String) async throws -> Response {
        let dataDirectory = configuration.node.dataDirectory
        let bytes = try await servingSnapshot { () throws(SnapshotError) in
            try SnapshotOffers.manifest(fileSystem: PosixFileSystem(), dataDirectory: dataDirectory, name: name)
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// `?path=lanes/lane-0000/000012.sst` with `Range: bytes=A-B` (or `A-`, or `-N`): 206 with
    /// `Content-Range`, at most 4 MiB. Without `Range`, the whole file (200) when it fits in one
    /// answer, else 413 `range_required`. 416 for a range past the end.
    private func snapshotFile(_ request: Request, name: String) async throws -> Response {
        guard let filePath = request.uri.queryParameters.get("path"), !filePath.isEmpty else {
            throw APIError(.badRequest, "the query parameter path is required")
        }
        let dataDirectory = configuration.node.dataDirectory
        let rangeHeader = request.headers[.range]
        let range = try await servingSnapshot { () throws(SnapshotError) -> SnapshotOffers.FileRange in
            try SnapshotOffers.fileRange(fileSystem: PosixFileSystem(), dataDirectory: dataDirectory, name: name, filePath: filePath) {
                size throws(SnapshotError) in
                do throws(ByteRangeRequest.Problem) {
                    let wanted = try ByteRangeRequest(header: rangeHeader, fileSizeBytes: size, answerBytesMax: SnapshotOffers.rangeBytesMax)
                    return (wanted.offset, wanted.count)
                } catch {
                    throw SnapshotError(error.rangeRequired ? .rangeRequired : .rangeNotSatisfiable, path: filePath, error.description)
                }
            }
        }
        var headers: HTTPFields = [.contentType: "application/octet-stream", .acceptRanges: "bytes"]
        guard rangeHeader != nil else {
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: range.bytes)))
        }
        guard !range.bytes.isEmpty else { throw APIError(.rangeNotSatisfiable, "the file is empty: no range of it exists", kind: "range_not_satisfiable") }
        let last = range.offset + UInt64(range.bytes.count) - 1
        headers[.contentRange] = "bytes \(range.offset)-\(last)/\(range.fileSizeBytes)"
        return Response(status: .partialContent, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: range.bytes)))
    }

    /// Runs a snapshot read under the peer-read bound, mapping its errors to statuses: not
    /// offered 404, a bad range 416 (or 413 when a range is required), damage or a hostile tree
    /// in the node's own snapshot 500 (logged: the operator must look), I/O 503.
    private func servingSnapshot<Value: Sendable>(_ read: @escaping @Sendable () throws(SnapshotError) -> Value) async throws -> Value {
        do {
            return try await servingPeer { () throws -> Value in try read() }
        } catch let error as SnapshotError {
            switch error.kind {
            case .rangeRequired:
                throw APIError(.contentTooLarge, error.message, kind: "range_required")
            case .rangeNotSatisfiable:
                throw APIError(.rangeNotSatisfiable, error.message, kind: "range_not_satisfiable")
            case .notOffered:
                throw APIError(.notFound, error.description, kind: "not_offered")
            case .io:
                throw APIError(.serviceUnavailable, error.description, kind: "io")
            default:
                logger.error("a snapshot offered to peers is not intact", metadata: ["error": "\(error)"])
                throw APIError(.internalServerError, error.description, kind: "snapshot_\(error.kind.rawValue)")
            }
        }
    }
}

/// One byte range a peer asks for (`Range: bytes=A-B`, `bytes=A-`, `bytes=-N`), resolved against
/// the file's size and capped at what one answer holds. Without a header: the whole file, if it
/// fits in one answer.
struct ByteRangeRequest: Equatable {
    var offset: UInt64
    var count: UInt64

    struct Problem: Error, CustomStringConvertible {
        var description: String
        /// No range was given and the whole file is larger than one answer.
        var rangeRequired = false
    }

    init(header: String?, fileSizeBytes size: UInt64, answerBytesMax: UInt64) throws(Problem) {
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

    init(offset: UInt64, count: UInt64) {
        self.offset = offset
        self.count = count
    }
}
