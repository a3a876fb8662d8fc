import Documents
import Engine

/// How a `StateSyncRequest` goes over the wire and how the answer comes back as a
/// `StateSyncInput`, for both drivers (as `SyncExchange` is for blocks). What counts as a
/// peer's fault follows `SyncExchange`: no answer, a 5xx or a 4xx is unreachable (back off);
/// a 200/206 that does not decode, is not what was asked, or is larger than asked is
/// misbehaved. A snapshot name or file path that could not be a plain name is misbehaved too.
public enum StateSyncExchange {
    /// The most bytes a list of offers may take.
    public static let offersBytesMax = 1 << 20
    /// The most bytes a manifest may take (a million files fit).
    public static let manifestBytesMax = 256 << 20

    public static func peerRequest(_ request: StateSyncRequest, baseURL: String, timeoutSeconds: Double) -> PeerRequest {
        switch request {
        case .status:
            return SyncExchange.peerRequest(.status, baseURL: baseURL, timeoutSeconds: timeoutSeconds)
        case .link(let height):
            return SyncExchange.peerRequest(.links(from: height, count: 1), baseURL: baseURL, timeoutSeconds: timeoutSeconds)
        case .offers:
            return PeerRequest(.get, baseURL: baseURL, path: "/v1/sync/snapshots", timeoutSeconds: timeoutSeconds, responseBytesMax: offersBytesMax)
        case .manifest(let name):
            precondition(isPlainName(name), "only a plain snapshot name is asked for")
            return PeerRequest(
                .get, baseURL: baseURL, path: "/v1/sync/snapshots/\(name)/manifest", timeoutSeconds: timeoutSeconds, responseBytesMax: manifestBytesMax)
        case .chunk(let name, let path, let offset, let count):
            precondition(isPlainName(name) && count > 0 && count <= UInt64(Int.max), "a chunk of a named snapshot has bytes")
            var wire = PeerRequest(
                .get, baseURL: baseURL, path: "/v1/sync/snapshots/\(name)/file?path=\(percentEncoded(path))", timeoutSeconds: timeoutSeconds,
                responseBytesMax: Int(count))
            wire.headers["range"] = "bytes=\(offset)-\(offset + count - 1)"
            return wire
        }
    }

    public static func input(peer: Int, request: StateSyncRequest, outcome: Result<PeerResponse, PeerTransportError>) -> StateSyncInput {
        switch request {
        case .status:
            return .status(peer: peer, SyncExchange.answer(outcome, decode: SyncExchange.status))
        case .link(let height):
            return .link(peer: peer, height: height, SyncExchange.answer(outcome, decode: SyncExchange.links).flatMap(oneLink))
        case .offers:
            return .offers(peer: peer, SyncExchange.answer(outcome, decode: offers))
        case .manifest(let name):
            return .manifest(peer: peer, name: name, SyncExchange.answer(outcome, decode: manifest))
        case .chunk(_, let path, let offset, let count):
            return .chunk(peer: peer, path: path, offset: offset, chunk(outcome, offset: offset, count: count))
        }
    }

    private static func oneLink(_ links: [ChainLink]) -> Result<ChainLink, PeerFault> {
        guard links.count == 1, let link = links.first else { return .failure(.misbehaved("\(links.count) chain links for one height")) }
        return .success(link)
    }

    static func offers(_ body: [UInt8]) -> Result<[SnapshotOffer], PeerFault> {
        guard let document = try? JSONDocument.decode(SnapshotOffersDocument.self, from: body) else {
            return .failure(.misbehaved("a list of snapshots that does not decode"))
        }
        var offers: [SnapshotOffer] = []
        for offer in document.snapshots {
            guard isPlainName(offer.name), let root = Hash32(hex: offer.metaRoot), offer.manifestSHA256.count == 64,
                offer.manifestSHA256.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
            else { return .failure(.misbehaved("an offered snapshot with a malformed name, root or digest")) }
            offers.append(SnapshotOffer(name: offer.name, height: offer.height, metaRoot: root, manifestSHA256: offer.manifestSHA256, sizeBytes: offer.sizeBytes))
        }
        return .success(offers)
    }

