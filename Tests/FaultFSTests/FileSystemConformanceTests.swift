import FaultFS
import Foundation
import Glibc
import Synchronization
import Testing

/// The two implementations under one contract: a real temporary directory, and the simulated
/// file system with every fault off.
enum FileSystemUnderTest: String, CaseIterable, CustomTestStringConvertible {
    case posix
    case simulated

    var testDescription: String { rawValue }

    /// Removes what a test left in its base directory (the real temporary directory only).
    func cleanUp(_ fileSystem: any FileSystem, _ base: String) {
        guard self == .posix else { return }
        func remove(_ path: String) {
            guard let status = try? fileSystem.status(path) else { return }
            if status.kind == .directory {
                for name in (try? fileSystem.listDirectory(path)) ?? [] { remove(path + "/" + name) }
                try? fileSystem.removeDirectory(path)
            } else {
                try? fileSystem.removeFile(path)
            }
        }
        remove(base)
    }

    /// A fresh file system and an empty base directory in it.
    func make() throws -> (any FileSystem, String) {
        switch self {
        case .posix:
            var template = Array("/tmp/rivellum-fs-test-XXXXXX".utf8CString)
            let base = template.withUnsafeMutableBufferPointer { buffer -> String in
                guard let result = mkdtemp(buffer.baseAddress!) else { fatalError("mkdtemp failed") }
                return String(cString: result)
            }
            return (PosixFileSystem(), base)
        case .simulated:
            let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
            try fileSystem.createDirectory("/base")
            return (fileSystem, "/base")
        }
    }
}

@Suite("FileSystem conformance")
struct FileSystemConformanceTests {
    @Test(arguments: FileSystemUnderTest.allCases)
    func writeReadRoundTripAndZeroFilledGap(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/a", options: .createNew)
        try file.write([1, 2, 3], at: 0)
        try file.write([9, 9], at: 10)
        #expect(try file.size() == 12)
        #expect(try file.read(at: 0, count: 12) == [1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 9, 9])
        #expect(try file.read(at: 11, count: 5) == [9])
        #expect(try file.read(at: 100, count: 5) == [])
        try file.sync()
        try file.fullSync()
        try file.close()
        #expect(try fileSystem.readFile(base + "/a").count == 12)
    }

