@testable import Engine
import FaultFS
import Foundation
import SimRunner
import Testing

/// A state sync's staging area (`StateSyncStaging`): a download staged chunk by chunk installs
/// to exactly the snapshot's state; what `load` finds after a stop is checked again (a torn
/// journal line, rotten chunk bytes, a damaged offer); and a power loss at every operation of a
/// download and its install leaves a node that, started again the way `rivellum-node` starts
/// it, ends at the snapshot's height and MetaRoot (I6).
@Suite("State-sync staging")
struct StateSyncStagingTests {
    static let target = "/new"
    static let chunkBytes: UInt64 = 4_096

    /// The source: the chain of `SnapshotTests.chainWithSnapshot` and its snapshot's offer.
    struct Source {
        let fileSystem: SimulatedFileSystem
        let model: ChainModel
        let manifest: SnapshotManifest
        let manifestBytes: [UInt8]
        let offer: SnapshotOffer
    }

    static func source() throws -> Source {
        let (fileSystem, model, manifest) = try SnapshotTests.chainWithSnapshot()
        let bytes = try fileSystem.readFile(SnapshotTests.snapshot + "/" + SnapshotManifest.fileName)
        let offer = SnapshotOffer(
            name: "s1", height: manifest.height, metaRoot: try #require(Hash32(hex: manifest.metaRoot)), manifestSHA256: sha256Hex(bytes),
            sizeBytes: manifest.totalBytes)
        return Source(fileSystem: fileSystem, model: model, manifest: manifest, manifestBytes: bytes, offer: offer)
    }

    /// What a stopped download had, as the machine would take it: verified files and staged chunk offsets.
    struct Progress {
        var verified: Set<String> = []
        var staged: [String: Set<UInt64>] = [:]
        var resumedWithChunks = false
    }

