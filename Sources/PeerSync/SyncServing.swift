import Documents
import Engine
import FaultFS

/// What a node answers its peers, built from its engine: the one definition both servers use
/// (the HTTP API's `/v1/sync/*` routes and the simulator's nodes), so that the bytes a peer
/// reads are the same whichever network carried them. Only durable blocks are served. Reads go
/// through the engine (WAL reads); the caller bounds how many run at once.
public enum SyncServing {
    /// `GET /v1/sync/status`.
    public static func status(of engine: Engine) throws(EngineError) -> SyncStatusDocument {
        let servable = engine.servableHeight
        let oldest = try engine.oldestServableHeight().map { min($0, servable) }
        let roots = engine.stateRoots()
        let chain = engine.configuration
        return SyncStatusDocument(
            chainID: chain.chainID, genesisDigest: Engine.genesisDigest(chainID: chain.chainID, laneCount: chain.laneCount).hex,
            lanes: chain.laneCount, height: roots.height, servableHeight: servable, metaRoot: roots.metaRoot.hex,
            oldestServableHeight: oldest, archive: chain.archive)
    }

    /// `GET /v1/sync/headers?from=&count=`: chain links of durable blocks.
    public static func headers(of engine: Engine, from: UInt64, count: Int) throws(EngineError) -> SyncHeadersDocument {
        let links = try engine.servedLinks(from: from, count: count)
        return SyncHeadersDocument(headers: links.map { .init(height: $0.height, metaRoot: $0.metaRoot.hex, previousMetaRoot: $0.previousMetaRoot.hex) })
    }

    /// `GET /v1/sync/blocks?from=&max_blocks=&max_bytes=`: 200 with `application/x-rivellum-blocks`
    /// (empty past the servable height), or 410 naming the oldest servable height below what the
    /// log holds.
    public static func blocks(of engine: Engine, from: UInt64, maxBlocks: Int, maxBytes: Int) throws(EngineError) -> PeerResponse {
        switch try engine.servedBlocks(from: from, maxBlocks: maxBlocks, rangeBytesMax: maxBytes) {
        case .belowRetention(let oldest):
            let text = "height \(from) is no longer held" + (oldest.map { "; the oldest servable height is \($0)" } ?? "; no block is held")
            return PeerResponse(
                status: 410, headers: ["content-type": "application/json"],
                body: JSONDocument.encodeBytes(BelowRetentionDocument(error: text, oldestServableHeight: oldest)))
        case .blocks(let blocks):
            let encoded = BlockRangeCodec.encode(blocks)
            assert(blocks.count <= 1 || encoded.count <= maxBytes, "the range keeps to the bytes asked for")
            return PeerResponse(status: 200, headers: ["content-type": BlockRangeCodec.contentType], body: encoded)
        }
    }

    /// `GET /v1/sync/snapshots`: the verified snapshots offered to peers.
    public static func snapshotOffers(fileSystem: any FileSystem, dataDirectory: String) throws(SnapshotError) -> SnapshotOffersDocument {
        let offers = try SnapshotOffers.list(fileSystem: fileSystem, dataDirectory: dataDirectory)
        return SnapshotOffersDocument(
            snapshots: offers.map {
                .init(name: $0.name, height: $0.height, metaRoot: $0.metaRoot, manifestSHA256: $0.manifestSHA256, sizeBytes: $0.sizeBytes, files: $0.fileCount)
            })
    }

    /// The answer to `request` as the HTTP API gives it (the simulator's nodes serve this way):
    /// 200 with the document or range, 410 below retention, 503 when the engine failed.
    public static func respond(to request: SyncRequest, from engine: Engine) -> PeerResponse {
        do {
            switch request {
            case .status:
                return PeerResponse(status: 200, headers: ["content-type": "application/json"], body: JSONDocument.encodeBytes(try status(of: engine)))
            case .links(let from, let count):
                let document = try headers(of: engine, from: from, count: min(count, ChainLink.countMax))
                return PeerResponse(status: 200, headers: ["content-type": "application/json"], body: JSONDocument.encodeBytes(document))
            case .blocks(let from, let count):
                return try blocks(of: engine, from: from, maxBlocks: min(count, BlockRangeCodec.blocksMax), maxBytes: BlockRangeCodec.requestBytesMax)
            }
        } catch {
            return PeerResponse(status: 503, body: Array("\(error)".utf8))
        }
    }
}