    static func manifest(_ body: [UInt8]) -> Result<FetchedManifest, PeerFault> {
        switch SnapshotManifest.decodeServed(body) {
        case .failure(let error): return .failure(.misbehaved("a manifest refused: \(error.message)"))
        case .success(let manifest):
            guard let fetched = StateSyncManifest(manifest) else { return .failure(.misbehaved("a manifest with a malformed root")) }
            return .success(FetchedManifest(bytes: body, manifest: fetched))
        }
    }

    /// A chunk must come as 206 with the `Content-Range` asked for and exactly its bytes.
    static func chunk(_ outcome: Result<PeerResponse, PeerTransportError>, offset: UInt64, count: UInt64) -> Result<[UInt8], PeerFault> {
        switch outcome {
        case .success(let response) where response.status == 206:
            let expected = "bytes \(offset)-\(offset + count - 1)/"
            guard let range = response.headers["content-range"], range.hasPrefix(expected), UInt64(range.dropFirst(expected.count)) != nil else {
                return .failure(.misbehaved("a chunk with Content-Range \(response.headers["content-range"] ?? "missing"), asked \(expected)…"))
            }
            guard UInt64(response.body.count) == count else { return .failure(.misbehaved("\(response.body.count) bytes for a chunk of \(count)")) }
            return .success(response.body)
        case .success(let response) where response.status == 200:
            return .failure(.misbehaved("a whole file (200) for a range request"))
        default:
            return SyncExchange.answer(outcome) { .success($0) }
        }
    }

    /// A snapshot name a node could have made (`SnapshotManifest.isPlainName`).
    public static func isPlainName(_ name: String) -> Bool { SnapshotManifest.isPlainName(name) }

    private static func isUnreserved(_ byte: UInt8) -> Bool {
        (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2E || byte == 0x5F || byte == 0x2D
    }

    /// RFC 3986 percent-encoding of a query value (everything but unreserved characters and `/`).
    static func percentEncoded(_ value: String) -> String {
        var encoded = ""
        for byte in value.utf8 {
            if isUnreserved(byte) || byte == 0x2F || byte == 0x7E {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 0x0F, radix: 16, uppercase: true)
            }
        }
        return encoded
    }
}

extension StateSyncManifest {
    /// The parts of a decoded manifest that state sync decides on; nil when a root is malformed.
    public init?(_ manifest: SnapshotManifest) {
        guard let root = Hash32(hex: manifest.metaRoot) else { return nil }
        self.init(
            chainID: manifest.chainID, laneCount: manifest.laneCount, height: manifest.height, metaRoot: root,
            files: manifest.files.map { StateSyncFile(path: $0.path, sizeBytes: $0.sizeBytes, sha256: $0.sha256) })
    }
}

extension StateSyncStaged {
    /// What staging holds, in the machine's chunks of `chunkBytes`: a staged chunk of another
    /// size or alignment (a run with another chunk size) is fetched again.
    public init?(_ staged: StagedDownload, chunkBytes: UInt64) {
        guard let manifest = StateSyncManifest(staged.manifest) else { return nil }
        let offer = staged.offer
        var chunks: [String: Set<UInt64>] = [:]
        for file in staged.manifest.files {
            for chunk in staged.stagedChunks[file.path] ?? [] where chunk.offset % chunkBytes == 0 && chunk.count == min(chunkBytes, file.sizeBytes - chunk.offset) {
                chunks[file.path, default: []].insert(chunk.offset)
            }
        }
        self.init(
            manifestSHA256: offer.manifestSHA256, manifestBytes: staged.manifestBytes, manifest: manifest,
            offer: offer,
            verifiedFiles: staged.verifiedPaths, stagedChunks: chunks)
    }
}
