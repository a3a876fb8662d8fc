import Documents
import Foundation
import NodeHarness
import Synchronization
import Testing

@testable import Engine

/// The recovery table's network rows with real binaries on loopback: a snapshot restored on new
/// hardware then synced and followed; a full resync from an archive peer through kill -9; a
/// lying peer beside honest ones; and the one-shot `rivellum-node sync`.
@Suite("Peer recovery (end to end, real nodes)", .serialized)
struct PeerRecoveryEndToEndTests {
    typealias Suite = PeerSyncEndToEndTests

    static func start(_ scratch: ScratchDirectory, _ name: String, config: String) throws -> NodeProcess {
        try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", scratch.file("\(name).toml", config), "--log-level", "warning"],
            logPath: scratch.path + "/\(name).log")
    }

    /// A writer with `blocks` blocks of two operations each (dev_fast: quick to fill).
    static func writer(_ scratch: ScratchDirectory, blocks: Int, archive: Bool = false) throws -> NodeProcess {
        let node = try start(
            scratch, "a", config: "[node]\ndata_dir = \"\(scratch.path)/a\"\narchive = \(archive)\n[wal]\nwal_fsync_policy = \"dev_fast\"\n")
        for index in 1...blocks { try write(node, index) }
        return node
    }

    static func write(_ node: NodeProcess, _ index: Int) throws {
        let response = try Suite.post(node.port, [.init(key: "k\(index % 50)", value: "v\(index)"), .init(key: "d\(index % 7)", value: index % 3 == 0 ? nil : "x\(index)")])
        guard response.status == 200 else { throw LoopbackHTTP.Failure(message: "block \(index): \(response.status) \(response.text)") }
    }

    static func syncConfig(_ scratch: ScratchDirectory, _ name: String, peers: [Int], follow: Bool = false) -> String {
        "[node]\ndata_dir = \"\(scratch.path)/\(name)\"\n[sync]\npeers = [\(peers.map { "\"http://127.0.0.1:\($0)\"" }.joined(separator: ", "))]\nfollow = \(follow)\n"
    }

    static func height(_ port: Int) -> UInt64? { try? Suite.roots(port).globalHeight }

    /// A state read's proof, checked from the document alone: the key's path to the lane root,
    /// and the lane root's path to the MetaRoot.
    static func proofVerifies(_ read: StateReadDocument, chainID: String = "rivellum-dev") -> Bool {
        func hash(_ hex: String?) -> Hash32? { hex.flatMap(Hash32.init(hex:)) }
        let terminal: SparseMerkleProof.Terminal
        switch read.proof.terminal.kind {
        case "included": guard let value = hash(read.proof.terminal.valueHash) else { return false }; terminal = .included(valueHash: value)
        case "empty": terminal = .empty
        default:
            guard let path = hash(read.proof.terminal.path), let value = hash(read.proof.terminal.valueHash) else { return false }
            terminal = .otherLeaf(path: path, valueHash: value)
        }
        let siblings = read.proof.siblings.compactMap(hash)
        let laneSiblings = read.proof.laneProof.siblings.map { $0.flatMap(hash) }
        guard let laneRoot = hash(read.proof.laneRoot), let metaRoot = hash(read.proof.metaRoot), siblings.count == read.proof.siblings.count else { return false }
        let proof = SparseMerkleProof(siblings: siblings, terminal: terminal)
        let laneProof = MetaRoot.LaneProof(laneIndex: read.proof.laneProof.laneIndex, laneCount: read.proof.laneProof.laneCount, siblings: laneSiblings)
        return proof.verify(key: Array(read.key.utf8), value: read.value.map { Array($0.utf8) }, root: laneRoot)
            && MetaRoot.verify(laneRoot: laneRoot, proof: laneProof, chainID: chainID, height: read.height, metaRoot: metaRoot)
    }

    /// (a) Hardware failure: A's snapshot is restored into B's fresh directory; B runs with
    /// `peers = [A]` and `follow = true`, catches up from the snapshot's height, then follows.
    @Test func aRestoredSnapshotCatchesUpAndFollows() throws {
        let scratch = ScratchDirectory("peer-restore")
        let a = try Self.writer(scratch, blocks: 40)
        defer { a.terminate() }
        let created = try runNodeCommand(["snapshot", "create", "--data-dir", scratch.path + "/a", "--out", scratch.path + "/snap", "--json"])
        #expect(created.status == 0, "\(created.error)")
        for index in 41...70 { try Self.write(a, index) }
        let restored = try runNodeCommand(["snapshot", "restore", "--from", scratch.path + "/snap", "--data-dir", scratch.path + "/b"])
        #expect(restored.status == 0, "\(restored.error)")
        let b = try Self.start(scratch, "b", config: Self.syncConfig(scratch, "b", peers: [a.port], follow: true))
        defer { b.terminate() }
        #expect(try Suite.waitFor(height: 70, on: b.port) == Suite.roots(a.port))
        for index in 71...90 { try Self.write(a, index) }
        #expect(try Suite.waitFor(height: 90, on: b.port) == Suite.roots(a.port), "following A's new blocks")
        for key in ["k1", "k40", "k49", "d0", "d3", "never-written"] {
            let mine = try JSONDocument.decode(StateReadDocument.self, from: try get(b.port, "/v1/state/\(key)").body)
            let theirs = try JSONDocument.decode(StateReadDocument.self, from: try get(a.port, "/v1/state/\(key)").body)
            #expect(mine == theirs && Self.proofVerifies(mine), "\(key): A's value, with a proof that verifies")
        }
    }

    /// (b) Full resync: C starts from an empty directory with an archive peer behind a slow
    /// proxy, is killed with kill -9 three times during catch-up, and finishes anyway: after
    /// each restart it holds at least what it had shown before the kill (nothing durable is
    /// fetched again), and it ends on A's roots.
    @Test func aFullResyncSurvivesKill9DuringCatchUp() throws {
        let scratch = ScratchDirectory("peer-resync")
        let blocks = 900
        let a = try Self.writer(scratch, blocks: blocks, archive: true)
        defer { a.terminate() }
        // Four blocks per answer, 40 ms each: catching up takes seconds, long enough to kill it.
        let proxy = try LoopbackProxy(
            upstreamPort: a.port, delayMilliseconds: 40,
            rewritePath: { $0.replacingOccurrences(of: #"max_blocks=\d+"#, with: "max_blocks=4", options: .regularExpression) })
        defer { proxy.stop() }
        let config = Self.syncConfig(scratch, "c", peers: [proxy.port])
        var c = try Self.start(scratch, "c", config: config)
        defer { c.terminate() }
        // While it catches up, a read is not served as current unless the client accepts stale state.
        let early = try get(c.port, "/v1/state/k1")
        let stale = try get(c.port, "/v1/state/k1?allow_stale=true")
        let now = try #require(Self.height(c.port))
        try #require(now < UInt64(blocks), "still catching up (the proxy holds it to seconds)")
        #expect(early.status == 503 && (try? JSONDocument.decode(ErrorDocument.self, from: early.body))?.kind == "catching_up", "\(early.text)")
        #expect(stale.status == 200)
        var kills = 0
        for killAt in [150, 350, 550] as [UInt64] {
            // Bounded: 60 s of 10 ms polls.
            var seen: UInt64 = 0
            for _ in 0..<6_000 {
                seen = Self.height(c.port) ?? seen
                if seen >= killAt { break }
                usleep(10_000)
            }
            guard seen < UInt64(blocks) else { break }
            c.kill9()
            kills += 1
            c = try Self.start(scratch, "c", config: config)
            let resumed = try #require(Self.height(c.port))
            #expect(resumed >= seen, "after kill -9 at height \(seen) the node resumed at \(resumed)")
        }
        #expect(kills == 3, "killed three times during catch-up")
        #expect(try Suite.waitFor(height: UInt64(blocks), on: c.port) == Suite.roots(a.port))
        let header = try get(c.port, "/v1/blocks/\(blocks / 2)").body
        #expect(header == (try get(a.port, "/v1/blocks/\(blocks / 2)").body), "the same block in the middle")
    }

    /// (c) A proxy in front of A alters one operation of one block in flight (keeping its
    /// claimed roots, re-framed so that it decodes): C refuses the block, counts the proxy as
    /// faulty, and converges through its honest peers.
    @Test func aLyingPeerIsRefusedAndCountedWhileTheHonestOnesSyncTheNode() throws {
        let scratch = ScratchDirectory("peer-liar")
        let a = try Self.writer(scratch, blocks: 120)
        defer { a.terminate() }
        let b = try Self.start(scratch, "b", config: Self.syncConfig(scratch, "b", peers: [a.port], follow: true))
        defer { b.terminate() }
        _ = try Suite.waitFor(height: 120, on: b.port)
        let tampered = Atomic<Int>(0)
        let liar = try LoopbackProxy(upstreamPort: a.port, transform: { path, response in
            guard path.hasPrefix("/v1/sync/blocks"), response.status == 200, tampered.load(ordering: .relaxed) == 0,
                var blocks = try? BlockRangeCodec.decode(response.body), let lane = blocks[0].lanes.firstIndex(where: { !$0.operations.isEmpty })
            else { return response }
            blocks[0].lanes[lane].operations[0].value = Array("forged".utf8)
            tampered.add(1, ordering: .relaxed)
            var altered = response
            altered.body = BlockRangeCodec.encode(blocks)
            return altered
        })
        defer { liar.stop() }
        let c = try Self.start(scratch, "c", config: Self.syncConfig(scratch, "c", peers: [liar.port, b.port, a.port]))
        defer { c.terminate() }
        #expect(try Suite.waitFor(height: 120, on: c.port) == Suite.roots(a.port))
        #expect(tampered.load(ordering: .relaxed) == 1, "the proxy altered one block")
        let status = try JSONDocument.decode(StatusDocument.self, from: try get(c.port, "/v1/status").body)
        let liarURL = "http://127.0.0.1:\(liar.port)"
        #expect(status.sync?.peers.first { $0.url == liarURL }?.faults == 1, "\(String(describing: status.sync))")
        let metrics = try get(c.port, "/v1/metrics").text
        #expect(metrics.contains("rivellum_sync_peer_faults_total{peer=\"\(liarURL)\"} 1"), "\(metrics.split(separator: "\n").filter { $0.contains("sync") })")
        let read = try JSONDocument.decode(StateReadDocument.self, from: try get(c.port, "/v1/state/k1").body)
        #expect(read.value != "forged" && Self.proofVerifies(read))
    }

    /// The one-shot form: `rivellum-node sync --json` prints progress events and a final
    /// `caught_up`, exits 0 at the peers' height (or `--to-height`), and a data directory whose
    /// config the peers contradict is refused with 78 before anything is written.
    @Test func theOneShotSyncCatchesUpPrintsEventsAndRefusesAnotherChain() throws {
        let scratch = ScratchDirectory("peer-oneshot")
        let a = try Self.writer(scratch, blocks: 60)
        defer { a.terminate() }
        let peer = "http://127.0.0.1:\(a.port)"
        let capped = try runNodeCommand(["sync", "--data-dir", scratch.path + "/c", "--peer", peer, "--to-height", "25", "--json"])
        #expect(capped.status == 0, "\(capped.error)")
        let events = try capped.output.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(events.last??["event"] as? String == "caught_up" && events.last??["height"] as? Int == 25, "\(capped.output)")
        let full = try runNodeCommand(["sync", "--data-dir", scratch.path + "/c", "--peer", peer, "--json"])
        let last = try #require(full.output.split(separator: "\n").last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(full.status == 0 && last["event"] as? String == "caught_up" && last["height"] as? Int == 60 && last["blocks_applied"] as? Int == 35, "\(full.output)")
        let status = try runNodeCommand(["status", "--data-dir", scratch.path + "/c", "--json"])
        #expect(status.output.contains(try Suite.roots(a.port).metaRoot), "the same MetaRoot at 60")

        let refused = try runNodeCommand(["sync", "--data-dir", scratch.path + "/d", "--peer", peer, "--lanes", "3"])
        #expect(refused.status == 78 && refused.error.contains("4 lanes"), "\(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/d/GENESIS"), "nothing written")
        let unreachable = try runNodeCommand(["sync", "--data-dir", scratch.path + "/e", "--peer", "http://127.0.0.1:\(try NodeProcess.freePort())", "--stall-timeout-seconds", "2"])
        #expect(unreachable.status == 69 && unreachable.error.contains("no progress"), "\(unreachable.error)")
        let below = try runNodeCommand(["sync", "--data-dir", scratch.path + "/c", "--peer", peer, "--to-height", "10"])
        #expect(below.status == 64 && below.error.contains("above --to-height"), "\(below.error)")
    }

    /// SIGTERM during a one-shot sync: it stops cleanly with exit 75 and an `interrupted` event,
    /// keeps what it applied, and the next run resumes from there.
    @Test func anInterruptedOneShotSyncExits75AndTheNextRunResumes() throws {
        let scratch = ScratchDirectory("peer-oneshot-term")
        let a = try Self.writer(scratch, blocks: 300)
        defer { a.terminate() }
        let proxy = try LoopbackProxy(
            upstreamPort: a.port, delayMilliseconds: 40,
            rewritePath: { $0.replacingOccurrences(of: #"max_blocks=\d+"#, with: "max_blocks=2", options: .regularExpression) })
        defer { proxy.stop() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NodeProcess.siblingBinary())
        process.arguments = ["sync", "--data-dir", scratch.path + "/c", "--peer", "http://127.0.0.1:\(proxy.port)", "--json"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        // Bounded: 30 s of 50 ms polls for some progress, then SIGTERM.
        for _ in 0..<600 where proxy.requestsServed < 40 { usleep(50_000) }
        kill(process.processIdentifier, SIGTERM)
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 75, "\(printed)")
        let last = try #require(printed.split(separator: "\n").last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        let stoppedAt = try #require(last["height"] as? Int)
        #expect(last["event"] as? String == "interrupted" && stoppedAt > 0 && stoppedAt < 300, "\(printed)")
        #expect(last["blocks_applied"] as? Int == stoppedAt, "every block from genesis to where it stopped is counted: \(printed)")
        let resumed = try runNodeCommand(["sync", "--data-dir", scratch.path + "/c", "--peer", "http://127.0.0.1:\(a.port)", "--json"])
        let final = try #require(resumed.output.split(separator: "\n").last.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
        #expect(resumed.status == 0 && final["height"] as? Int == 300 && final["blocks_applied"] as? Int == 300 - stoppedAt, "\(resumed.output)")
    }
}
