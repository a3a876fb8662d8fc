import Foundation
import NodeHarness
import Testing

@Suite("rivellum-node snapshot (end to end, real binary)", .serialized)
struct SnapshotCLITests {
    /// Run, submit blocks, snapshot online, submit more, kill -9, restore, start: the node
    /// replays to the latest acknowledged height with the same MetaRoot.
    @Test func onlineSnapshotKillRestoreReplaysToTheLatestAcknowledgedHeight() throws {
        let scratch = ScratchDirectory("snapshot")
        let data = scratch.path + "/data"
        let snapshot = scratch.path + "/backups/snapshot-one"
        var node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", data], logPath: scratch.path + "/node.log")
        for index in 0..<20 {
            #expect(try post(node.port, "{\"ops\": [{\"key\": \"a\(index)\", \"value\": \"\(index)\"}]}").status == 200)
        }
        // The node holds the data directory: the CLI asks it over the API.
        let created = try runNodeCommand(["snapshot", "create", "--data-dir", data, "--out", snapshot, "--json"])
        #expect(created.status == 0, "\(created.error)")
        let createdJSON = try #require(try JSONSerialization.jsonObject(with: Data(created.output.utf8)) as? [String: Any])
        #expect(createdJSON["height"] as? Int == 20)
        #expect(createdJSON["verified"] as? Bool == true)
        // The same target twice is refused (73).
        #expect(try runNodeCommand(["snapshot", "create", "--data-dir", data, "--out", snapshot]).status == 73)
        var last: [String: Any] = [:]
        for index in 20..<35 {
            last = try jsonObject(try post(node.port, "{\"ops\": [{\"key\": \"a\(index)\", \"value\": \"\(index)\"}, {\"key\": \"a0\", \"value\": null}]}"))
        }
        #expect(last["height"] as? Int == 35)
        // Restore refuses while the node runs.
        let whileRunning = try runNodeCommand(["snapshot", "restore", "--from", snapshot, "--data-dir", data])
        #expect(whileRunning.status == 69)
        #expect(whileRunning.error.contains("running"))
        node.kill9()

        let list = try runNodeCommand(["snapshot", "list", "--data-dir", data, "--json"])
        #expect(list.status == 0, "\(list.error)")
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(list.output.utf8)) as? [[String: Any]])
        #expect(listed.count == 1)
        #expect(listed.first?["state"] as? String == "complete")
        #expect(listed.first?["height"] as? Int == 20)
        #expect(listed.first?["restorable_to_height"] as? Int == 35)
        #expect(listed.first?["verified"] as? Bool == true)
        #expect(try runNodeCommand(["snapshot", "verify", "--from", snapshot]).status == 0)

        let dryRun = try runNodeCommand(["snapshot", "restore", "--from", snapshot, "--data-dir", data, "--dry-run"])
        #expect(dryRun.status == 0, "\(dryRun.error)")
        #expect(dryRun.output.contains("replays heights 21...35"))
        #expect(dryRun.output.contains("nothing changed"))
        let restored = try runNodeCommand(["snapshot", "restore", "--from", snapshot, "--data-dir", data])
        #expect(restored.status == 0, "\(restored.output) \(restored.error)")

        node = try NodeProcess.start(binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", data], logPath: scratch.path + "/node.log")
        defer { node.terminate() }
        let status = try jsonObject(try get(node.port, "/v1/status"))
        #expect(status["height"] as? Int == 35)
        #expect(status["meta_root"] as? String == last["meta_root"] as? String)
        let recovery = try #require(status["last_recovery"] as? [String: Any])
        let replayed = (recovery["lanes"] as? [[String: Any]])?.reduce(0) { $0 + ($1["records_replayed"] as? Int ?? 0) } ?? 0
        #expect(replayed > 0, "the blocks after the snapshot came from the WAL")
        #expect(try jsonObject(try get(node.port, "/v1/state/a0"))["value"] is NSNull)
        #expect(try jsonObject(try get(node.port, "/v1/state/a34"))["value"] as? String == "34")
    }

    @Test func offlineCreateTamperedSnapshotsAndPrune() throws {
        let scratch = ScratchDirectory("snapshot")
        let data = scratch.path + "/data"
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", data, "--chain-id", "chain-a"], logPath: scratch.path + "/node.log")
        for index in 0..<5 { _ = try post(node.port, "{\"ops\": [{\"key\": \"k\(index)\", \"value\": \"v\"}]}") }
        #expect(node.terminate() == 0)
        // Offline: the CLI opens the data directory itself (default name in <data>/snapshots).
        let first = try runNodeCommand(["snapshot", "create", "--data-dir", data])
        #expect(first.status == 0, "\(first.error)")
        #expect(first.output.contains("at height 5"))
        let second = scratch.path + "/second"
        #expect(try runNodeCommand(["snapshot", "create", "--data-dir", data, "--out", second]).status == 0)
        let listed = try runNodeCommand(["snapshot", "list", "--data-dir", data])
        #expect(listed.output.contains("snapshot-"))
        #expect(listed.output.contains("complete"))

        // Tamper with a copy: verify and restore refuse with 65 and name the file.
        let tampered = scratch.path + "/tampered"
        try FileManager.default.copyItem(atPath: second, toPath: tampered)
        let manifest = try String(contentsOfFile: tampered + "/MANIFEST.json", encoding: .utf8)
        try manifest.replacingOccurrences(of: "\"height\" : 5", with: "\"height\" : 6").write(toFile: tampered + "/MANIFEST.json", atomically: true, encoding: .utf8)
        let verify = try runNodeCommand(["snapshot", "verify", "--from", tampered])
        #expect(verify.status == 65)
        #expect(verify.error.contains("MANIFEST.json"))
        let restore = try runNodeCommand(["snapshot", "restore", "--from", tampered, "--data-dir", data])
        #expect(restore.status == 65)
        // Another chain's snapshot is refused.
        let otherData = scratch.path + "/other"
        let other = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", otherData, "--chain-id", "chain-b"], logPath: scratch.path + "/other.log")
        #expect(other.terminate() == 0)
        let wrongChain = try runNodeCommand(["snapshot", "restore", "--from", second, "--data-dir", otherData])
        #expect(wrongChain.status == 65)
        #expect(wrongChain.error.contains("chain-a"))
        // A data directory whose GENESIS is damaged: data damage (65) with the remedy, not an
        // I/O error (74).
        var genesis = try [UInt8](Data(contentsOf: URL(fileURLWithPath: otherData + "/GENESIS")))
        genesis[genesis.count / 2] ^= 0x5A
        try Data(genesis).write(to: URL(fileURLWithPath: otherData + "/GENESIS"))
        let damagedGenesis = try runNodeCommand(["snapshot", "restore", "--from", second, "--data-dir", otherData])
        #expect(damagedGenesis.status == 65, "\(damagedGenesis.error)")
        #expect(damagedGenesis.error.contains("genesis") && damagedGenesis.error.contains("restore into an empty data directory"))

        // Prune: keep 1 → the older goes, unless it is the newest verified one.
        let dry = try runNodeCommand(["snapshot", "prune", "--data-dir", data, "--keep", "1", "--dry-run"])
        #expect(dry.status == 0)
        #expect(dry.output.contains("would remove"))
        #expect(try runNodeCommand(["snapshot", "list", "--data-dir", data, "--json"]).output.components(separatedBy: "\"complete\"").count == 3)
        #expect(try runNodeCommand(["snapshot", "prune", "--data-dir", data, "--keep", "1"]).status == 0)
        let after = try #require(try JSONSerialization.jsonObject(with: Data(try runNodeCommand(["snapshot", "list", "--data-dir", data, "--json"]).output.utf8)) as? [[String: Any]])
        #expect(after.count == 1)
        #expect(after.first?["path"] as? String == second)
        #expect(try runNodeCommand(["snapshot", "prune", "--data-dir", data]).status == 64)
        // The newest verified snapshot survives --keep 0 without --force.
        let keepZero = try runNodeCommand(["snapshot", "prune", "--data-dir", data, "--keep", "0"])
        #expect(keepZero.output.contains("newest verified"))
        #expect(FileManager.default.fileExists(atPath: second))
    }
}