    /// Stages the snapshot from `/backup/s1` of the same file system (as a peer would serve it),
    /// resuming what staging holds; then installs it. Returns whether it got that far.
    @discardableResult
    static func download(_ fileSystem: SimulatedFileSystem, _ source: Source, progress: inout Progress) throws -> RestorePlan {
        let staging = try stage(fileSystem, source, progress: &progress)
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: target)
        defer { try? lock.unlock() }
        try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: target, clock: ManualClock())
        return try staging.install(walDirectory: nil, id: "ss", clock: ManualClock())
    }

    /// Stages every file of the snapshot (resuming what staging holds), each checked.
    static func stage(_ fileSystem: SimulatedFileSystem, _ source: Source, progress: inout Progress) throws -> StateSyncStaging {
        let staging: StateSyncStaging
        if let (loaded, staged) = try StateSyncStaging.load(fileSystem: fileSystem, dataDirectory: target) {
            staging = loaded
            progress.verified = staged.verifiedPaths
            progress.staged = staged.stagedChunks.mapValues { Set($0.map(\.offset)) }
            progress.resumedWithChunks = !staged.stagedChunks.isEmpty || !staged.verifiedPaths.isEmpty
        } else {
            staging = try StateSyncStaging.begin(fileSystem: fileSystem, dataDirectory: target, offer: source.offer, manifestBytes: source.manifestBytes)
        }
        for file in source.manifest.files where !progress.verified.contains(file.path) {
            let sourcePath = SnapshotTests.snapshot + "/" + file.path
            for offset in stride(from: UInt64(0), to: file.sizeBytes, by: Int(chunkBytes)) where !(progress.staged[file.path] ?? []).contains(offset) {
                let handle = try fileSystem.openFile(sourcePath, options: .readOnly)
                let bytes = try handle.read(at: offset, count: Int(min(chunkBytes, file.sizeBytes - offset)))
                try handle.close()
                try staging.writeChunk(path: file.path, offset: offset, bytes: bytes)
            }
            guard try staging.checkFile(path: file.path) else {
                try staging.discardFile(path: file.path)
                throw SnapshotError(.damaged, path: file.path, "staged wrong")
            }
        }
        return staging
    }

    /// Opens the target's engine and checks it stands at the snapshot; closes it.
    static func expectAtSnapshot(_ fileSystem: SimulatedFileSystem, _ source: Source, _ comment: Comment) throws {
        let engine = try Engine(fileSystem: fileSystem, configuration: SnapshotTests.configuration(dataDirectory: target), clock: ManualClock())
        defer { try? engine.close() }
        #expect(engine.stateRoots().height == 30, comment)
        #expect(engine.stateRoots().metaRoot == source.model.metaRoot(at: 30), comment)
        for (lane, store) in engine.laneStores.enumerated() {
            #expect((try? store.recomputeRootFromScratch()) == engine.stateRoots().laneRoots[lane], comment)
        }
    }

    @Test func aStagedDownloadInstallsTheSnapshotsStateAndRemovesStaging() throws {
        let source = try Self.source()
        var progress = Progress()
        let plan = try Self.download(source.fileSystem, source, progress: &progress)
        #expect(plan.createsGenesis && plan.walAction == .initialise)
        #expect(!(try source.fileSystem.exists(StateSyncStaging.root(Self.target))), "staging is removed once installed")
        try Self.expectAtSnapshot(source.fileSystem, source, "installed")
    }

    @Test func aManifestThatIsNotTheOfferedOneIsRefusedBeforeAnythingIsStaged() throws {
        let source = try Self.source()
        var forged = source.manifest
        forged.files[0].sizeBytes += 1
        // Bytes that do not hash to the offered digest (a changed manifest, or garbage).
        for bytes in [forged.encoded(), Array("{".utf8)] {
            do {
                _ = try StateSyncStaging.begin(fileSystem: source.fileSystem, dataDirectory: Self.target, offer: source.offer, manifestBytes: bytes)
                Issue.record("a manifest that is not the offered one was staged")
            } catch {
                #expect(error.kind == .damaged && error.message.contains("digest"))
            }
        }
        // Hostile, with the offer's digest made to match: a path escaping the snapshot, and a
        // file listed as the directory of another.
        var escaping = source.manifest
        escaping.files[0].path = "lanes/lane-0000/../../../GENESIS"
        var nested = source.manifest
        nested.files[1].path = nested.files[0].path + "/inside"
        for hostile in [escaping, nested] {
            let hostileBytes = hostile.encoded()
            var offer = source.offer
            offer.manifestSHA256 = sha256Hex(hostileBytes)
            do {
                _ = try StateSyncStaging.begin(fileSystem: source.fileSystem, dataDirectory: Self.target, offer: offer, manifestBytes: hostileBytes)
                Issue.record("a hostile manifest was staged: \(hostile.files[0].path), \(hostile.files[1].path)")
            } catch {
                #expect(error.kind == .hostile)
            }
        }
        #expect(!(try source.fileSystem.exists(StateSyncStaging.root(Self.target))), "nothing was written")
    }

    /// A stop after part of the download: `load` gives back exactly the staged chunks whose bytes
    /// are intact; a rotten chunk, a torn journal line and a missing file are fetched again.
    @Test func loadKeepsOnlyWhatStillChecks() throws {
        let source = try Self.source()
        let fileSystem = source.fileSystem
        let chunk: UInt64 = 256
        let staging = try StateSyncStaging.begin(fileSystem: fileSystem, dataDirectory: Self.target, offer: source.offer, manifestBytes: source.manifestBytes)
        let files = source.manifest.files.filter { $0.sizeBytes >= 2 * chunk }
        try #require(files.count >= 2, "the snapshot has files of several chunks")
        for file in files.prefix(2) {
            let bytes = try fileSystem.readFile(SnapshotTests.snapshot + "/" + file.path)
            try staging.writeChunk(path: file.path, offset: 0, bytes: Array(bytes[0..<Int(chunk)]))
            try staging.writeChunk(path: file.path, offset: chunk, bytes: Array(bytes[Int(chunk)..<Int(2 * chunk)]))
        }
        let (_, whole) = try #require(try StateSyncStaging.load(fileSystem: fileSystem, dataDirectory: Self.target))
        #expect(whole.stagedChunks[files[0].path]?.map(\.offset).sorted() == [0, chunk])
        #expect(whole.offer == source.offer && whole.manifest == source.manifest)
        // Rot in the first file's second chunk; a torn line at the journal's end.
        let rotten = staging.snapshotPath + "/" + files[0].path
        let handle = try fileSystem.openFile(rotten, options: .readWrite)
        try handle.write([0xFF, 0x00, 0xFF], at: chunk + 7)
        try handle.sync()
        try handle.close()
        let journal = StateSyncStaging.root(Self.target) + "/CHUNKS"
        let journalHandle = try fileSystem.openFile(journal, options: .readWrite)
        try journalHandle.append(Array("chunk 8192 4096 deadbeef lanes/lane-0000/x|12".utf8))
        try journalHandle.sync()
        try journalHandle.close()
        let (_, resumed) = try #require(try StateSyncStaging.load(fileSystem: fileSystem, dataDirectory: Self.target))
        #expect(resumed.stagedChunks[files[0].path]?.map(\.offset) == [0], "the rotten chunk is fetched again")
        #expect(resumed.stagedChunks[files[1].path]?.count == 2)
        #expect(try fileSystem.readFile(journal).last == 0x0A, "the torn line was cut off")
        // A damaged offer: staging cannot be vouched for and is removed.
        try fileSystem.writeFileAtomically(StateSyncStaging.root(Self.target) + "/OFFER", bytes: Array("format=1\nname=s1\n".utf8))
        #expect(try StateSyncStaging.load(fileSystem: fileSystem, dataDirectory: Self.target) == nil)
        #expect(!(try fileSystem.exists(StateSyncStaging.root(Self.target))))
    }

    /// After an install that a crash left unfinished, staged files may be hard links of the
    /// lanes' own: a verified file that no longer checks, and a discarded one, are replaced by
    /// new files, never written in place, so the linked lane file keeps its bytes.
    @Test func aStagedFileLinkedIntoTheLanesIsReplacedNeverWrittenInPlace() throws {
        let source = try Self.source()
        let fileSystem = source.fileSystem
        let staging = try StateSyncStaging.begin(fileSystem: fileSystem, dataDirectory: Self.target, offer: source.offer, manifestBytes: source.manifestBytes)
        let files = source.manifest.files.filter { $0.sizeBytes >= 64 }
        try #require(files.count >= 2)
        for file in files.prefix(2) {
            try staging.writeChunk(path: file.path, offset: 0, bytes: try fileSystem.readFile(SnapshotTests.snapshot + "/" + file.path))
            #expect(try staging.checkFile(path: file.path))
        }
        // "Lane" copies sharing the staged inodes, as an install's links do.
        try fileSystem.createDirectories("/lane-links")
        for (index, file) in files.prefix(2).enumerated() {
            try fileSystem.link(staging.snapshotPath + "/" + file.path, to: "/lane-links/\(index)")
        }
        // The first no longer checks (rot through either name): load replaces it.
        let handle = try fileSystem.openFile("/lane-links/0", options: .readWrite)
        try handle.write([0xA5], at: 10)
        try handle.sync()
        try handle.close()
        let laneBytes = try fileSystem.readFile("/lane-links/0")
        let (loaded, staged) = try #require(try StateSyncStaging.load(fileSystem: fileSystem, dataDirectory: Self.target))
        #expect(!staged.verifiedPaths.contains(files[0].path) && staged.verifiedPaths.contains(files[1].path))
        #expect(staged.stagedChunks[files[0].path] == nil, "no chunk of the linked file is kept to be completed in place")
        #expect(try fileSystem.readFile("/lane-links/0") == laneBytes)
        #expect(try fileSystem.status(staging.snapshotPath + "/" + files[0].path)?.linkCount == 1)
        // Discarding the second: the lane's file keeps its bytes.
        let second = try fileSystem.readFile("/lane-links/1")
        try loaded.discardFile(path: files[1].path)
        #expect(try fileSystem.readFile("/lane-links/1") == second)
        #expect(try fileSystem.status(staging.snapshotPath + "/" + files[1].path)?.sizeBytes == 0)
    }

    @Test func journalLinesRoundTripAndRefuseDamage() {
        let entries: [StateSyncStaging.JournalEntry] = [
            .chunk(path: "lanes/lane-0001/0 1|2.sst", offset: 4_194_304, count: 17, crc: 0xDEAD_BEEF),
            .verified(path: "lanes/lane-0000/CURRENT"), .discarded(path: "lanes/lane-0002/a b"),
        ]
        for entry in entries {
            let line = entry.line()
            #expect(line.last == 0x0A)
            let text = Substring(decoding: line.dropLast(), as: UTF8.self)
            #expect(StateSyncStaging.JournalEntry.decode(text) == entry)
            for index in line.indices.dropLast() {
                var damaged = line
                damaged[index] ^= 0x01
                #expect(StateSyncStaging.JournalEntry.decode(Substring(decoding: damaged.dropLast(), as: UTF8.self)) == nil, "a flipped bit at \(index)")
            }
        }
    }

    /// A power loss at every operation of a download and install (lost unsynced writes, torn
    /// writes, lost directory entries), then the node's start: state sync again while the data
    /// directory has no genesis (resuming staging), else open the engine (rolling a restore
    /// forward) and state-sync again if it stands below the snapshot. Always at the snapshot.
    /// A stop after the install journalled its restore and before staging was removed: resuming
    /// finishes that restore and says the install is done (block sync follows), and staging —
    /// whose files may be the lanes' by hard link — is removed, never downloaded or installed again.
    @Test func resumingAfterAStopInsideTheInstallFinishesItAndNeverInstallsAgain() throws {
        let pristine = try Self.source()
        var progress = Progress()
        _ = try Self.stage(pristine.fileSystem, pristine, progress: &progress)
        let measured = pristine.fileSystem.clone()
        let start = measured.operationCount
        _ = try Self.download(measured, pristine, progress: &progress)
        var finishedInstalls = 0
        for offset in 1...(measured.operationCount - start) {
            let fileSystem = pristine.fileSystem.clone()
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + offset)
            var again = Progress()
            _ = try? Self.download(fileSystem, pristine, progress: &again)
            fileSystem.crash(.processCrash)
            let journalled = try fileSystem.exists(Self.target + "/" + RestoreJournal.fileName)
            // Staging still vouched for by its offer (a stop inside its removal leaves less).
            let stagingLeft = StateSyncStaging.stagedOffer(fileSystem: fileSystem, dataDirectory: Self.target) != nil
            // The floor as both drivers take it: the height the directory stands at before resuming
            // (when that cannot be read — lanes not yet in place, no journal — they open the engine
            // first: `crashAtEveryOperation…` covers that).
            let floor =
                journalled
                ? try StateSyncStaging.localHeight(fileSystem: fileSystem, dataDirectory: Self.target, walDirectory: nil)
                : (try? StateSyncStaging.localHeight(fileSystem: fileSystem, dataDirectory: Self.target, walDirectory: nil)) ?? 0
            // The install got as far as its restore: journalled, or finished with staging still there.
            let installDone = journalled || (stagingLeft && floor == pristine.offer.height)
            let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: Self.target)
            let resumption = try StateSyncStaging.resume(
                fileSystem: fileSystem, dataDirectory: Self.target, walDirectory: nil, heightFloor: floor, clock: ManualClock())
            try lock.unlock()
            if case .installed(let download) = resumption {
                #expect(installDone, "only an install that reached its restore is finished (operation \(offset))")
                #expect(download.offer == pristine.offer)
                #expect(!(try fileSystem.exists(StateSyncStaging.root(Self.target))), "staging is removed (operation \(offset))")
                try Self.expectAtSnapshot(fileSystem, pristine, "install finished by resume after operation \(offset)")
                finishedInstalls += 1
            } else if case .nothingStaged(let heightFloor) = resumption {
                // A stop inside staging's removal leaves what `load` cannot vouch for: removed,
                // and the floor already stands at the snapshot, so block sync follows all the same.
                #expect(!journalled && (!installDone || heightFloor >= pristine.offer.height), "operation \(offset)")
            } else {
                #expect(!installDone, "an install that reached its restore is never resumed as a download (operation \(offset))")
            }
        }
        #expect(finishedInstalls > 0, "some stop fell between the journal and its removal")
    }

    @Test func crashAtEveryOperationOfADownloadAndInstall() throws {
        let pristine = try Self.source()
        let whole = pristine.fileSystem.clone()
        let start = whole.operationCount
        var progress = Progress()
        try Self.download(whole, pristine, progress: &progress)
        let total = whole.operationCount - start
        var resumed = 0
        for offset in 1...total {
            let fileSystem = pristine.fileSystem.clone()
            let source = Source(fileSystem: fileSystem, model: pristine.model, manifest: pristine.manifest, manifestBytes: pristine.manifestBytes, offer: pristine.offer)
            fileSystem.setPlan(FaultPlan(rates: [.lostUnsyncedWrites: 0.5, .tornWrites: 0.3, .lostDirectoryEntries: 0.5]))
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + offset)
            var first = Progress()
            _ = try? Self.download(fileSystem, source, progress: &first)
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            var again = Progress()
            if !(try fileSystem.exists(Self.target + "/" + Genesis.fileName)) {
                try Self.download(fileSystem, source, progress: &again)
            } else {
                let engine = try Engine(fileSystem: fileSystem, configuration: SnapshotTests.configuration(dataDirectory: Self.target), clock: ManualClock())
                let height = engine.stateRoots().height
                try engine.close()
                if height < 30 { try Self.download(fileSystem, source, progress: &again) }
            }
            if again.resumedWithChunks { resumed += 1 }
            try Self.expectAtSnapshot(fileSystem, source, "crash at download operation \(offset)")
        }
        #expect(resumed >= total / 4, "most crashes left staged chunks that were kept (\(resumed) of \(total))")
        print("state-sync staging: \(total) crash points, \(resumed) resumed with staged chunks")
    }
}
