@testable import Engine
import FaultFS
import Foundation
import SimRunner
import Testing

/// Snapshots: create → verify → restore round trips (WAL kept, and on "new hardware" with no
/// WAL), every kind of damaged or hostile snapshot refused with nothing written, and crashes at
/// every file-system operation of create and of restore (docs/RULES.md, I1 and I6).
@Suite("Snapshots")
struct SnapshotTests {
    static let data = "/data"
    static let snapshot = "/backup/s1"

    static func configuration(dataDirectory: String = data) -> EngineConfiguration {
        var configuration = EngineTests.configuration()
        configuration.dataDirectory = dataDirectory
        return configuration
    }

    /// Commits blocks `heights` and returns the model after them.
    static func commit(_ engine: Engine, _ heights: ClosedRange<Int>, model: inout ChainModel) throws {
        for height in heights {
            let block = makeBlock(height, seed: 5)
            model.apply(block)
            let result = try engine.commit(block)
            #expect(result.height == UInt64(height))
        }
    }

    /// A file system with a 30-block chain, a snapshot of it at /backup/s1, then 20 more blocks.
    static func chainWithSnapshot() throws -> (SimulatedFileSystem, ChainModel, SnapshotManifest) {
        let fileSystem = SimulatedFileSystem(seed: 21, plan: .none)
        var model = ChainModel(chainID: "rivellum-test", laneCount: 4)
        let engine = try Engine(fileSystem: fileSystem, configuration: configuration(), clock: ManualClock())
        try commit(engine, 1...30, model: &model)
        let manifest = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: snapshot, nowSeconds: 1_000)
        try commit(engine, 31...50, model: &model)
        try engine.close()
        return (fileSystem, model, manifest)
    }

    @Test func createVerifyAndRestoreReplaysTheWALToTheLatestHeight() throws {
        let (fileSystem, model, manifest) = try Self.chainWithSnapshot()
        #expect(manifest.height == 30)
        #expect(manifest.metaRoot == model.metaRoot(at: 30).hex)
        #expect(manifest.lanes.map(\.laneRoot) == model.laneRoots(at: 30).map(\.hex))
        let report = try SnapshotVerifier.verify(fileSystem: fileSystem, path: Self.snapshot)
        #expect(report.filesChecked == manifest.files.count && report.lanesChecked == 4)
        // The lanes' files are hard links of the live SST files, not copies.
        let sst = try #require(manifest.files.first { $0.path.hasSuffix(".sst") })
        #expect(try fileSystem.status(PathComponents.join(Self.snapshot, sst.path))?.linkCount ?? 0 >= 1)

        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: Self.data)
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: Self.data, resetWAL: false, id: "t1")
        #expect(plan.walAction == .keep(replayThrough: 50))
        #expect(!plan.createsGenesis)
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: false, clock: SystemClock())
        try lock.unlock()
        #expect(try fileSystem.exists(Self.data + "/lanes.pre-restore-t1"))
        #expect(!(try fileSystem.exists(Self.data + "/" + RestoreJournal.fileName)))

        let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock())
        defer { try? engine.close() }
        #expect(engine.stateRoots().height == 50)
        #expect(engine.stateRoots().metaRoot == model.metaRoot(at: 50))
        #expect(engine.recoveryReport.lanes.reduce(0) { $0 + $1.recordsReplayed } > 0, "the WAL after the snapshot was replayed")
    }

    @Test func restoreOnNewHardwareStartsTheChainAtTheSnapshot() throws {
        let (fileSystem, model, _) = try Self.chainWithSnapshot()
        let fresh = "/newhost/data"
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: fresh)
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: fresh, resetWAL: false, id: "t2")
        #expect(plan.walAction == .initialise)
        #expect(plan.createsGenesis)
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: false, clock: SystemClock())
        try lock.unlock()
        var continued = model
        continued.states = Array(model.states[0...30])
        let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(dataDirectory: fresh), clock: ManualClock())
        #expect(engine.stateRoots().height == 30)
        #expect(engine.stateRoots().metaRoot == model.metaRoot(at: 30))
        #expect(try engine.block(at: 30)?.metaRoot == model.metaRoot(at: 30))
        // The chain continues from the snapshot, and survives a reopen.
        try Self.commit(engine, 31...35, model: &continued)
        try engine.close()
        let reopened = try Engine(fileSystem: fileSystem, configuration: Self.configuration(dataDirectory: fresh), clock: ManualClock())
        defer { try? reopened.close() }
        #expect(reopened.stateRoots().metaRoot == continued.metaRoot(at: 35))
    }

    @Test func aWALThatCannotContinueIsRefusedUnlessReset() throws {
        let (fileSystem, model, _) = try Self.chainWithSnapshot()
        // Another history in the WAL: a second chain written into another data directory.
        let other = "/other"
        var otherModel = ChainModel(chainID: "rivellum-test", laneCount: 4)
        let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(dataDirectory: other), clock: ManualClock())
        for height in 1...40 {
            let block = makeBlock(height, seed: 99)
            otherModel.apply(block)
            _ = try engine.commit(block)
        }
        try engine.close()
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: other)
        do throws(SnapshotError) {
            _ = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: other, resetWAL: false, id: "t3")
            Issue.record("a WAL of another history was accepted")
        } catch {
            #expect(error.kind == .walGap)
            #expect(error.description.contains("--reset-wal"))
        }
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: other, resetWAL: true, id: "t3")
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: true, clock: SystemClock())
        try lock.unlock()
        #expect(try fileSystem.exists(other + "/wal.pre-restore-t3"))
        #expect(!(try fileSystem.exists(other + "/lanes.pre-restore-t3")), "--delete-old")
        let restored = try Engine(fileSystem: fileSystem, configuration: Self.configuration(dataDirectory: other), clock: ManualClock())
        defer { try? restored.close() }
        #expect(restored.stateRoots().metaRoot == model.metaRoot(at: 30))
    }

    /// Every way a snapshot can be wrong, each refused by verify and by restore with nothing
    /// written to the data directory.
    @Test func damagedAndHostileSnapshotsAreRefusedWithNothingWritten() throws {
        let (pristine, _, manifest) = try Self.chainWithSnapshot()
        typealias Tamper = (SimulatedFileSystem) throws -> Void
        func rewriteManifest(_ fileSystem: SimulatedFileSystem, _ change: (inout SnapshotManifest) -> Void) throws {
            var changed = manifest
            change(&changed)
            let bytes = changed.encoded()
            try fileSystem.removeFile(Self.snapshot + "/MANIFEST.json")
            try fileSystem.writeFileAtomically(Self.snapshot + "/MANIFEST.json", bytes: bytes)
            // A forger recomputes the marker too: the structural checks must still refuse.
            try fileSystem.removeFile(Self.snapshot + "/COMPLETE")
            try fileSystem.writeFileAtomically(Self.snapshot + "/COMPLETE", bytes: SnapshotManifest.completeMarker(manifestBytes: bytes))
        }
        func flip(_ fileSystem: SimulatedFileSystem, _ path: String, at offset: UInt64) throws {
            let handle = try fileSystem.openFile(path, options: .readWrite)
            let byte = try handle.read(at: offset, count: 1)[0]
            try handle.write([byte ^ 0x20], at: offset)
            try handle.close()
        }
        var cases: [(String, SnapshotError.Kind, Tamper)] = []
        for file in manifest.files where file.sizeBytes > 0 {
            cases.append(("flipped byte in \(file.path)", .damaged, { try flip($0, Self.snapshot + "/" + file.path, at: file.sizeBytes / 2) }))
        }
        cases += [
            ("changed manifest", .damaged, { try flip($0, Self.snapshot + "/MANIFEST.json", at: 40) }),
            ("no completion marker", .incomplete, { try $0.removeFile(Self.snapshot + "/COMPLETE") }),
            ("missing file", .damaged, { try $0.removeFile(Self.snapshot + "/" + manifest.files[0].path) }),
            ("extra file", .hostile, { try $0.writeFileAtomically(Self.snapshot + "/lanes/lane-0000/EXTRA", bytes: [1]) }),
            ("path escaping the snapshot", .hostile, { try rewriteManifest($0) { $0.files[0].path = "lanes/lane-0000/../../../etc/passwd" } }),
            ("absolute path", .hostile, { try rewriteManifest($0) { $0.files[0].path = "/etc/passwd" } }),
            ("path outside lanes/", .hostile, { try rewriteManifest($0) { $0.files[0].path = "GENESIS" } }),
            ("size bomb", .hostile, { try rewriteManifest($0) { $0.files[0].sizeBytes = 1 << 50 } }),
            ("forged lane root", .hostile, { try rewriteManifest($0) { $0.lanes[1].laneRoot = String(repeating: "ab", count: 32) } }),
            ("forged MetaRoot and commit record", .damaged, {
                try rewriteManifest($0) { manifest in
                    var record = CommitRecord.decode(Hex.decode(manifest.commitRecord)!)!
                    record.metaRoot = Hash32(bytes: Array(repeating: 7, count: 32))
                    manifest.metaRoot = record.metaRoot.hex
                    manifest.commitRecord = Hex.encode(record.encoded())
                }
            }),
            ("another chain", .wrongChain, { try rewriteManifest($0) { $0.chainID = "other-chain" } }),
        ]
        for (name, kind, tamper) in cases {
            let fileSystem = pristine.clone()
            try tamper(fileSystem)
            let before = try fileSystem.walkTree(Self.data).map { "\($0.path) \($0.status.sizeBytes)" }
            if kind != .wrongChain {
                do throws(SnapshotError) {
                    _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: Self.snapshot)
                    Issue.record("\(name): verify accepted it")
                } catch {
                    #expect(error.kind == kind, "\(name): \(error)")
                }
            }
            do throws(SnapshotError) {
                let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: Self.data)
                defer { try? lock.unlock() }
                let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: Self.data, resetWAL: false, id: "x")
                try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: false, clock: SystemClock())
                Issue.record("\(name): restore accepted it")
            } catch {
                #expect(error.kind == kind || (kind == .wrongChain && error.kind == .damaged), "\(name): \(error)")
            }
            let after = try fileSystem.walkTree(Self.data).map { "\($0.path) \($0.status.sizeBytes)" }
            #expect(before == after, "\(name): the data directory changed")
        }
        #expect(cases.count > 15)
    }

    @Test func symbolicLinksAreRefused() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-snap-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fileSystem = PosixFileSystem()
        var configuration = Self.configuration(dataDirectory: root + "/data")
        configuration.laneCount = 2
        let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
        for height in 1...5 { _ = try engine.commit(makeBlock(height)) }
        let manifest = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: root + "/snap", nowSeconds: 1)
        try engine.close()
        _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: root + "/snap")
        // Replace a listed file by a symlink to the same content.
        let victim = root + "/snap/" + manifest.files[0].path
        try FileManager.default.moveItem(atPath: victim, toPath: root + "/elsewhere")
        try FileManager.default.createSymbolicLink(atPath: victim, withDestinationPath: root + "/elsewhere")
        do throws(SnapshotError) {
            _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: root + "/snap")
            Issue.record("a symlink was accepted")
        } catch {
            #expect(error.kind == .hostile)
            #expect(error.description.contains("symbolic link"))
        }
    }

    /// A crash at every operation of snapshot create: afterwards the engine recovers to a
    /// committed height and the snapshot is either complete and verifies, or refused.
    @Test func crashAtEveryOperationOfCreate() throws {
        func run(_ fileSystem: SimulatedFileSystem) -> Bool {
            guard let engine = try? Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock(), executor: SerialLaneExecutor())
            else { return false }
            defer { engine.abandon() }
            for height in 1...12 { guard (try? engine.commit(makeBlock(height, seed: 5))) != nil else { return false } }
            guard (try? SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: Self.snapshot, nowSeconds: 1)) != nil else {
                return false
            }
            try? engine.close()
            return true
        }
        var model = ChainModel(chainID: "rivellum-test", laneCount: 4)
        for height in 1...12 { model.apply(makeBlock(height, seed: 5)) }
        let whole = SimulatedFileSystem(seed: 3, plan: .none)
        #expect(run(whole))
        let total = whole.operationCount
        var completed = 0
        for crashPoint in 1...total {
            let fileSystem = SimulatedFileSystem(
                seed: crashPoint, plan: FaultPlan(rates: [.lostUnsyncedWrites: 0.5, .tornWrites: 0.3, .lostDirectoryEntries: 0.5]),
                traceEventsMax: 0)
            fileSystem.scheduleCrash(atOperation: crashPoint)
            _ = run(fileSystem)
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock())
            let height = Int(engine.stateRoots().height)
            #expect(engine.stateRoots().metaRoot == model.metaRoot(at: height), "crash at \(crashPoint)")
            try engine.close()
            if let report = try? SnapshotVerifier.verify(fileSystem: fileSystem, path: Self.snapshot) {
                completed += 1
                #expect(report.manifest.height == 12, "crash at \(crashPoint)")
                #expect(report.manifest.metaRoot == model.metaRoot(at: 12).hex, "crash at \(crashPoint)")
            }
        }
        #expect(completed >= 1)
        print("snapshot create: \(total) crash points, \(completed) left a complete snapshot")
    }

    /// A crash at every operation of restore (and again inside the engine's roll-forward):
    /// afterwards the engine opens on either the old state or the restored one, and replays to
    /// the latest committed height either way.
    @Test func crashAtEveryOperationOfRestore() throws {
        let (pristine, model, _) = try Self.chainWithSnapshot()
        func restore(_ fileSystem: SimulatedFileSystem) {
            guard let lock = try? lockDataDirectory(fileSystem: fileSystem, dataDirectory: Self.data) else { return }
            defer { try? lock.unlock() }
            guard let plan = try? SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: Self.data, resetWAL: false, id: "c")
            else { return }
            try? SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: true, clock: SystemClock())
        }
        let whole = pristine.clone()
        let start = whole.operationCount
        restore(whole)
        let total = whole.operationCount - start
        var rolledForward = 0
        for offset in 1...total {
            let fileSystem = pristine.clone()
            fileSystem.setPlan(FaultPlan(rates: [.lostUnsyncedWrites: 0.5, .tornWrites: 0.3, .lostDirectoryEntries: 0.5]))
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + offset)
            restore(fileSystem)
            fileSystem.crash(.powerLoss)
            let journal = try fileSystem.exists(Self.data + "/" + RestoreJournal.fileName)
            if journal { rolledForward += 1 }
            // A crash inside the roll-forward too.
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1 + offset % 13)
            if let engine = try? Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock()) { engine.abandon() }
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock())
            #expect(engine.stateRoots().height == 50, "crash at restore operation \(offset)")
            #expect(engine.stateRoots().metaRoot == model.metaRoot(at: 50), "crash at restore operation \(offset)")
            #expect(!(try fileSystem.exists(Self.data + "/lanes.restore-staging")), "crash at \(offset): staging left behind")
            try engine.close()
        }
        #expect(rolledForward >= 1, "some crashes fell after the journal was written")
        print("snapshot restore: \(total) crash points, \(rolledForward) rolled forward from the journal")
    }

    @Test func pruneKeepsTheNewestVerifiedSnapshotUnlessForced() {
        var catalog = SnapshotCatalog()
        func entry(_ name: String, _ created: UInt64, verified: Bool) -> SnapshotCatalog.Entry {
            SnapshotCatalog.Entry(
                name: name, path: "/s/" + name, height: created, metaRoot: "", createdAt: created, sizeBytes: 1, lanePositions: [],
                lastVerifiedAt: verified ? created : 0, verified: verified, sequence: created)
        }
        catalog.snapshots = [entry("a", 100, verified: true), entry("b", 200, verified: true), entry("c", 300, verified: false)]
        // Keep 1: "c" stays (newest); "b" is the newest verified one and is protected.
        let keepOne = SnapshotPruner.decide(catalog: catalog, keep: 1, olderThanSeconds: nil, nowSeconds: 1_000, force: false)
        #expect(keepOne.remove.map(\.name) == ["a"])
        #expect(keepOne.protected.map(\.name) == ["b"])
        let forced = SnapshotPruner.decide(catalog: catalog, keep: 1, olderThanSeconds: nil, nowSeconds: 1_000, force: true)
        #expect(forced.remove.map(\.name) == ["b", "a"])
        // Older than 750 s at t=1000: a (900 s old) goes; b (800 s) goes too but is protected.
        let byAge = SnapshotPruner.decide(catalog: catalog, keep: nil, olderThanSeconds: 750, nowSeconds: 1_000, force: false)
        #expect(byAge.remove.map(\.name) == ["a"])
        let both = SnapshotPruner.decide(catalog: catalog, keep: 0, olderThanSeconds: 750, nowSeconds: 1_000, force: false)
        #expect(both.remove.map(\.name) == ["a"])
        #expect(both.keep.map(\.name) == ["c", "b"])
    }

    /// A snapshot lane's RocksDB failing: corruption it found is damage, an I/O failure is `io`
    /// (a retry may clear it), so an EIO while verifying never calls a good snapshot damaged.
    @Test func aLaneIOFailureIsNotDamage() {
        let eio = SnapshotError(laneFailure: EngineError(.storage, lane: 1, "IO error: EIO"), path: "/s/lanes/lane-1", "reading lane 1")
        let corrupt = SnapshotError(laneFailure: EngineError(.corruptState, lane: 1, "Corruption: block checksum"), path: "/s/lanes/lane-1", "reading lane 1")
        #expect(eio.kind == .io && eio.path == "/s/lanes/lane-1")
        #expect(corrupt.kind == .damaged)
    }

    /// The catalog checks itself: a flipped digit in a lane position still parses as JSON, and
    /// WAL retention would delete log a snapshot needs. Bad reads are read again; damage that
    /// stands is `damaged` (and retention keeps the whole log); a version 1 catalog (no
    /// checksum) still reads.
    @Test func theCatalogChecksumCatchesADigitThatStillParses() throws {
        let fileSystem = SimulatedFileSystem(seed: 33, plan: .none)
        try fileSystem.createDirectories(Self.data)
        var catalog = SnapshotCatalog()
        catalog.snapshots = [
            SnapshotCatalog.Entry(
                name: "s1", path: "/backup/s1", height: 40, metaRoot: "ab", createdAt: 7, sizeBytes: 9, lanePositions: [31, 47],
                lastVerifiedAt: 7, verified: true, sequence: 1)
        ]
        try catalog.save(fileSystem: fileSystem, dataDirectory: Self.data)
        let path = Self.data + "/" + SnapshotCatalog.fileName
        let saved = try fileSystem.readFile(path)
        #expect(String(decoding: saved, as: UTF8.self).contains("\"checksum\""))
        #expect(try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: Self.data).snapshots == catalog.snapshots)

        // Bad reads (flipped bits, misdirected reads) are read again until the checksum matches.
        fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.3]))
        for _ in 0..<20 {
            #expect(try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: Self.data).snapshots == catalog.snapshots)
        }
        #expect((fileSystem.injectedFaultCounts["bit_rot_on_read"] ?? 0) >= 3)
        fileSystem.setPlan(.none)

        // "47" -> "17": still a valid catalog to a JSON parser, a lower floor to retention.
        let text = String(decoding: saved, as: UTF8.self)
        let tampered = text.replacingOccurrences(of: "47", with: "17")
        #expect(tampered != text)
        try fileSystem.writeFileAtomically(path, bytes: Array(tampered.utf8))
        #expect(throws: SnapshotError.self) { try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: Self.data) }
        let floors = try #require(SnapshotCatalog.walFloors(fileSystem: fileSystem, dataDirectory: Self.data, laneCount: 2))
        #expect(floors.lanes == [0, 0], "a damaged catalog keeps the whole log")

        // Version 1, written before the checksum existed, still reads.
        let legacy = #"{"format_version":1,"snapshots":[{"created_at":7,"height":40,"lane_positions":[31,47],"#
            + #""last_verified_at":7,"meta_root":"ab","name":"s1","path":"\/backup\/s1","sequence":1,"size":9,"verified":true}]}"#
        try fileSystem.writeFileAtomically(path, bytes: Array(legacy.utf8))
        #expect(try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: Self.data).snapshots == catalog.snapshots)
    }

    @Test func anUnreadableCatalogKeepsTheWholeLog() throws {
        let fileSystem = SimulatedFileSystem(seed: 32, plan: .none)
        try fileSystem.createDirectories(Self.data)
        #expect(SnapshotCatalog.walFloors(fileSystem: fileSystem, dataDirectory: Self.data, laneCount: 2) == nil, "no catalog: no floors")
        try fileSystem.writeFileAtomically(Self.data + "/" + SnapshotCatalog.fileName, bytes: Array("not json".utf8))
        let floors = try #require(SnapshotCatalog.walFloors(fileSystem: fileSystem, dataDirectory: Self.data, laneCount: 2))
        #expect(floors.lanes == [0, 0])
        #expect(floors.meta == 0)
    }

    @Test func walRetentionKeepsWhatACataloguedSnapshotNeeds() throws {
        let fileSystem = SimulatedFileSystem(seed: 31, plan: .none)
        var configuration = Self.configuration()
        configuration.walRetentionHours = 0
        configuration.wal.segmentSizeBytes = 1_024
        configuration.flushEveryBlocks = 8
        var model = ChainModel(chainID: "rivellum-test", laneCount: 4)
        let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
        try Self.commit(engine, 1...10, model: &model)
        let manifest = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: Self.snapshot, nowSeconds: 1)
        try SnapshotCatalog.record(fileSystem: fileSystem, dataDirectory: Self.data, path: Self.snapshot, manifest: manifest, verifiedAt: 1)
        try Self.commit(engine, 11...80, model: &model)
        try engine.checkpoint()
        try engine.close()
        // Without the catalog, retention 0 would have deleted the log below height 80; with it,
        // the log still reaches back to the snapshot and a restore replays to 80.
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: Self.data)
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: Self.snapshot, dataDirectory: Self.data, resetWAL: false, id: "r")
        #expect(plan.walAction == .keep(replayThrough: 80))
        try lock.unlock()
        let meta = try WALVerifier.verify(fileSystem: fileSystem, directory: Self.data + "/wal").first { $0.partition.isMeta }!
        #expect(meta.firstLSN <= 10)
        #expect(meta.segments.count > 1)
    }
}
