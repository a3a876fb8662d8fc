import Documents
import Engine
import PeerSync
import Testing

/// `StateSyncExchange`: the wire shape of each request, and what each answer means (a chunk's
/// status, range and size; an offer's name, root and digest; a manifest's structure).
@Suite("State-sync exchange (decision table)")
struct StateSyncExchangeTests {
    static let request = StateSyncRequest.chunk(name: "snapshot-20261204-010000", path: "lanes/lane-0000/0 1.sst", offset: 8, count: 4)

    @Test func requestsHaveTheirPathsRangeAndBounds() {
        let wire = StateSyncExchange.peerRequest(Self.request, baseURL: "http://127.0.0.1:1", timeoutSeconds: 5)
        #expect(wire.path == "/v1/sync/snapshots/snapshot-20261204-010000/file?path=lanes/lane-0000/0%201.sst")
        #expect(wire.headers["range"] == "bytes=8-11" && wire.responseBytesMax == 4)
        #expect(StateSyncExchange.peerRequest(.offers, baseURL: "http://h:1", timeoutSeconds: 5).path == "/v1/sync/snapshots")
        #expect(StateSyncExchange.peerRequest(.link(height: 7), baseURL: "http://h:1", timeoutSeconds: 5).path == "/v1/sync/headers?from=7&count=1")
        #expect(StateSyncExchange.peerRequest(.manifest(name: "s1"), baseURL: "http://h:1", timeoutSeconds: 5).path == "/v1/sync/snapshots/s1/manifest")
    }

    static func chunkInput(_ outcome: Result<PeerResponse, PeerTransportError>) -> Result<[UInt8], PeerFault> {
        guard case .chunk(_, _, _, let result) = StateSyncExchange.input(peer: 0, request: request, outcome: outcome) else {
            preconditionFailure("a chunk request answers as a chunk")
        }
        return result
    }

    static func isMisbehaved(_ result: Result<[UInt8], PeerFault>) -> Bool {
        if case .failure(.misbehaved) = result { return true }
        return false
    }

    static func isUnreachable(_ result: Result<[UInt8], PeerFault>) -> Bool {
        if case .failure(.unreachable) = result { return true }
        return false
    }

    @Test func aChunkMustBeThe206RangeAskedFor() throws {
        let wire = StateSyncExchange.peerRequest(Self.request, baseURL: "http://h:1", timeoutSeconds: 5)
        func answer(_ status: Int, _ range: String?, _ body: [UInt8]) -> Result<[UInt8], PeerFault> {
            Self.chunkInput(.success(PeerResponse(status: status, headers: range.map { ["content-range": $0] } ?? [:], body: body)))
        }
        #expect(try answer(206, "bytes 8-11/100", [1, 2, 3, 4]).get() == [1, 2, 3, 4])
        #expect(Self.isMisbehaved(answer(206, "bytes 0-3/100", [1, 2, 3, 4])), "another range")
        #expect(Self.isMisbehaved(answer(206, nil, [1, 2, 3, 4])), "no Content-Range")
        #expect(Self.isMisbehaved(answer(206, "bytes 8-11/x", [1, 2, 3, 4])), "a malformed size")
        #expect(Self.isMisbehaved(answer(206, "bytes 8-11/100", [1, 2, 3])), "short")
        #expect(Self.isMisbehaved(answer(200, nil, [1, 2, 3, 4])), "a whole file for a range")
        #expect(Self.isUnreachable(answer(404, nil, Array("not_offered".utf8))), "no longer offered: back off")
        #expect(Self.isUnreachable(answer(503, nil, [])))
        #expect(Self.isMisbehaved(Self.chunkInput(.failure(PeerTransportError(.responseTooLarge, request: wire, "big")))), "a size bomb")
        #expect(Self.isUnreachable(Self.chunkInput(.failure(PeerTransportError(.timedOut, request: wire, "slow")))))
    }

    static func offers(_ snapshots: [SnapshotOffersDocument.Offer]) -> Result<[SnapshotOffer], PeerFault> {
        let body = JSONDocument.encodeBytes(SnapshotOffersDocument(snapshots: snapshots))
        guard case .offers(_, let result) = StateSyncExchange.input(peer: 0, request: .offers, outcome: .success(PeerResponse(status: 200, body: body))) else {
            preconditionFailure("offers answer as offers")
        }
        return result
    }

    @Test func offersWithMalformedNamesRootsOrDigestsAreMisbehaviour() throws {
        let root = String(repeating: "ab", count: 32), digest = String(repeating: "0f", count: 32)
        func offer(name: String = "snapshot-1", root: String = root, digest: String = digest) -> SnapshotOffersDocument.Offer {
            .init(name: name, height: 5, metaRoot: root, manifestSHA256: digest, sizeBytes: 10, files: 1)
        }
        #expect(try Self.offers([offer()]).get().map(\.name) == ["snapshot-1"])
        for bad in [offer(name: "../etc"), offer(name: "a/b"), offer(name: ""), offer(name: ".."), offer(name: "a?b"), offer(root: "xyz"),
            offer(digest: String(repeating: "0F", count: 32)), offer(digest: "00")]
        {
            guard case .failure(.misbehaved) = Self.offers([bad]) else {
                Issue.record("offer \(bad.name) \(bad.metaRoot.prefix(4)) \(bad.manifestSHA256.prefix(4)) was taken")
                continue
            }
        }
    }

    @Test func aManifestMustDecodeAndBeWellFormed() {
        func manifest(_ body: [UInt8]) -> Result<FetchedManifest, PeerFault> {
            guard case .manifest(_, _, let result) = StateSyncExchange.input(
                peer: 0, request: .manifest(name: "s"), outcome: .success(PeerResponse(status: 200, body: body)))
            else { preconditionFailure("a manifest answers as a manifest") }
            return result
        }
        guard case .failure(.misbehaved) = manifest(Array("not json".utf8)) else {
            Issue.record("garbage taken as a manifest")
            return
        }
        let root = String(repeating: "ab", count: 32)
        func json(path: String) -> [UInt8] {
            Array(
                """
                {"format_version":1,"chain_id":"c","lane_count":1,"height":0,"meta_root":"\(root)","created_at":0,
                 "lanes":[{"lane":0,"lane_root":"\(root)","applied_lsn":0}],"commit_record":"",
                 "files":[{"path":"\(path)","size":1,"sha256":"\(String(repeating: "a", count: 64))"}]}
                """.utf8)
        }
        guard case .failure(.misbehaved(let why)) = manifest(json(path: "lanes/lane-0000/../../GENESIS")) else {
            Issue.record("a path escaping the snapshot was taken")
            return
        }
        #expect(why.contains("escaping"))
        #expect((try? manifest(json(path: "lanes/lane-0000/000001.sst")).get())?.manifest.files.map(\.path) == ["lanes/lane-0000/000001.sst"])
    }
}
