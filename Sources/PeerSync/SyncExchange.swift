import Documents
import Engine

/// How a `SyncRequest` goes over the wire and how the answer comes back as a `SyncInput`: the
/// one translation both drivers use (HTTP in the node, the simulated network in the simulator),
/// so that what counts as a peer's fault is decided here and nowhere else.
///
/// Unreachable (back off, ask again later): no connection, a timeout, a 5xx, a 410 below the
/// peer's retention, or a 4xx to a request this node built (its own bug, not the peer's lie).
/// Misbehaved (faulty): a 200 whose body does not decode or is not what was asked, or an answer
/// past the size bound.
public enum SyncExchange {
    /// The most bytes a status or links answer may take.
    public static let documentBytesMax = 4 << 20

    public static func peerRequest(_ request: SyncRequest, baseURL: String, timeoutSeconds: Double) -> PeerRequest {
        switch request {
        case .status:
            return PeerRequest(.get, baseURL: baseURL, path: "/v1/sync/status", timeoutSeconds: timeoutSeconds, responseBytesMax: documentBytesMax)
        case .links(let from, let count):
            return PeerRequest(
                .get, baseURL: baseURL, path: "/v1/sync/headers?from=\(from)&count=\(count)", timeoutSeconds: timeoutSeconds,
                responseBytesMax: documentBytesMax)
        case .blocks(let from, let count):
            return PeerRequest(
                .get, baseURL: baseURL, path: "/v1/sync/blocks?from=\(from)&max_blocks=\(count)&max_bytes=\(BlockRangeCodec.requestBytesMax)",
                timeoutSeconds: timeoutSeconds, responseBytesMax: BlockRangeCodec.rangeBytesMax)
        }
    }

    public static func input(peer: Int, request: SyncRequest, outcome: Result<PeerResponse, PeerTransportError>) -> SyncInput {
        switch request {
        case .status: return .status(peer: peer, answer(outcome, decode: status))
        case .links(let from, _): return .links(peer: peer, from: from, answer(outcome, decode: links))
        case .blocks(let from, _): return .blocks(peer: peer, from: from, answer(outcome, decode: blocks))
        }
    }

    static func answer<Value>(
        _ outcome: Result<PeerResponse, PeerTransportError>, decode: ([UInt8]) -> Result<Value, PeerFault>
    ) -> Result<Value, PeerFault> {
        switch outcome {
        case .failure(let error):
            return .failure(error.kind == .responseTooLarge ? .misbehaved("\(error)") : .unreachable("\(error)"))
        case .success(let response) where response.status == 200:
            return decode(response.body)
        case .success(let response):
            return .failure(.unreachable("answered \(response.status): \(String(response.text.prefix(200)))"))
        }
    }

    static func status(_ body: [UInt8]) -> Result<PeerStatus, PeerFault> {
        guard let document = try? JSONDocument.decode(SyncStatusDocument.self, from: body), let digest = Hash32(hex: document.genesisDigest),
            (1...1_024).contains(document.lanes)
        else { return .failure(.misbehaved("a status that does not decode")) }
        return .success(
            PeerStatus(
                chainID: document.chainID, genesisDigest: digest, laneCount: document.lanes, servableHeight: document.servableHeight,
                oldestServableHeight: document.oldestServableHeight, archive: document.archive))
    }

    static func links(_ body: [UInt8]) -> Result<[ChainLink], PeerFault> {
        guard let document = try? JSONDocument.decode(SyncHeadersDocument.self, from: body), document.headers.count <= ChainLink.countMax else {
            return .failure(.misbehaved("chain links that do not decode"))
        }
        var links: [ChainLink] = []
        for link in document.headers {
            guard let root = Hash32(hex: link.metaRoot), let previous = Hash32(hex: link.previousMetaRoot), link.height >= 1 else {
                return .failure(.misbehaved("a chain link that does not decode"))
            }
            links.append(ChainLink(height: link.height, metaRoot: root, previousMetaRoot: previous))
        }
        return .success(links)
    }

    private static func blocks(_ body: [UInt8]) -> Result<[SyncBlock], PeerFault> {
        do {
            return .success(try BlockRangeCodec.decode(body))
        } catch {
            return .failure(.misbehaved("\(error)"))
        }
    }
}
