import Dispatch
import Engine
import Foundation
import FaultFS
import Synchronization
import Testing

/// Group commit and sync failure. (Crashing a WAL workload at every operation is the
/// simulator's exhaustive mode: Tests/SimRunnerTests, ExhaustiveTests.)
@Suite("WAL group commit and sync failure")
struct WALCrashTests {
    static let recordCount = 200
    static let partition = WALPartitionID.lane(0)

    static func payload(_ index: Int) -> [UInt8] {
        let length = 20 + (index * 37) % 180
        return (0..<length).map { UInt8(truncatingIfNeeded: $0 &+ index &* 13) }
    }

    static func configuration(_ policy: FsyncPolicy) -> WALConfiguration {
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = policy
        configuration.segmentSizeBytes = 4_096
        configuration.syncBytes = 2_000
        configuration.syncIntervalMilliseconds = 50
        return configuration
    }

    @Test func groupCommitSharesSyncsAndNeverAcknowledgesEarly() throws {
        let simulated = SimulatedFileSystem(seed: 3, plan: .none, traceEventsMax: 1_000_000)
        // Each sync takes 2 ms, like a real device, so appenders pile up behind it.
        let fileSystem = SlowSyncFileSystem(base: simulated, syncDelayMicroseconds: 2_000)
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = .strict
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [Self.partition], configuration: configuration,
            clock: ManualClock())
        let writer = log.partition(Self.partition)
        let writers = 16
        let appendsPerWriter = 40
        let failures = FailureCounter()
        let group = DispatchGroup()
        for task in 0..<writers {
            let thread = Thread {
                for index in 0..<appendsPerWriter {
                    do {
                        let lsn = try writer.append([Self.payload(task * 1_000 + index)]).upperBound
                        let durable = try writer.commit(through: lsn)
                        if !durable { failures.count.withLock { $0 += 1 } }
                        simulated.recordEvent("ack", detail: "\(lsn)")
                    } catch {
                        failures.count.withLock { $0 += 1 }
                    }
                }
                group.leave()
            }
            group.enter()
            thread.start()
        }
        group.wait()
        #expect(failures.count.withLock { $0 } == 0)
        let statistics = writer.statistics
        #expect(statistics.recordsAppended == UInt64(writers * appendsPerWriter))
        // With 16 writers behind a 2 ms sync, most commits share a sync.
        #expect(statistics.syncs * 2 < statistics.recordsAppended, "syncs \(statistics.syncs), appends \(statistics.recordsAppended)")
        // Replay the trace: the n-th append to the segment carries LSN n; every ack must come
        // after an fdatasync that started after its append.
        var appended: LSN = 0
        var appendedAtSyncStart: LSN = 0
        var appendedAtLastSync: LSN = 0
        var acknowledgedEarly: [LSN] = []
        for event in simulated.traceEvents {
            switch event.operation {
            case "append" where event.path.hasSuffix(".wal"): appended += 1
            case "sync-start": appendedAtSyncStart = appended
            case "fdatasync" where event.outcome == "ok": appendedAtLastSync = appendedAtSyncStart
            case "ack":
                let lsn = LSN(event.outcome)!
                if lsn > appendedAtLastSync { acknowledgedEarly.append(lsn) }
            default: break
            }
        }
        #expect(appended == UInt64(writers * appendsPerWriter))
        #expect(acknowledgedEarly.isEmpty, "acknowledged before a covering sync: \(acknowledgedEarly.prefix(5))")
        try log.close()
    }

    @Test func failedSyncFailsThePartitionForGood() throws {
        let fileSystem = SimulatedFileSystem(seed: 5, plan: .none)
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [Self.partition], configuration: Self.configuration(.strict),
            clock: ManualClock())
        let writer = log.partition(Self.partition)
        let first = try writer.append([Self.payload(0)]).upperBound
        try writer.commit(through: first)
        let second = try writer.append([Self.payload(1)]).upperBound
        fileSystem.setPlan(FaultPlan(rates: [.syncErrors: 1]))
        let error = #expect(throws: WALError.self) { try writer.commit(through: second) }
        #expect(error?.kind == .failed)
        fileSystem.setPlan(.none)
        let later = #expect(throws: WALError.self) { try writer.append([Self.payload(2)]) }
        #expect(later?.kind == .failed, "nothing is retried after a failed sync")
        #expect(writer.durableLSN == first)
    }
}

final class FailureCounter: Sendable {
    let count = Mutex(0)
}

/// A decorator that makes every file sync take `syncDelayMicroseconds` (before the sync reaches
/// the base file system) and marks its start in the simulated trace.
final class SlowSyncFileSystem: FileSystem {
    let base: SimulatedFileSystem
    let syncDelayMicroseconds: UInt32

    init(base: SimulatedFileSystem, syncDelayMicroseconds: UInt32) {
        self.base = base
        self.syncDelayMicroseconds = syncDelayMicroseconds
    }

    var runsUnderSimulation: Bool { base.runsUnderSimulation }

    final class Handle: FaultFS.FileHandle {
        let inner: any FaultFS.FileHandle
        let owner: SlowSyncFileSystem
        init(inner: any FaultFS.FileHandle, owner: SlowSyncFileSystem) {
            self.inner = inner
            self.owner = owner
        }
        var path: String { inner.path }
        func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(FileSystemError) -> Int {
            try inner.read(into: buffer, at: offset)
        }
        func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(FileSystemError) { try inner.write(bytes, at: offset) }
        func append(_ bytes: UnsafeRawBufferPointer) throws(FileSystemError) -> UInt64 { try inner.append(bytes) }
        func size() throws(FileSystemError) -> UInt64 { try inner.size() }
        func truncate(to sizeBytes: UInt64) throws(FileSystemError) { try inner.truncate(to: sizeBytes) }
        func sync() throws(FileSystemError) {
            owner.base.recordEvent("sync-start", detail: path)
            usleep(owner.syncDelayMicroseconds)
            try inner.sync()
        }
        func fullSync() throws(FileSystemError) { try sync() }
        func dropCachedPages() throws(FileSystemError) { try inner.dropCachedPages() }
        func close() throws(FileSystemError) { try inner.close() }
    }

    func openFile(_ path: String, options: FaultFS.OpenOptions) throws(FileSystemError) -> any FaultFS.FileHandle {
        Handle(inner: try base.openFile(path, options: options), owner: self)
    }
    func createDirectory(_ path: String) throws(FileSystemError) { try base.createDirectory(path) }
    func listDirectory(_ path: String) throws(FileSystemError) -> [String] { try base.listDirectory(path) }
    func removeFile(_ path: String) throws(FileSystemError) { try base.removeFile(path) }
    func removeDirectory(_ path: String) throws(FileSystemError) { try base.removeDirectory(path) }
    func rename(_ source: String, to target: String) throws(FileSystemError) { try base.rename(source, to: target) }
    func link(_ source: String, to target: String) throws(FileSystemError) { try base.link(source, to: target) }
    func syncDirectory(_ path: String) throws(FileSystemError) { try base.syncDirectory(path) }
    func status(_ path: String) throws(FileSystemError) -> FileStatus? { try base.status(path) }
    func lockFile(_ path: String) throws(FileSystemError) -> any FileLock { try base.lockFile(path) }
}
