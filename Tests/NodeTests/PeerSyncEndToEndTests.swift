import Documents
import Foundation
import NodeHarness
import Testing

/// Two real nodes on loopback: B, with A as its peer and `follow = true`, catches up from an
/// empty data directory and then follows A's new blocks, to A's roots and values; B refuses
/// local writes.
@Suite("Peer sync (end to end, two real nodes)", .serialized)
struct PeerSyncEndToEndTests {
    static func post(_ port: Int, _ ops: [BlockRequestDocument.Operation]) throws -> LoopbackHTTP.Response {
        try LoopbackHTTP.request("POST", "/v1/blocks", port: port, body: JSONDocument.encodeBytes(BlockRequestDocument(ops: ops)))
    }

    static func roots(_ port: Int) throws -> StateRootsDocument {
        try JSONDocument.decode(StateRootsDocument.self, from: try get(port, "/v1/state_roots").body)
    }

    /// Waits (bounded: 60 s) until `follower` reaches `height`; its roots then.
    static func waitFor(height: UInt64, on follower: Int) throws -> StateRootsDocument {
        // Bounded: 600 rounds of 100 ms.
        for _ in 0..<600 {
            if let roots = try? roots(follower), roots.globalHeight >= height { return roots }
            usleep(100_000)
        }
        throw LoopbackHTTP.Failure(message: "the follower did not reach height \(height)")
    }

    @Test func aFollowerCatchesUpFromGenesisThenFollowsTheWriter() throws {
        let scratch = ScratchDirectory("peer-sync")
        let writer = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/a", "--log-level", "warning"],
            logPath: scratch.path + "/a.log")
        defer { _ = writer.terminate() }
        for index in 1...40 {
            #expect(try Self.post(writer.port, [.init(key: "k\(index % 9)", value: "v\(index)"), .init(key: "gone\(index % 4)", value: index % 5 == 0 ? nil : "x")]).status == 200)
        }
        let config = scratch.file(
            "b.toml", "[node]\ndata_dir = \"\(scratch.path)/b\"\n[sync]\npeers = [\"http://127.0.0.1:\(writer.port)\"]\nfollow = true\n")
        let follower = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", config, "--log-level", "warning"], logPath: scratch.path + "/b.log")
        defer { _ = follower.terminate() }

        let caughtUp = try Self.waitFor(height: 40, on: follower.port)
        let writerRoots = try Self.roots(writer.port)
        #expect(caughtUp == writerRoots, "the same roots at height 40")

        // Following: the writer keeps writing, the follower keeps up.
        for index in 41...55 { #expect(try Self.post(writer.port, [.init(key: "k\(index % 9)", value: "w\(index)")]).status == 200) }
        let followed = try Self.waitFor(height: 55, on: follower.port)
        let writerNow = try Self.roots(writer.port)
        #expect(followed == writerNow)
        for key in ["k1", "k5", "gone0", "gone3"] {
            let mine = try JSONDocument.decode(StateReadDocument.self, from: try get(follower.port, "/v1/state/\(key)").body)
            let theirs = try JSONDocument.decode(StateReadDocument.self, from: try get(writer.port, "/v1/state/\(key)").body)
            #expect(mine == theirs, "\(key): the same value and proof")
        }

        // One chain, one writer: the follower refuses blocks of its own.
        let refused = try Self.post(follower.port, [.init(key: "x", value: "y")])
        let refusal = try JSONDocument.decode(ErrorDocument.self, from: refused.body)
        #expect(refused.status == 409 && refusal.kind == "follower")
        // The board is published after each step: poll (bounded: 5 s) until it shows the last one.
        var sync: StatusDocument.Sync?
        for _ in 0..<50 {
            sync = try JSONDocument.decode(StatusDocument.self, from: try get(follower.port, "/v1/status").body).sync
            if sync?.phase == "following" && sync?.lag == 0 { break }
            usleep(100_000)
        }
        #expect(sync?.phase == "following" && sync?.lag == 0 && sync?.peers.map(\.state) == ["healthy"], "\(String(describing: sync))")
    }

