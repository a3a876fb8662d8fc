@testable import Engine
import FaultFS
import Testing

/// RocksDB running on the engine's FileSystem through the C++ bridge.
@Suite("RocksDB on the FileSystem bridge")
struct RocksDBBridgeTests {
    static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }
    static func value(_ index: Int) -> [UInt8] { Array(repeating: UInt8(truncatingIfNeeded: index), count: 20 + index % 50) }

    static func fill(_ database: RocksDatabase, _ range: Range<Int>) throws {
        let batch = RocksWriteBatch()
        for index in range { batch.put(key(index), value(index)) }
        try database.write(batch)
    }

    /// RocksDB takes a MANIFEST record it read badly at the end of the file for a torn write,
    /// drops it and writes a new MANIFEST without it, so the bridge reads MANIFEST and CURRENT
    /// until two reads agree (the engine sweep saw one flipped bit roll a lane back for good).
    @Test func manifestAndCurrentAreReadUntilTwoReadsAgree() throws {
        #expect(RocksDBFileSystemBridge.needsStableRead("/data/lanes/lane-0000/MANIFEST-000012"))
        #expect(RocksDBFileSystemBridge.needsStableRead("/data/lanes/lane-0000/CURRENT"))
        #expect(!RocksDBFileSystemBridge.needsStableRead("/data/lanes/lane-0000/000012.sst"))
        let fileSystem = SimulatedFileSystem(seed: 3, plan: .none)
        try fileSystem.createDirectory("/d")
        let content = (0..<700).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let file = try fileSystem.openFile("/d/MANIFEST-000001", options: .createNew)
        try file.write(content, at: 0)
        try file.sync()
        try file.close()
        fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.05, .misdirectedReads: 0.05]))
        for _ in 0..<40 {
            let handle = try fileSystem.openFile("/d/MANIFEST-000001", options: .readOnly)
            #expect(try RocksDBFileSystemBridge.stableContent(handle, sizeBytes: 700) == content)
            try handle.close()
        }
        #expect(fileSystem.injectedFaultCounts.values.reduce(0, +) >= 3, "reads were damaged: \(fileSystem.injectedFaultCounts)")
    }

    @Test func roundTripsOnTheSimulatedFileSystemAndReopens() throws {
        let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
        try fileSystem.createDirectories("/lanes")
        var environment = RocksDBEnvironment(fileSystem: fileSystem)
        var database = try RocksDatabase(path: "/lanes/lane-0", environment: environment)
        try Self.fill(database, 0..<100)
        let deletes = RocksWriteBatch()
        deletes.delete(Self.key(7))
        try database.write(deletes)
        #expect(try database.get(Self.key(5)) == Self.value(5))
        #expect(try database.get(Self.key(7)) == nil)
        try database.flush()
        database.close()
        #expect(environment.openFileCount == 0, "every file RocksDB opened was closed")
        #expect(try fileSystem.listDirectory("/lanes/lane-0").contains("CURRENT"))
        environment = RocksDBEnvironment(fileSystem: fileSystem)
        database = try RocksDatabase(path: "/lanes/lane-0", environment: environment)
        var scanned: [[UInt8]] = []
        try database.scan(prefix: Array("key-".utf8)) { key, _ in scanned.append(key) }
        #expect(scanned.count == 99)
        #expect(try database.get(Self.key(99)) == Self.value(99))
        database.close()
    }

    @Test func worksOnThePosixFileSystemToo() throws {
        let (fileSystem, base) = try FileSystemUnderTestForEngine.posixTemporaryDirectory()
        defer { _ = system("rm -rf '\(base)'") }
        let environment = RocksDBEnvironment(fileSystem: fileSystem)
        let database = try RocksDatabase(path: base + "/db", environment: environment)
        try Self.fill(database, 0..<10)
        try database.flush()
        #expect(try database.get(Self.key(3)) == Self.value(3))
        database.close()
    }

    @Test func secondOpenOfTheSameDatabaseIsRefusedByTheLock() throws {
        let fileSystem = SimulatedFileSystem(seed: 2, plan: .none)
        let environment = RocksDBEnvironment(fileSystem: fileSystem)
        let database = try RocksDatabase(path: "/db", environment: environment)
        #expect(throws: RocksDBError.self) { try RocksDatabase(path: "/db", environment: environment) }
        database.close()
    }

    @Test func afterPowerLossRocksDBKeepsExactlyWhatItFlushed() throws {
        for seed in UInt64(1)...8 {
            let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
            // RocksDB syncs the files and entries inside its directory, not the directory's own
            // entry in its parent: the engine creates lane directories durably first.
            try fileSystem.createDirectories("/db")
            let environment = RocksDBEnvironment(fileSystem: fileSystem)
            let database = try RocksDatabase(path: "/db", environment: environment)
            try Self.fill(database, 0..<50)
            try database.flush()
            try Self.fill(database, 50..<80)
            fileSystem.setPlan(FaultPlan(rates: [
                .lostUnsyncedWrites: 0.7, .tornWrites: 0.3, .lostDirectoryEntries: 0.7, .reorderedWrites: 0.5,
            ]))
            fileSystem.crash(.powerLoss)
            database.close()  // closing never flushes, so it writes nothing
            fileSystem.setPlan(.none)
            let reopenedEnvironment = RocksDBEnvironment(fileSystem: fileSystem)
            let reopened = try RocksDatabase(path: "/db", environment: reopenedEnvironment)
            for index in 0..<80 {
                let expected = index < 50 ? Self.value(index) : nil
                let got = try reopened.get(Self.key(index))
                #expect(got == expected, "seed \(seed) key \(index): \(got == nil ? "missing" : "present")")
            }
            reopened.close()
        }
    }

    @Test func damageInRocksDBFilesSurfacesAsErrorsNeverAsWrongValues() throws {
        var errorsSeen = 0
        for seed in UInt64(1)...24 {
            let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
            let environment = RocksDBEnvironment(fileSystem: fileSystem)
            let database = try RocksDatabase(path: "/db", environment: environment)
            try Self.fill(database, 0..<200)
            try database.flush()
            database.close()
            // Rot one bit in every file at rest.
            fileSystem.setPlan(FaultPlan(rates: [.bitRotAtRest: 1]))
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            let reopenedEnvironment = RocksDBEnvironment(fileSystem: fileSystem)
            let reopened: RocksDatabase
            do {
                reopened = try RocksDatabase(path: "/db", environment: reopenedEnvironment)
            } catch {
                errorsSeen += 1
                continue
            }
            for index in 0..<200 {
                do {
                    let got = try reopened.get(Self.key(index))
                    #expect(got == Self.value(index), "seed \(seed): key \(index) read back wrong")
                } catch {
                    errorsSeen += 1
                    break
                }
            }
            reopened.close()
        }
        #expect(errorsSeen > 0, "bit rot in every file was never noticed")
    }
}

enum FileSystemUnderTestForEngine {
    static func posixTemporaryDirectory() throws -> (PosixFileSystem, String) {
        var template = Array("/tmp/rivellum-engine-test-XXXXXX".utf8CString)
        let base = template.withUnsafeMutableBufferPointer { buffer -> String in
            guard let result = mkdtemp(buffer.baseAddress!) else { fatalError("mkdtemp failed") }
            return String(cString: result)
        }
        return (PosixFileSystem(), base)
    }
}

#if canImport(Glibc)
import Glibc
#endif
