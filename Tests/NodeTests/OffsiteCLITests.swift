import Documents
import FaultFS
import Foundation
import NodeHarness
import Offsite
import Testing

@testable import Engine

/// Off-site copies end to end with the real binary, into a `file://` directory and into S3 (a
/// moto server on loopback): the daemon pushes each snapshot it takes; `snapshot push` uploads
/// only new files; `snapshot list --offsite`; `snapshot pull` then `snapshot restore` gives a
/// standby A's roots; a damaged object is refused on pull; `snapshot prune --offsite --keep 1`.
@Suite("Off-site snapshot copies (end to end, real binary)", .serialized)
struct OffsiteCLITests {
    typealias Suite = PeerSyncEndToEndTests
    typealias Recovery = PeerRecoveryEndToEndTests

    /// `rivellum-node ARGS` with extra environment variables.
    static func node(_ arguments: [String], environment: [String: String]) throws -> (status: Int32, output: String, error: String) {
        try runNodeCommand(arguments, environment: environment)
    }

    static func listed(_ uri: String, environment: [String: String]) throws -> [[String: Any]] {
        let listed = try node(["snapshot", "list", "--offsite", uri, "--json"], environment: environment)
        try #require(listed.status == 0, "\(listed.error)")
        return try #require(try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [[String: Any]])
    }

    @Test(arguments: ["file", "s3"])
    func pushListPullRestoreDamageAndPrune(kind: String) async throws {
        let scratch = ScratchDirectory("offsite-\(kind)")
        let moto = kind == "s3" ? try MotoServer() : nil
        defer { moto?.stop() }
        let environment = moto?.environment ?? [:]
        let (daemonStore, cliStore) = kind == "s3" ? ("s3://rivellum-a/daemon", "s3://rivellum-a/cli") : ("file://\(scratch.path)/offsite-daemon", "file://\(scratch.path)/offsite-cli")
        if let moto {
            try await S3ObjectStore.withStore(bucket: "rivellum-a", prefix: "", settings: S3Settings(
                credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), region: "us-east-1", endpoint: moto.endpoint)) { try await $0.createBucket() }
        }
        let config = "[node]\ndata_dir = \"\(scratch.path)/a\"\n[wal]\nwal_fsync_policy = \"dev_fast\"\n[snapshot]\noffsite = \"\(daemonStore)\"\n"
        let a = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", scratch.file("a.toml", config), "--log-level", "info"], logPath: scratch.path + "/a.log",
            environment: environment)
        defer { _ = a.terminate() }
        var names: [String] = []
        for round in 0..<2 {
            for index in (round * 20 + 1)...(round * 20 + 20) { try Recovery.write(a, index) }
            let created = try LoopbackHTTP.request("POST", "/v1/admin/snapshots", port: a.port, body: Array("{}".utf8), timeoutSeconds: 120)
            try #require(created.status == 200, "\(created.text)")
            let path = try #require(try JSONSerialization.jsonObject(with: Data(created.body)) as? [String: Any])["path"] as? String
            names.append(PathComponents.name(of: try #require(path)))
            if round == 0 { usleep(1_100_000) }  // snapshot names are by the second
        }
        // The daemon pushed both, once each had verified.
        let daemonListed = try Self.listed(daemonStore, environment: environment)
        #expect(daemonListed.compactMap { $0["name"] as? String } == names.reversed() && daemonListed.compactMap { $0["height"] as? Int } == [40, 20])
        let log = try String(contentsOfFile: a.logPath, encoding: .utf8)
        #expect(log.components(separatedBy: "snapshot pushed off-site").count - 1 == 2, "\(log.suffix(2_000))")

        // By hand: the second push uploads only the files the first did not.
        var uploaded: [Int] = []
        for name in names {
            let pushed = try Self.node(["snapshot", "push", "--data-dir", scratch.path + "/a", "--name", name, "--to", cliStore, "--json"], environment: environment)
            try #require(pushed.status == 0, "\(pushed.error)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(pushed.output.utf8)) as? [String: Any])
            uploaded.append(report["bytes_uploaded"] as? Int ?? -1)
            if name == names[1] { #expect((report["files_already_stored"] as? Int ?? 0) > 0, "\(report)") }
        }
        #expect(uploaded[0] > 0 && uploaded[1] < uploaded[0], "the second push uploaded only new files: \(uploaded)")

        // Pull, restore on a standby, and it stands at A's roots at that height.
        let pulled = try Self.node(["snapshot", "pull", "--from", cliStore, "--name", names[1], "--out", scratch.path + "/pulled"], environment: environment)
        try #require(pulled.status == 0, "\(pulled.error)")
        let restored = try runNodeCommand(["snapshot", "restore", "--from", scratch.path + "/pulled", "--data-dir", scratch.path + "/standby"])
        try #require(restored.status == 0, "\(restored.error)")
        let standby = try Recovery.start(scratch, "standby", config: "[node]\ndata_dir = \"\(scratch.path)/standby\"\n")
        #expect(try Suite.roots(standby.port) == Suite.roots(a.port))
        _ = standby.terminate()

        // A damaged object is refused on pull (65), naming it; nothing is left at the target.
        let manifest = try SnapshotVerifier.readManifest(fileSystem: PosixFileSystem(), path: scratch.path + "/pulled")
        let victim = try #require(manifest.files.max { $0.sizeBytes < $1.sizeBytes })
        try await Self.damage(kind == "s3" ? moto!.endpoint : "\(scratch.path)/offsite-cli", key: "objects/" + victim.sha256, s3Prefix: "cli")
        let refused = try Self.node(["snapshot", "pull", "--from", cliStore, "--name", names[1], "--out", scratch.path + "/again"], environment: environment)
        #expect(refused.status == 65 && refused.error.contains(victim.sha256), "\(refused.error)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/again") && !FileManager.default.fileExists(atPath: scratch.path + "/again.partial"))

        let pruned = try Self.node(["snapshot", "prune", "--offsite", daemonStore, "--keep", "1"], environment: environment)
        #expect(pruned.status == 0, "\(pruned.error)")
        #expect(try Self.listed(daemonStore, environment: environment).compactMap { $0["name"] as? String } == [names[1]])
    }

    /// Flips one byte of an object: in the directory, or through the S3 API (bit rot at rest).
    static func damage(_ where: String, key: String, s3Prefix: String) async throws {
        if `where`.hasPrefix("/") {
            let path = `where` + "/" + key
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0x01
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            return
        }
        let settings = S3Settings(credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), region: "us-east-1", endpoint: `where`)
        try await S3ObjectStore.withStore(bucket: "rivellum-a", prefix: s3Prefix, settings: settings) { store in
            var bytes = try #require(try await store.get(key, bytesMax: 1 << 30))
            bytes[bytes.count / 2] ^= 0x01
            try await store.put(key, bytes: bytes)
        }
    }
}
