import FaultFS
import Testing

/// Each fault family of `SimulatedFileSystem` shows its documented semantics.
@Suite("SimulatedFileSystem faults")
struct SimulatedFaultTests {
    static let sector = 512

    /// A file system with `base` created and made durable, then the given plan switched on.
    func makeFileSystem(seed: UInt64 = 7, plan: FaultPlan) throws -> SimulatedFileSystem {
        let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
        try fileSystem.createDirectory("/base")
        try fileSystem.syncDirectory("/")
        fileSystem.setPlan(plan)
        return fileSystem
    }

    /// Creates `/base/<name>` with `bytes`, the file synced and its entry durable.
    func durableFile(_ fileSystem: SimulatedFileSystem, _ name: String, _ bytes: [UInt8]) throws {
        let file = try fileSystem.openFile("/base/" + name, options: .createNew)
        try file.write(bytes, at: 0)
        try file.sync()
        try file.close()
        try fileSystem.syncDirectory("/base")
    }

    @Test func unsyncedWritesAreLostAtPowerLossButSyncedOnesSurvive() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.lostUnsyncedWrites: 1]))
        try durableFile(fileSystem, "f", [1, 1, 1, 1])
        let file = try fileSystem.openFile("/base/f", options: .readWrite)
        try file.write([2, 2], at: 0)
        try file.append([3, 3])
        #expect(try file.read(at: 0, count: 8) == [2, 2, 1, 1, 3, 3], "the page cache shows unsynced data")
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.readFile("/base/f") == [1, 1, 1, 1])
    }

    @Test func processCrashKeepsThePageCache() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.lostUnsyncedWrites: 1, .lostDirectoryEntries: 1]))
        let file = try fileSystem.openFile("/base/new", options: .createNew)
        try file.write([5, 6], at: 0)
        fileSystem.crash(.processCrash)
        #expect(try fileSystem.readFile("/base/new") == [5, 6])
    }

    @Test func withNoFaultsPowerLossKeepsEveryCompletedWrite() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        let file = try fileSystem.openFile("/base/new", options: .createNew)
        try file.write([5, 6], at: 0)
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.readFile("/base/new") == [5, 6])
    }

    @Test func createdFileSurvivesOnlyAfterItsDirectoryIsSynced() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        try fileSystem.createDirectory("/base/unsynced")
        try fileSystem.createDirectory("/base/synced")
        try fileSystem.syncDirectory("/base")
        fileSystem.setPlan(FaultPlan(rates: [.lostDirectoryEntries: 1]))
        for directory in ["unsynced", "synced"] {
            let file = try fileSystem.openFile("/base/\(directory)/f", options: .createNew)
            try file.write([1], at: 0)
            try file.sync()
            try file.close()
        }
        try fileSystem.syncDirectory("/base/synced")
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.listDirectory("/base/unsynced") == [])
        #expect(try fileSystem.readFile("/base/synced/f") == [1])
    }

    @Test func newDirectoryVanishesWithItsFilesWithoutParentSync() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.lostDirectoryEntries: 1]))
        try fileSystem.createDirectory("/base/new")
        let file = try fileSystem.openFile("/base/new/f", options: .createNew)
        try file.write([1], at: 0)
        try file.sync()
        try fileSystem.syncDirectory("/base/new")
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.status("/base/new") == nil)
    }

    @Test func unlinkAndRenameWithoutDirectorySyncAreUndoneByPowerLoss() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.lostDirectoryEntries: 1]))
        try durableFile(fileSystem, "a", [1])
        try durableFile(fileSystem, "b", [2])
        try fileSystem.removeFile("/base/a")
        try fileSystem.rename("/base/b", to: "/base/c")
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.listDirectory("/base") == ["a", "b"])
        #expect(try fileSystem.readFile("/base/a") == [1])
    }

    /// A file created and unlinked since the directory's last sync: a power loss that keeps the
    /// create and loses the unlink brings it back with its synced data (the engine sweep found
    /// the simulator trapping here: the unlinked file's inode had been collected).
    @Test func aCreateKeptAndAnUnlinkLostBringsTheFileBack() throws {
        var outcomes: Set<Bool> = []
        for seed in UInt64(0)..<40 {
            let fileSystem = try makeFileSystem(seed: seed, plan: .none)
            fileSystem.setPlan(FaultPlan(rates: [.lostDirectoryEntries: 0.5]))
            let file = try fileSystem.openFile("/base/x", options: .createNew)
            try file.write([7], at: 0)
            try file.sync()
            try file.close()
            try fileSystem.removeFile("/base/x")
            fileSystem.crash(.powerLoss)
            let exists = try fileSystem.exists("/base/x")
            if exists { #expect(try fileSystem.readFile("/base/x") == [7], "seed \(seed)") }
            outcomes.insert(exists)
        }
        #expect(outcomes == [true, false], "both outcomes occur over 40 seeds")
    }

    /// A process that crashed between a mkdir and the sync of its parent left an entry only the
    /// cache holds; createDirectories on the next start makes it durable (the WAL sweep found a
    /// whole partition directory, with acknowledged records, lost at a later power loss).
    @Test func createDirectoriesMakesAnExistingButUnsyncedEntryDurable() throws {
        let fileSystem = SimulatedFileSystem(seed: 5, plan: .none)
        try fileSystem.createDirectory("/wal")
        fileSystem.crash(.processCrash)
        try fileSystem.createDirectories("/wal/lane-0000")
        let file = try fileSystem.openFile("/wal/lane-0000/f", options: .createNew)
        try file.write([1], at: 0)
        try file.sync()
        try file.close()
        try fileSystem.syncDirectory("/wal/lane-0000")
        fileSystem.setPlan(FaultPlan(rates: [.lostDirectoryEntries: 1]))
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.readFile("/wal/lane-0000/f") == [1])
    }

    @Test func atomicRenameIsAllOrNothingAndNonAtomicRenameIsNot() throws {
        var atomicOutcomes: Set<[String]> = []
        var nonAtomicOutcomes: Set<[String]> = []
        for seed in UInt64(1)...64 {
            for nonAtomic in [false, true] {
                var rates: [FaultFamily: Double] = [.lostDirectoryEntries: 0.5]
                if nonAtomic { rates[.nonAtomicRename] = 1 }
                let fileSystem = try makeFileSystem(seed: seed, plan: FaultPlan(rates: rates))
                try durableFile(fileSystem, "source", [1])
                try fileSystem.rename("/base/source", to: "/base/target")
                fileSystem.crash(.powerLoss)
                let names = try fileSystem.listDirectory("/base")
                if nonAtomic { nonAtomicOutcomes.insert(names) } else { atomicOutcomes.insert(names) }
            }
        }
        #expect(atomicOutcomes == [["source"], ["target"]])
        #expect(nonAtomicOutcomes.contains(["source", "target"]) || nonAtomicOutcomes.contains([]))
    }

    @Test func failedSyncDropsDirtyPagesAndALaterSyncSucceedsWithoutThem() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.syncErrors: 1]))
        fileSystem.setFaultsEnabled(false)
        try durableFile(fileSystem, "f", [1, 1])
        fileSystem.setFaultsEnabled(true)
        let file = try fileSystem.openFile("/base/f", options: .readWrite)
        try file.write([9, 9], at: 0)
        let failure = #expect(throws: FileSystemError.self) { try file.sync() }
        #expect(failure?.code == .syncFailed)
        #expect(failure?.injected == true)
        #expect(try file.read(at: 0, count: 2) == [9, 9], "the cache still shows the lost data")
        fileSystem.setPlan(.none)
        try file.sync()
        fileSystem.crash(.powerLoss)
        #expect(try fileSystem.readFile("/base/f") == [1, 1], "the later sync wrote nothing")
    }

    @Test func droppingCleanPagesShowsWhatTheMediaHoldsAndKeepsDirtyOnes() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.syncErrors: 1]))
        fileSystem.setFaultsEnabled(false)
        try durableFile(fileSystem, "f", [1, 1, 1, 1])
        fileSystem.setFaultsEnabled(true)
        let file = try fileSystem.openFile("/base/f", options: .readWrite)
        try file.write([9, 9], at: 0)
        #expect(throws: FileSystemError.self) { try file.sync() }
        fileSystem.setPlan(.none)
        // A dirty write after the failed sync stays; the pages marked clean go back to the media.
        try file.write([7], at: 3)
        #expect(try file.read(at: 0, count: 4) == [9, 9, 1, 7])
        try file.dropCachedPages()
        #expect(try file.read(at: 0, count: 4) == [1, 1, 1, 7])
        try file.close()
    }

    @Test func tornWritesMixNewOldAndGarbageSectors() throws {
        let newBytes = [UInt8](repeating: 0xAB, count: 8 * Self.sector)
        var sawNew = false
        var sawOld = false
        var sawGarbage = false
        for seed in UInt64(1)...16 {
            let fileSystem = try makeFileSystem(seed: seed, plan: FaultPlan(rates: [.tornWrites: 1]))
            try durableFile(fileSystem, "f", [UInt8](repeating: 0x11, count: 8 * Self.sector))
            let file = try fileSystem.openFile("/base/f", options: .readWrite)
            try file.write(newBytes, at: 0)
            fileSystem.crash(.powerLoss)
            let image = try fileSystem.readFile("/base/f")
            #expect(image.count == 8 * Self.sector)
            for start in stride(from: 0, to: image.count, by: Self.sector) {
                let sector = image[start..<start + Self.sector]
                if sector.allSatisfy({ $0 == 0xAB }) {
                    sawNew = true
                } else if sector.allSatisfy({ $0 == 0x11 }) {
                    sawOld = true
                } else {
                    sawGarbage = true
                }
            }
        }
        #expect(sawNew && sawOld && sawGarbage)
    }

    @Test func reorderedWritesCanLetAnOlderOverlappingWriteWin() throws {
        var olderWon = false
        for seed in UInt64(1)...32 {
            for reorder in [false, true] {
                let plan = reorder ? FaultPlan(rates: [.reorderedWrites: 1]) : .none
                let fileSystem = try makeFileSystem(seed: seed, plan: plan)
                try durableFile(fileSystem, "f", [0])
                let file = try fileSystem.openFile("/base/f", options: .readWrite)
                try file.write([1], at: 0)
                try file.write([2], at: 0)
                fileSystem.crash(.powerLoss)
                let value = try fileSystem.readFile("/base/f")
                if !reorder { #expect(value == [2]) }
                if reorder && value == [1] { olderWon = true }
            }
        }
        #expect(olderWon)
    }

    @Test func misdirectedWriteLandsElsewhereOnTheMedia() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.misdirectedWrites: 1]))
        fileSystem.setFaultsEnabled(false)
        try durableFile(fileSystem, "f", [UInt8](repeating: 0, count: 16 * Self.sector))
        fileSystem.setFaultsEnabled(true)
        let file = try fileSystem.openFile("/base/f", options: .readWrite)
        let record = [UInt8](repeating: 0x5A, count: Self.sector)
        try file.write(record, at: 4 * UInt64(Self.sector))
        try file.sync()
        #expect(try file.read(at: 4 * UInt64(Self.sector), count: Self.sector) == record, "cache is right")
        fileSystem.crash(.powerLoss)
        let image = try fileSystem.readFile("/base/f")
        #expect(Array(image[4 * Self.sector..<5 * Self.sector]) != record)
        let landed = stride(from: 0, to: image.count, by: Self.sector).filter {
            image[$0..<min(image.count, $0 + Self.sector)].elementsEqual(record)
        }
        #expect(landed.count == 1)
        #expect(landed.first.map { $0 != 4 * Self.sector } == true)
    }

    @Test func misdirectedReadReturnsAnotherSector() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        var content: [UInt8] = []
        for sector in 0..<16 { content += [UInt8](repeating: UInt8(sector), count: Self.sector) }
        try durableFile(fileSystem, "f", content)
        fileSystem.setPlan(FaultPlan(rates: [.misdirectedReads: 1]))
        let file = try fileSystem.openFile("/base/f", options: .readOnly)
        let bytes = try file.read(at: 8 * UInt64(Self.sector), count: Self.sector)
        #expect(bytes != [UInt8](repeating: 8, count: Self.sector))
        #expect(fileSystem.traceEvents.last?.injected == ["misdirected_reads"])
    }

    /// Misdirection changes what a read returns, never how much: a short read would look like
    /// the end of the file, which is a different fault (and one RocksDB would silently trust).
    @Test func misdirectedReadNearTheEndReturnsTheFullLengthWithGarbage() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        let content = [UInt8](repeating: 0xAB, count: 3 * Self.sector)
        try durableFile(fileSystem, "f", content)
        fileSystem.setPlan(FaultPlan(rates: [.misdirectedReads: 1]))
        for round in 0..<20 {
            let bytes = try fileSystem.readFile("/base/f")
            #expect(bytes.count == content.count, "round \(round): \(bytes.count) bytes")
            #expect(bytes != content, "round \(round): every read is misdirected")
        }
    }

    /// Faults and crash points can be left out by number while the random stream stays
    /// aligned: the faults after a suppressed one fire exactly where they did before.
    @Test func suppressedFaultsAndCrashPointsAreDrawnButNotApplied() throws {
        func run(suppressing faults: Set<UInt64>, crashPoints: Set<UInt64>) throws -> (events: [TraceEvent], drawn: UInt64, halted: Bool) {
            let fileSystem = SimulatedFileSystem(seed: 11, plan: FaultPlan(rates: [.writeErrors: 0.3]))
            fileSystem.suppress(faults: faults, crashPoints: crashPoints)
            try fileSystem.createDirectory("/d")
            let file = try fileSystem.openFile("/d/f", options: .createNew)
            for index in 0..<40 { _ = try? file.write([UInt8(index)], at: UInt64(index)) }
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1)
            _ = try? file.write([0], at: 0)
            return (fileSystem.traceEvents, fileSystem.faultsDrawn, fileSystem.isHalted)
        }
        let all = try run(suppressing: [], crashPoints: [])
        #expect(all.drawn >= 3)
        #expect(all.halted)
        let failedWrites = all.events.filter { $0.injected == ["write_errors"] }.map(\.index)
        let without2 = try run(suppressing: [2], crashPoints: [1])
        #expect(!without2.halted, "crash point 1 was left out")
        #expect(without2.drawn == all.drawn, "a suppressed fault is still drawn")
        let failedWithout2 = without2.events.filter { $0.injected == ["write_errors"] }.map(\.index)
        #expect(failedWithout2 == failedWrites.enumerated().filter { $0.offset != 1 }.map(\.element))
    }

    @Test func bitRotOnReadFlipsExactlyOneBit() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        let content = [UInt8](repeating: 0, count: 4096)
        try durableFile(fileSystem, "f", content)
        fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 1]))
        let bytes = try fileSystem.readFile("/base/f")
        #expect(bytes.reduce(0) { $0 + $1.nonzeroBitCount } == 1)
        fileSystem.setPlan(.none)
        #expect(try fileSystem.readFile("/base/f") == content, "rot on read is transient")
    }

    @Test func bitRotAtRestFlipsOneDurableBit() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        let content = [UInt8](repeating: 0, count: 4096)
        try durableFile(fileSystem, "f", content)
        fileSystem.setPlan(FaultPlan(rates: [.bitRotAtRest: 1]))
        fileSystem.crash(.powerLoss)
        fileSystem.setPlan(.none)
        let bytes = try fileSystem.readFile("/base/f")
        #expect(bytes.reduce(0) { $0 + $1.nonzeroBitCount } == 1)
    }

    @Test func readAndWriteErrorsAreInjectedEIO() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        try durableFile(fileSystem, "f", [1, 2, 3])
        let file = try fileSystem.openFile("/base/f", options: .readWrite)
        fileSystem.setPlan(FaultPlan(rates: [.readErrors: 1, .writeErrors: 1]))
        let readError = #expect(throws: FileSystemError.self) { try file.read(at: 0, count: 3) }
        #expect(readError?.code == .ioError)
        #expect(readError?.injected == true)
        #expect(readError?.offset == 0)
        let writeError = #expect(throws: FileSystemError.self) { try file.write([9], at: 1) }
        #expect(writeError?.code == .ioError)
        fileSystem.setPlan(.none)
        #expect(try file.read(at: 0, count: 3) == [1, 2, 3], "a failed write wrote nothing")
    }

    @Test func noSpaceFromCapacityAndFromInjection() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(capacityBytes: 1_000))
        let file = try fileSystem.openFile("/base/f", options: .createNew)
        try file.write([UInt8](repeating: 1, count: 900), at: 0)
        let full = #expect(throws: FileSystemError.self) { try file.append([UInt8](repeating: 1, count: 200)) }
        #expect(full?.code == .noSpace)
        #expect(try file.size() == 900)
        try file.write([2], at: 0)
        fileSystem.setPlan(FaultPlan(rates: [.noSpace: 1]))
        let injected = #expect(throws: FileSystemError.self) { try fileSystem.openFile("/base/g", options: .createNew) }
        #expect(injected?.code == .noSpace)
        #expect(injected?.injected == true)
    }

    @Test func shortWriteStoresASectorPrefixThenFails() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.shortWrites: 1]))
        let file = try fileSystem.openFile("/base/f", options: .createNew)
        let error = #expect(throws: FileSystemError.self) { try file.write([UInt8](repeating: 7, count: 4096), at: 0) }
        #expect(error?.code == .ioError)
        let size = try file.size()
        #expect(size < 4096)
        #expect(size % UInt64(Self.sector) == 0)
    }

    @Test func interruptedCloseIsSurfacedAndOtherCallsRetry() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.interrupts: 1]))
        let file = try fileSystem.openFile("/base/f", options: .createNew)
        try file.write([1], at: 0)
        #expect(fileSystem.traceEvents.contains { $0.outcome == "EINTR, retried" && $0.injected == ["interrupts"] })
        let closeError = #expect(throws: FileSystemError.self) { try file.close() }
        #expect(closeError?.code == .interrupted)
        fileSystem.setPlan(.none)
        #expect(try fileSystem.readFile("/base/f") == [1])
    }

    @Test func crashAtOperationHaltsUntilCrashAndKillsOldHandles() throws {
        let fileSystem = try makeFileSystem(plan: .none)
        let file = try fileSystem.openFile("/base/f", options: .createNew)
        let lock = try fileSystem.lockFile("/base/LOCK")
        let next = fileSystem.operationCount + 2
        fileSystem.scheduleCrash(atOperation: next)
        try file.write([1], at: 0)
        let crashPoint = #expect(throws: FileSystemError.self) { try file.write([2], at: 1) }
        #expect(crashPoint?.code == .crashed)
        #expect(crashPoint?.injected == true)
        #expect(fileSystem.isHalted)
        #expect(throws: FileSystemError.self) { try fileSystem.listDirectory("/base") }
        #expect(fileSystem.operationCount == next, "calls on a halted machine are not counted")
        fileSystem.crash(.powerLoss)
        #expect(!fileSystem.isHalted)
        let stale = #expect(throws: FileSystemError.self) { try file.read(at: 0, count: 1) }
        #expect(stale?.code == .crashed)
        #expect(try fileSystem.readFile("/base/f") == [1], "no faults on: the completed write survived")
        let relock = try fileSystem.lockFile("/base/LOCK")
        try relock.unlock()
        try lock.unlock()
    }

    /// Runs a mixed workload under a swarm plan with crashes and returns the trace hash.
    func traceHash(seed: UInt64) throws -> UInt64 {
        var random = DeterministicRandom(seed: seed)
        let plan = FaultPlan.swarm(random: &random, onProbability: 0.6, rateMin: 0.05, rateMax: 0.3)
        let fileSystem = SimulatedFileSystem(seed: seed, plan: plan)
        for round in 0..<20 {
            do {
                try fileSystem.createDirectories("/d\(round % 3)")
                let file = try fileSystem.openFile("/d\(round % 3)/f\(round % 5)", options: .createOrOpen)
                try file.append([UInt8](repeating: UInt8(round), count: random.int(in: 1...2000)))
                if random.chance(0.5) { try file.sync() }
                _ = try file.read(at: 0, count: 100)
                try file.close()
                if random.chance(0.3) { try fileSystem.syncDirectory("/d\(round % 3)") }
            } catch {
                // Injected faults are expected; the trace records them.
            }
            if round % 7 == 6 { fileSystem.crash(.powerLoss) }
        }
        return fileSystem.traceHash
    }

    @Test func sameSeedSameTraceHashOtherSeedOtherHash() throws {
        #expect(try traceHash(seed: 42) == traceHash(seed: 42))
        #expect(try traceHash(seed: 42) != traceHash(seed: 43))
    }

    @Test func injectedFaultsAreTaggedInTheTrace() throws {
        let fileSystem = try makeFileSystem(plan: FaultPlan(rates: [.writeErrors: 1]))
        let file = try fileSystem.openFile("/base/f", options: .createNew)
        _ = try? file.write([1], at: 0)
        let event = try #require(fileSystem.traceEvents.last)
        #expect(event.operation == "pwrite")
        #expect(event.outcome == "error:ioError")
        #expect(event.injected == ["write_errors"])
        #expect(event.jsonLine.contains("\"injected\":[\"write_errors\"]"))
    }
}
