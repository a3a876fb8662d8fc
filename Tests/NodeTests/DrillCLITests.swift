import Documents
import Foundation
import NodeHarness
import Testing

/// `rivellum-node snapshot drill` with real binaries on loopback: a drill that passes (from a
/// snapshot directory and from an off-site copy), and drills that fail pointing at the cause —
/// a tampered snapshot, and a peer on another history.
@Suite("Restore drills (end to end, real nodes)", .serialized)
struct DrillCLITests {
    typealias Recovery = PeerRecoveryEndToEndTests

    static func drill(_ arguments: [String]) throws -> (status: Int32, report: [String: Any], error: String) {
        let result = try runNodeCommand(["snapshot", "drill", "--json"] + arguments)
        let report = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]) ?? [:]
        return (result.status, report, result.error)
    }

    @Test func aDrillPassesAndFailsPointingAtTheCause() throws {
        let scratch = ScratchDirectory("drill")
        let a = try Recovery.writer(scratch, blocks: 30, archive: true)
        defer { _ = a.terminate() }
        let created = try LoopbackHTTP.request("POST", "/v1/admin/snapshots", port: a.port, body: Array("{\"out\":\"\(scratch.path)/snap\"}".utf8))
        try #require(created.status == 200, "\(created.text)")
        for index in 31...50 { try Recovery.write(a, index) }
        let peer = "http://127.0.0.1:\(a.port)"

        let passed = try Self.drill(["--from", scratch.path + "/snap", "--peer", peer, "--scratch", scratch.path + "/standby"])
        #expect(passed.status == 0, "\(passed.error) \(passed.report)")
        #expect(passed.report["verdict"] as? String == "passed" && passed.report["compared_height"] as? Int == 50)
        #expect(passed.report["blocks_replayed"] as? Int == 20 && passed.report["gap_blocks"] as? Int == 20 && passed.report["snapshot_height"] as? Int == 30)
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/standby"), "the scratch standby is removed")
        // A scratch directory that is not the drill's own (not empty) is refused: it would be removed.
        let occupied = try Self.drill(["--from", scratch.path + "/snap", "--peer", peer, "--scratch", scratch.path])
        #expect(occupied.status == 73 && FileManager.default.fileExists(atPath: scratch.path + "/a/GENESIS"), "\(occupied.error)")

        // From an off-site copy, the newest there, keeping the standby.
        let pushed = try runNodeCommand(["snapshot", "push", "--data-dir", scratch.path + "/a", "--name", "snap", "--to", "file://\(scratch.path)/offsite"])
        try #require(pushed.status == 0, "\(pushed.error)")
        let offsite = try Self.drill(["--from", "file://\(scratch.path)/offsite", "--peer", peer, "--scratch", scratch.path + "/kept", "--keep"])
        #expect(offsite.status == 0 && offsite.report["snapshot"] as? String == "snap", "\(offsite.error) \(offsite.report)")
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/kept/data/GENESIS"), "--keep keeps the standby")

        // A tampered snapshot: the drill fails naming the file.
        try FileManager.default.copyItem(atPath: scratch.path + "/snap", toPath: scratch.path + "/tampered")
        let sst = try #require(FileManager.default.subpaths(atPath: scratch.path + "/tampered")?.first { $0.hasSuffix(".sst") })
        let path = scratch.path + "/tampered/" + sst
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let tampered = try Self.drill(["--from", scratch.path + "/tampered", "--peer", peer])
        #expect(tampered.status == 65 && tampered.report["verdict"] as? String == "snapshot_damaged", "\(tampered.report)")
        #expect((tampered.report["detail"] as? String ?? "").contains(sst.split(separator: "/").last!), "the detail names the file: \(tampered.report)")

        // A peer on another history (the same chain id, other blocks): the drill says so.
        let other = try Recovery.start(scratch, "x", config: "[node]\ndata_dir = \"\(scratch.path)/x\"\n[wal]\nwal_fsync_policy = \"dev_fast\"\n")
        defer { _ = other.terminate() }
        for index in 1...60 { _ = try PeerSyncEndToEndTests.post(other.port, [.init(key: "other\(index)", value: "x")]) }
        let forked = try Self.drill(["--from", scratch.path + "/snap", "--peer", "http://127.0.0.1:\(other.port)"])
        #expect(forked.status == 65 && forked.report["verdict"] as? String == "peer_on_another_chain", "\(forked.report) \(forked.error)")
    }
}
