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
            try SnapshotServing.fileRange(fileSystem: PosixFileSystem(), dataDirectory: dataDirectory, name: name, filePath: filePath, rangeHeader: rangeHeader)
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
            let (status, kind) = SnapshotServing.failureStatus(error)
            if status == 500 { logger.error("a snapshot offered to peers is not intact", metadata: ["error": "\(error)"]) }
            // A bad range is the peer's mistake: its message alone says what was wrong.
            throw APIError(HTTPResponse.Status(code: status), status == 413 || status == 416 ? error.message : error.description, kind: kind)
        }
    }
}
