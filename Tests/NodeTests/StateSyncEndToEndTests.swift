import Documents
import Foundation
import NodeHarness
import Synchronization
import Testing

@testable import Engine

/// State sync with real binaries on loopback: A writes without archive mode, so its early log is
/// retired, and snapshots; B holds the same snapshot (restored from a copy of it) and follows A.
/// An empty C takes the snapshot from both, then blocks, and ends on A's roots — as a daemon,
/// as a one-shot `sync` killed with kill -9 three times mid-download, and through a proxy that
/// flips a byte of one file.
@Suite("State sync (end to end, real nodes)", .serialized)
struct StateSyncEndToEndTests {
    typealias Suite = PeerSyncEndToEndTests
    typealias Recovery = PeerRecoveryEndToEndTests

    /// Blocks written before the snapshot, and after it.
    static let blocksBefore = 160
    static let blocksAfter = 200

    /// A block of a new key with 32 KiB of pseudo-random hex (RocksDB cannot compress it much).
    static func writeBig(_ node: NodeProcess, _ index: Int) throws {
        func value(_ seed: Int) -> String {
            var state = UInt64(truncatingIfNeeded: seed) &* 0x9E37_79B9_7F4A_7C15 | 1
            var text = ""
            text.reserveCapacity(32 << 10)
            // Bounded: 2,048 rounds of 16 hex digits.
            for _ in 0..<2_048 {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                text += String(format: "%016llx", state)
            }
            return text
        }
        let response = try Suite.post(node.port, [.init(key: "big\(index)", value: value(index)), .init(key: "n\(index % 9)", value: "v\(index)")])
        guard response.status == 200 else { throw LoopbackHTTP.Failure(message: "block \(index): \(response.status) \(response.text)") }
    }

    struct Network {
        let a: NodeProcess
        let b: NodeProcess
        let offer: SnapshotOffersDocument.Offer

        func terminate() {
            _ = b.terminate()
            _ = a.terminate()
        }
    }

    static func startA(_ scratch: ScratchDirectory) throws -> NodeProcess {
        try Recovery.start(
            scratch, "a",
            config: "[node]\ndata_dir = \"\(scratch.path)/a\"\narchive = false\n[wal]\nwal_fsync_policy = \"dev_fast\"\nwal_segment_size_mb = 1\nwal_retention_hours = 0\n")
    }

    /// A (non-archive, 1 MiB segments, no retention) with a snapshot at `blocksBefore` and
    /// `blocksAfter` more blocks, restarted (its close checkpoints, which retires the log below
    /// the snapshot); B restored from a copy of that snapshot, which it catalogues and offers,
    /// following A.
    static func network(_ scratch: ScratchDirectory) throws -> Network {
        var a = try startA(scratch)
        for index in 1...blocksBefore { try writeBig(a, index) }
        let created = try LoopbackHTTP.request("POST", "/v1/admin/snapshots", port: a.port, body: Array("{}".utf8), timeoutSeconds: 120)
        try #require(created.status == 200, "\(created.text)")
        for index in (blocksBefore + 1)...(blocksBefore + blocksAfter) { try writeBig(a, index) }
        try #require(a.terminate() == 0)
        a = try startA(scratch)
        let offer = try #require(try JSONDocument.decode(SnapshotOffersDocument.self, from: try get(a.port, "/v1/sync/snapshots").body).snapshots.first)
        let copy = scratch.path + "/b-snapshots/" + offer.name
        try FileManager.default.createDirectory(atPath: scratch.path + "/b-snapshots", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: scratch.path + "/a/snapshots/" + offer.name, toPath: copy)
        let restored = try runNodeCommand(["snapshot", "restore", "--from", copy, "--data-dir", scratch.path + "/b"])
        try #require(restored.status == 0, "\(restored.error)")
        let catalogued = try runNodeCommand(["snapshot", "verify", "--from", copy, "--data-dir", scratch.path + "/b"])
        try #require(catalogued.status == 0, "\(catalogued.error)")
        let b = try Recovery.start(scratch, "b", config: Recovery.syncConfig(scratch, "b", peers: [a.port], follow: true) + "mode = \"blocks\"\n")
        let top = UInt64(blocksBefore + blocksAfter)
        try #require(try Suite.waitFor(height: top, on: b.port) == Suite.roots(a.port), "B follows A from the snapshot")
        return Network(a: a, b: b, offer: offer)
    }

    static func status(_ port: Int) throws -> SyncStatusDocument {
        try JSONDocument.decode(SyncStatusDocument.self, from: try get(port, "/v1/sync/status").body)
    }

    static func config(_ scratch: ScratchDirectory, _ name: String, peers: [Int], follow: Bool, chunkKiB: Int = 4_096) -> String {
        Recovery.syncConfig(scratch, name, peers: peers, follow: follow) + "chunk_kib = \(chunkKiB)\n"
    }