    /// Dropping cached pages changes no data: dirty and synced bytes read the same after it.
    @Test(arguments: FileSystemUnderTest.allCases)
    func droppingCachedPagesChangesNoData(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/a", options: .createNew)
        try file.write([1, 2, 3], at: 0)
        try file.sync()
        try file.write([4, 5], at: 3)
        try file.dropCachedPages()
        #expect(try file.read(at: 0, count: 5) == [1, 2, 3, 4, 5])
        try file.close()
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func appendReturnsConsecutiveOffsets(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/log", options: .createNew)
        #expect(try file.append([1, 2, 3, 4]) == 0)
        #expect(try file.append([5]) == 4)
        try file.close()
        let reopened = try fileSystem.openFile(base + "/log", options: .readWrite)
        #expect(try reopened.append([6, 7]) == 5)
        #expect(try reopened.read(at: 0, count: 10) == [1, 2, 3, 4, 5, 6, 7])
        try reopened.close()
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func truncateShrinksAndExtendsWithZeros(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/t", options: .createNew)
        try file.write([1, 2, 3, 4, 5], at: 0)
        try file.truncate(to: 2)
        #expect(try file.read(at: 0, count: 10) == [1, 2])
        try file.truncate(to: 4)
        #expect(try file.read(at: 0, count: 10) == [1, 2, 0, 0])
        #expect(try file.append([7]) == 4)
        try file.close()
        let truncating = try fileSystem.openFile(
            base + "/t", options: OpenOptions(creation: .openExisting, writable: true, truncate: true))
        #expect(try truncating.size() == 0)
        try truncating.close()
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func openErrorsCarryTheirContext(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let missing = #expect(throws: FileSystemError.self) {
            try fileSystem.openFile(base + "/missing", options: .readOnly)
        }
        #expect(missing?.code == .notFound)
        #expect(missing?.path == base + "/missing")
        try fileSystem.openFile(base + "/exists", options: .createNew).close()
        let duplicate = #expect(throws: FileSystemError.self) {
            try fileSystem.openFile(base + "/exists", options: .createNew)
        }
        #expect(duplicate?.code == .alreadyExists)
        try fileSystem.createDirectory(base + "/dir")
        let directory = #expect(throws: FileSystemError.self) {
            try fileSystem.openFile(base + "/dir", options: .readWrite)
        }
        #expect(directory?.code == .wrongKind)
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func directoriesListSortedAndRemoveOnlyWhenEmpty(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        try fileSystem.createDirectory(base + "/d")
        #expect(throws: FileSystemError.self) { try fileSystem.createDirectory(base + "/d") }
        for name in ["c", "a", "b"] {
            try fileSystem.openFile(base + "/d/" + name, options: .createNew).close()
        }
        #expect(try fileSystem.listDirectory(base + "/d") == ["a", "b", "c"])
        let notEmpty = #expect(throws: FileSystemError.self) { try fileSystem.removeDirectory(base + "/d") }
        #expect(notEmpty?.code == .directoryNotEmpty)
        for name in ["a", "b", "c"] { try fileSystem.removeFile(base + "/d/" + name) }
        try fileSystem.syncDirectory(base + "/d")
        try fileSystem.removeDirectory(base + "/d")
        #expect(try fileSystem.status(base + "/d") == nil)
        let gone = #expect(throws: FileSystemError.self) { try fileSystem.removeFile(base + "/d") }
        #expect(gone?.code == .notFound)
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func renameReplacesTheTarget(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        try fileSystem.writeFileAtomically(base + "/old", bytes: [1])
        try fileSystem.writeFileAtomically(base + "/new", bytes: [2, 2])
        try fileSystem.rename(base + "/new", to: base + "/old")
        try fileSystem.syncDirectory(base)
        #expect(try fileSystem.readFile(base + "/old") == [2, 2])
        #expect(try fileSystem.exists(base + "/new") == false)
        let missing = #expect(throws: FileSystemError.self) {
            try fileSystem.rename(base + "/new", to: base + "/x")
        }
        #expect(missing?.code == .notFound)
    }

    /// Concurrent uploads into one store create the same directories at once: every caller succeeds.
    @Test(arguments: FileSystemUnderTest.allCases)
    func racingCreatorsOfTheSameDirectoriesAllSucceed(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        for round in 0..<20 {
            let failures = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: 4) { _ in
                do {
                    try fileSystem.createDirectories(base + "/r\(round)/objects/deep")
                } catch {
                    failures.withLock { $0 += 1 }
                }
            }
            #expect(failures.withLock { $0 } == 0, "round \(round)")
            #expect(try fileSystem.status(base + "/r\(round)/objects/deep")?.kind == .directory)
        }
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func hardLinksShareData(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/one", options: .createNew)
        try file.write([1, 2, 3], at: 0)
        try fileSystem.link(base + "/one", to: base + "/two")
        try file.write([7], at: 0)
        try file.close()
        #expect(try fileSystem.readFile(base + "/two") == [7, 2, 3])
        #expect(try fileSystem.status(base + "/one")?.linkCount == 2)
        try fileSystem.removeFile(base + "/one")
        #expect(try fileSystem.status(base + "/two")?.linkCount == 1)
        #expect(try fileSystem.readFile(base + "/two") == [7, 2, 3])
        let taken = #expect(throws: FileSystemError.self) { try fileSystem.link(base + "/two", to: base + "/two") }
        #expect(taken?.code == .alreadyExists)
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func statusReportsKindAndSize(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        #expect(try fileSystem.status(base + "/nothing") == nil)
        #expect(try fileSystem.status(base + "/no/such/parent") == nil)
        #expect(try fileSystem.status(base)?.kind == .directory)
        try fileSystem.writeFileAtomically(base + "/f", bytes: [1, 2, 3, 4])
        let status = try fileSystem.status(base + "/f")
        #expect(status?.kind == .file)
        #expect(status?.sizeBytes == 4)
        try fileSystem.createDirectories(base + "/x/y/z")
        #expect(try fileSystem.status(base + "/x/y/z")?.kind == .directory)
        try fileSystem.createDirectories(base + "/x/y/z")
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func lockIsExclusiveUntilReleased(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let lock = try fileSystem.lockFile(base + "/LOCK")
        let second = #expect(throws: FileSystemError.self) { try fileSystem.lockFile(base + "/LOCK") }
        #expect(second?.code == .locked)
        try lock.unlock()
        let again = try fileSystem.lockFile(base + "/LOCK")
        try again.unlock()
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func atomicWriteReplacesWholeContent(kind: FileSystemUnderTest) throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        try fileSystem.writeFileAtomically(base + "/manifest", bytes: Array(repeating: 1, count: 100))
        try fileSystem.writeFileAtomically(base + "/manifest", bytes: [2, 3])
        #expect(try fileSystem.readFile(base + "/manifest") == [2, 3])
        #expect(try fileSystem.listDirectory(base) == ["manifest"])
    }

    @Test(arguments: FileSystemUnderTest.allCases)
    func concurrentAppendsNeverOverlap(kind: FileSystemUnderTest) async throws {
        let (fileSystem, base) = try kind.make()
        defer { kind.cleanUp(fileSystem, base) }
        let file = try fileSystem.openFile(base + "/shared", options: .createNew)
        let writers = 4
        let appendsPerWriter = 50
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    for _ in 0..<appendsPerWriter {
                        _ = try? file.append([UInt8](repeating: UInt8(writer + 1), count: 16))
                    }
                }
            }
        }
        let bytes = try file.read(at: 0, count: writers * appendsPerWriter * 16 + 1)
        #expect(bytes.count == writers * appendsPerWriter * 16)
        for record in stride(from: 0, to: bytes.count, by: 16) {
            #expect(Set(bytes[record..<record + 16]).count == 1, "record at \(record) is interleaved")
        }
        try file.close()
    }
}