    /// A node whose config names the writer's chain id but another lane count is on another
    /// chain: the peer is never used, no quorum is possible, and the node exits with the config
    /// code (78) without having written a block.
    @Test func aNodeWithAnotherLaneCountIsRefusedWithTheConfigExitCode() throws {
        let scratch = ScratchDirectory("peer-sync-lanes")
        let writer = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/a", "--log-level", "warning"],
            logPath: scratch.path + "/a.log")
        defer { _ = writer.terminate() }
        #expect(try Self.post(writer.port, [.init(key: "k", value: "v")]).status == 200)
        let config = scratch.file(
            "c.toml", "[node]\ndata_dir = \"\(scratch.path)/c\"\nlanes = 8\n[api]\nlisten = \"127.0.0.1:\(try NodeProcess.freePort())\"\n"
                + "[sync]\npeers = [\"http://127.0.0.1:\(writer.port)\"]\n")
        let result = try runNodeCommand(["run", "--config", config, "--log-level", "warning"])
        #expect(result.status == 78, "exit \(result.status): \(result.error)")
        #expect(result.error.contains("sync.peers") || result.error.contains("quorum"), "\(result.error)")
    }
}

/// A writer with peers catches up before it takes a block, and two writers on one chain are a
/// fork that the one behind detects and stops on (exit 65) without overwriting anything.
@Suite("Peer sync: a writer with peers (end to end, two real nodes)", .serialized)
struct PeerSyncWriterTests {
    @Test func aWriterCatchesUpFirstAndAForkStopsItWithTheDataErrorCode() throws {
        let scratch = ScratchDirectory("peer-sync-writer")
        let first = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/a", "--log-level", "warning"],
            logPath: scratch.path + "/a.log")
        defer { _ = first.terminate() }
        for index in 1...30 { #expect(try PeerSyncEndToEndTests.post(first.port, [.init(key: "k\(index % 5)", value: "v\(index)")]).status == 200) }
        let config = scratch.file("b.toml", "[node]\ndata_dir = \"\(scratch.path)/b\"\n[sync]\npeers = [\"http://127.0.0.1:\(first.port)\"]\n")
        let second = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", config, "--log-level", "warning"], logPath: scratch.path + "/b.log")
        defer { _ = second.terminate() }
        // A write before it has caught up is 503 catching_up, never committed at a height the peers hold.
        let early = try PeerSyncEndToEndTests.post(second.port, [.init(key: "early", value: "x")])
        if early.status != 200 {
            let refusal = try JSONDocument.decode(ErrorDocument.self, from: early.body)
            #expect(early.status == 503 && refusal.kind == "catching_up")
        }
        _ = try PeerSyncEndToEndTests.waitFor(height: 30, on: second.port)
        let atThirty = try JSONDocument.decode(BlockHeaderDocument.self, from: try get(second.port, "/v1/blocks/30").body)
        let theirs = try JSONDocument.decode(BlockHeaderDocument.self, from: try get(first.port, "/v1/blocks/30").body)
        #expect(atThirty == theirs, "block 30 is the first writer's, not a block taken early")
        // Both take a different block 31 (or 32, if the early write landed after catching up): a fork.
        var taken: LoopbackHTTP.Response = early
        // Bounded: the catch-up gate opens within the wait above; a few tries cover the last step.
        for _ in 0..<50 where taken.status != 200 {
            taken = try PeerSyncEndToEndTests.post(second.port, [.init(key: "mine", value: "b")])
            if taken.status != 200 { usleep(100_000) }
        }
        #expect(taken.status == 200)
        let height = try JSONDocument.decode(CommitResultDocument.self, from: taken.body).height
        for _ in 31...height { #expect(try PeerSyncEndToEndTests.post(first.port, [.init(key: "theirs", value: "a")]).status == 200) }
        let exit = second.waitForExit(timeoutSeconds: 30)
        #expect(exit == 65, "the node behind stops on the fork: exit \(exit.map(String.init) ?? "none")")
        let log = (try? String(contentsOfFile: scratch.path + "/b.log", encoding: .utf8)) ?? ""
        #expect(log.contains("fork at height"), "\(log.suffix(600))")
    }
}
