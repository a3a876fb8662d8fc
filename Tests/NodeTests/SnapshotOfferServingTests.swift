import Documents
@testable import Engine
import FaultFS
import Foundation
import NodeHarness
import Testing

/// The node serves its verified snapshots to peers (end to end, the real binary): the offer
/// list, a manifest whose bytes match the offered digest, and ranges of listed files that
/// reassemble to the manifest's SHA-256; anything else is refused with its status.
@Suite("rivellum-node offers its snapshots to peers (end to end, real binary)", .serialized)
struct SnapshotOfferServingTests {
    @Test func aSnapshotIsServedInRangesThatReassembleToItsDigest() throws {
        let scratch = ScratchDirectory("snapshot-offers")
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/data", "--log-level", "warning"],
            logPath: scratch.path + "/node.log")
        defer { _ = node.terminate() }
        for index in 1...12 {
            let body = BlockRequestDocument(ops: [.init(key: "k\(index % 5)", value: String(repeating: "v", count: 200 + index))])
            #expect(try LoopbackHTTP.request("POST", "/v1/blocks", port: node.port, body: JSONDocument.encodeBytes(body)).status == 200)
        }
        #expect(try LoopbackHTTP.request("POST", "/v1/admin/snapshots", port: node.port, body: Array("{}".utf8)).status == 200)
        let offers = try JSONDocument.decode(SnapshotOffersDocument.self, from: try get(node.port, "/v1/sync/snapshots").body).snapshots
        let offer = try #require(offers.first)
        #expect(offers.count == 1 && offer.height == 12 && offer.files > 0)
        let manifestBytes = try get(node.port, "/v1/sync/snapshots/\(offer.name)/manifest").body
        #expect(sha256Hex(manifestBytes) == offer.manifestSHA256)
        let manifest = try #require(SnapshotManifest.decode(manifestBytes))
        #expect(manifest.metaRoot == offer.metaRoot)

        let file = try #require(manifest.files.max { $0.sizeBytes < $1.sizeBytes })
        let base = "/v1/sync/snapshots/\(offer.name)/file?path=\(file.path)"
        var assembled: [UInt8] = []
        let chunk = max(1, Int(file.sizeBytes) / 3)
        // Bounded: four ranges at most.
        while UInt64(assembled.count) < file.sizeBytes {
            let last = min(assembled.count + chunk, Int(file.sizeBytes)) - 1
            let answer = try LoopbackHTTP.request("GET", base, port: node.port, extraHeaders: ["Range: bytes=\(assembled.count)-\(last)"])
            #expect(answer.status == 206 && answer.headers["content-range"] == "bytes \(assembled.count)-\(last)/\(file.sizeBytes)")
            try #require(!answer.body.isEmpty)
            assembled += answer.body
        }
        #expect(sha256Hex(assembled) == file.sha256)
        let whole = try get(node.port, base)
        #expect(whole.status == 200 && whole.body == assembled, "a small file whole, without Range")

        let refusals: [(path: String, headers: [String], status: Int, kind: String)] = [
            ("/v1/sync/snapshots/no-such/manifest", [], 404, "not_offered"),
            ("/v1/sync/snapshots/\(offer.name)/file?path=lanes/lane-0000/../../../GENESIS", [], 404, "not_offered"),
            ("/v1/sync/snapshots/\(offer.name)/file?path=MANIFEST.json", [], 404, "not_offered"),
            ("/v1/sync/snapshots/\(offer.name)/file", [], 400, "bad_request"),
            (base, ["Range: bytes=\(file.sizeBytes)-"], 416, "range_not_satisfiable"),
            (base, ["Range: bytes=0-1,4-5"], 416, "range_not_satisfiable"),
        ]
        for refusal in refusals {
            let answer = try LoopbackHTTP.request("GET", refusal.path, port: node.port, extraHeaders: refusal.headers)
            let kind = (try? JSONDocument.decode(ErrorDocument.self, from: answer.body))?.kind
            #expect(answer.status == refusal.status && kind == refusal.kind, "\(refusal.path) \(refusal.headers): \(answer.status) \(answer.text)")
        }
    }
}