    /// The daemon, started on an empty directory, state-syncs (it says so) from A and B, then
    /// follows A. A's answers for one file come through a proxy that flips a byte in each: the
    /// file is caught, A is counted faulty, and the file comes whole from B.
    @Test func anEmptyNodeStateSyncsFromTwoPeersThenFollows() throws {
        let scratch = ScratchDirectory("state-sync-daemon")
        let network = try Self.network(scratch)
        defer { network.terminate() }
        let retired = try Self.status(network.a.port)
        let oldest = try #require(retired.oldestServableHeight)
        #expect(oldest > 1 && oldest <= network.offer.height + 1, "A retired its early log (it serves from \(oldest)) and keeps what follows its snapshot")
        #expect(network.offer.height == UInt64(Self.blocksBefore))
        let manifest = try #require(SnapshotManifest.decode(try get(network.a.port, "/v1/sync/snapshots/\(network.offer.name)/manifest").body))
        // A file of several chunks, so that both peers serve part of it.
        let victim = try #require(manifest.files.filter { $0.sizeBytes > 4 * 64 << 10 }.min { $0.sizeBytes < $1.sizeBytes }).path
        let flips = Atomic<Int>(0)
        let flipper = try LoopbackProxy(upstreamPort: network.a.port, transform: { path, response in
            guard path.contains("/file?"), path.hasSuffix(victim.split(separator: "/").last!), response.status == 206, !response.body.isEmpty else { return response }
            var flipped = response
            flipped.body[flipped.body.count / 2] ^= 0x40
            flips.add(1, ordering: .relaxed)
            return flipped
        })
        defer { flipper.stop() }
        let config = Self.config(scratch, "c", peers: [flipper.port, network.b.port], follow: true, chunkKiB: 64)
        let c = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", scratch.file("c.toml", config), "--log-level", "info"], logPath: scratch.path + "/c.log")
        defer { _ = c.terminate() }
        let top = UInt64(Self.blocksBefore + Self.blocksAfter)
        #expect(try Suite.waitFor(height: top, on: c.port) == Suite.roots(network.a.port))
        try Self.writeBig(network.a, Int(top) + 1)
        #expect(try Suite.waitFor(height: top + 1, on: c.port) == Suite.roots(network.a.port), "C follows A's new block")
        let log = try String(contentsOfFile: c.logPath, encoding: .utf8)
        #expect(log.contains("sync mode chosen") && log.contains("state_sync") && log.contains("state synced"), "C says it chose state sync:\n\(log.suffix(3_000))")
        #expect(flips.load(ordering: .relaxed) > 0 && log.contains("does not hash to its manifest"), "the flipped byte was caught:\n\(log.suffix(3_000))")
        #expect(log.contains("peer answered falsely"), "A, which alone served the file again wrong, is counted faulty")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/c/state-sync"), "staging is removed after the install")
    }

    /// One-shot `sync` of an empty directory through slow proxies, killed with kill -9 three
    /// times mid-download: each run resumes from staging, and the file bytes served in all stay
    /// under 1.2x the snapshot's size.
    @Test func aKilledDownloadResumesWithoutFetchingAgain() throws {
        let scratch = ScratchDirectory("state-sync-resume")
        let network = try Self.network(scratch)
        defer { network.terminate() }
        let fileBytes = Atomic<Int>(0)
        let counting: LoopbackProxy.Transform = { path, response in
            if path.contains("/file?") { fileBytes.add(response.body.count, ordering: .relaxed) }
            return response
        }
        let proxyA = try LoopbackProxy(upstreamPort: network.a.port, delayMilliseconds: 60, transform: counting)
        defer { proxyA.stop() }
        let proxyB = try LoopbackProxy(upstreamPort: network.b.port, delayMilliseconds: 60, transform: counting)
        defer { proxyB.stop() }
        let configPath = scratch.file("c.toml", Self.config(scratch, "c", peers: [proxyA.port, proxyB.port], follow: false, chunkKiB: 64))
        let journal = scratch.path + "/c/state-sync/CHUNKS"
        let chunks = Int(network.offer.sizeBytes / (64 << 10))
        var kills = 0
        for fraction in [0.2, 0.45, 0.7] {
            let process = try Self.startSync(configPath: configPath, logPath: scratch.path + "/c-sync.log")
            // Bounded: 120 s of 20 ms polls.
            for _ in 0..<6_000 where process.isRunning {
                let lines = (try? String(contentsOfFile: journal, encoding: .utf8))?.split(separator: "\n").count ?? 0
                if lines >= Int(Double(chunks) * fraction) { break }
                usleep(20_000)
            }
            try #require(process.isRunning, "the sync was still downloading at \(fraction)")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            kills += 1
        }
        let last = try Self.startSync(configPath: configPath, logPath: scratch.path + "/c-sync.log")
        last.waitUntilExit()
        let log = try String(contentsOfFile: scratch.path + "/c-sync.log", encoding: .utf8)
        #expect(last.terminationStatus == 0, "\(log.suffix(3_000))")
        #expect(kills == 3)
        // What the proxies passed on of the snapshot's files, in all four runs.
        let served = fileBytes.load(ordering: .relaxed)
        #expect(Double(served) < 1.2 * Double(network.offer.sizeBytes), "\(served) bytes of files served for a snapshot of \(network.offer.sizeBytes)")
        #expect(log.components(separatedBy: "state sync resumes from staging").count - 1 == 3, "each of the three restarts resumed:\n\(log.suffix(3_000))")
        #expect(log.contains("\"state_synced\"") && log.contains("\"caught_up\""), "\(log.suffix(3_000))")
        let c = try Recovery.start(scratch, "c", config: Self.config(scratch, "c", peers: [network.a.port], follow: true))
        defer { _ = c.terminate() }
        let top = UInt64(Self.blocksBefore + Self.blocksAfter)
        #expect(try Suite.waitFor(height: top, on: c.port) == Suite.roots(network.a.port))
    }

    /// `rivellum-node sync --json` with its events and log into `logPath`.
    static func startSync(configPath: String, logPath: String) throws -> Process {
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NodeProcess.siblingBinary())
        process.arguments = ["sync", "--config", configPath, "--json", "--log-level", "info", "--stall-timeout-seconds", "60"]
        let log = try #require(FileHandle(forWritingAtPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
        return process
    }
}
