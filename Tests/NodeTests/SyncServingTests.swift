import Documents
import Engine
import FaultFS
import Foundation
import NodeHarness
import Testing

/// The node serves its chain to peers (end to end, the real binary): status, chain links and
/// block ranges that another engine applies to the same roots, with bad requests answered 400.
@Suite("rivellum-node serves blocks to peers (end to end, real binary)", .serialized)
struct SyncServingTests {
    @Test func aRangeServedOverHTTPReplaysToTheNodesRoots() throws {
        let scratch = ScratchDirectory("sync-serve")
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/data", "--log-level", "warning"],
            logPath: scratch.path + "/node.log")
        defer { _ = node.terminate() }
        for index in 1...25 {
            let body = BlockRequestDocument(ops: [.init(key: "k\(index % 7)", value: "v\(index)"), .init(key: "d\(index % 3)", value: index % 4 == 0 ? nil : "x")])
            #expect(try LoopbackHTTP.request("POST", "/v1/blocks", port: node.port, body: JSONDocument.encodeBytes(body)).status == 200)
        }
        let status = try JSONDocument.decode(SyncStatusDocument.self, from: try get(node.port, "/v1/sync/status").body)
        #expect(status.chainID == "rivellum-dev" && status.lanes == 4 && status.height == 25 && status.servableHeight == 25)
        #expect(status.oldestServableHeight == 1 && status.genesisDigest == Engine.genesisDigest(chainID: "rivellum-dev", laneCount: 4).hex)

        let links = try JSONDocument.decode(SyncHeadersDocument.self, from: try get(node.port, "/v1/sync/headers?from=3&count=5").body).headers
        #expect(links.map(\.height) == [3, 4, 5, 6, 7])
        #expect(zip(links, links.dropFirst()).allSatisfy { $0.metaRoot == $1.previousMetaRoot }, "the links chain")

        var blocks: [SyncBlock] = []
        // Bounded: 25 blocks in ranges of 10.
        while blocks.count < 25 {
            let response = try get(node.port, "/v1/sync/blocks?from=\(blocks.count + 1)&max_blocks=10")
            #expect(response.status == 200 && response.headers["content-type"] == BlockRangeCodec.contentType)
            let range = try BlockRangeCodec.decode(response.body)
            try #require(!range.isEmpty)
            blocks += range
        }
        #expect(blocks[2..<7].map(\.metaRoot.hex) == links.map(\.metaRoot))
        let follower = try Engine(
            fileSystem: PosixFileSystem(), configuration: EngineConfiguration(dataDirectory: scratch.path + "/follower"), clock: ManualClock())
        defer { try? follower.close() }
        _ = try follower.commit(blocks, attested: Dictionary(uniqueKeysWithValues: blocks.map { ($0.height, $0.metaRoot) }))
        let roots = try JSONDocument.decode(StateRootsDocument.self, from: try get(node.port, "/v1/state_roots").body)
        #expect(follower.stateRoots().metaRoot.hex == roots.metaRoot && follower.stateRoots().height == roots.globalHeight)

        // Past the servable height: an empty range, not an error.
        #expect(try BlockRangeCodec.decode(try get(node.port, "/v1/sync/blocks?from=26").body).isEmpty)
    }

    @Test(arguments: [
        "/v1/sync/blocks", "/v1/sync/blocks?from=0", "/v1/sync/blocks?from=x", "/v1/sync/blocks?from=1&max_blocks=1025",
        "/v1/sync/blocks?from=1&max_bytes=0", "/v1/sync/headers?from=1&count=4097", "/v1/sync/headers?count=3",
    ])
    func aMalformedSyncRequestIs400WithItsReason(path: String) throws {
        let scratch = ScratchDirectory("sync-bad")
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/data", "--log-level", "warning"],
            logPath: scratch.path + "/node.log")
        defer { _ = node.terminate() }
        let response = try get(node.port, path)
        #expect(response.status == 400, "\(path): \(response.status) \(response.text)")
        let error = try JSONDocument.decode(ErrorDocument.self, from: response.body)
        #expect(error.kind == "bad_request" && (error.error.contains("from") || error.error.contains("max_") || error.error.contains("count")))
    }
}
