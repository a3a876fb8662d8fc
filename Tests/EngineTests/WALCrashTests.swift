import Dispatch
import Engine
import Foundation
import FaultFS
import Synchronization
import Testing

/// Crashes a WAL workload at every file-system operation and checks what recovery returns.
@Suite("WAL crash at every operation")
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

    struct Outcome {
        /// The highest LSN acknowledged as durable (strict: commit returned true; balanced: the
        /// durable LSN the log reported).
        var durableLSN: LSN = 0
        /// The highest LSN whose append returned.
        var writtenLSN: LSN = 0
        var crashed = false
    }

    /// Opens the log and appends `recordCount` records, one commit each, until the file system
    /// halts. Every `FileSystemError` other than the crash is unexpected (no faults fire before
    /// the crash: the plan only acts at power loss).
    static func runWorkload(_ fileSystem: SimulatedFileSystem, policy: FsyncPolicy, clock: ManualClock) -> Outcome {
        var outcome = Outcome()
        do {
            let log = try WriteAheadLog(
                fileSystem: fileSystem, directory: "/wal", partitionIDs: [partition], configuration: configuration(policy),
                clock: clock)
            let writer = log.partition(partition)
            for index in 0..<recordCount {
                let range = try writer.append([payload(index)])
                outcome.writtenLSN = range.upperBound
                clock.advance(byNanoseconds: 10_000_000)
                if try writer.commit(through: range.upperBound) { outcome.durableLSN = range.upperBound }
                outcome.durableLSN = max(outcome.durableLSN, writer.durableLSN)
            }
            try log.close()
        } catch let error where error.cause?.code == .crashed || error.kind == .failed {
            outcome.crashed = true
        } catch {
            Issue.record("unexpected error before the crash: \(error)")
        }
        return outcome
    }

    /// Recovers and returns the replayed payloads, or records why it could not.
    static func recover(_ fileSystem: SimulatedFileSystem, policy: FsyncPolicy, clock: ManualClock) throws -> [[UInt8]] {
        var replayed: [[UInt8]] = []
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [partition], configuration: configuration(policy),
            clock: clock, replay: { _, _, payload in replayed.append(Array(payload)) })
        try log.close()
        return replayed
    }

    static let lossPlan = FaultPlan(rates: [
        .lostUnsyncedWrites: 0.5, .tornWrites: 0.3, .reorderedWrites: 0.5, .lostDirectoryEntries: 0.5,
    ])

    @Test(arguments: FsyncPolicy.allCases)
    func crashAtEveryOperationRecoversAPrefixWithEveryAcknowledgedRecord(policy: FsyncPolicy) throws {
        // dev_fast promises only to survive a process crash; the others survive power loss.
        let crashKind: CrashKind = policy == .devFast ? .processCrash : .powerLoss
        let total = SimulatedFileSystem(seed: 0, plan: .none)
        _ = Self.runWorkload(total, policy: policy, clock: ManualClock())
        let operationCount = total.operationCount
        #expect(operationCount > UInt64(Self.recordCount))
        var crashesChecked = 0
        for crashPoint in 1...operationCount {
            let fileSystem = SimulatedFileSystem(seed: crashPoint, plan: Self.lossPlan, traceEventsMax: 0)
            let clock = ManualClock()
            fileSystem.scheduleCrash(atOperation: crashPoint)
            var outcome = Self.runWorkload(fileSystem, policy: policy, clock: clock)
            // A crash in close() is swallowed by design (close after sync loses nothing).
            outcome.crashed = outcome.crashed || fileSystem.isHalted
            guard outcome.crashed else {
                Issue.record("crash point \(crashPoint) of \(operationCount) was never reached")
                continue
            }
            fileSystem.crash(crashKind)
            // A second crash inside recovery itself, then a clean recovery.
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1 + crashPoint % 23)
            _ = try? Self.recover(fileSystem, policy: policy, clock: clock)
            fileSystem.scheduleCrash(atOperation: nil)
            if fileSystem.isHalted { fileSystem.crash(crashKind) }
            let replayed: [[UInt8]]
            do {
                replayed = try Self.recover(fileSystem, policy: policy, clock: clock)
            } catch {
                Issue.record("\(policy) crash at \(crashPoint): recovery refused: \(error)")
                continue
            }
            let required = policy == .devFast ? outcome.writtenLSN : outcome.durableLSN
            #expect(
                UInt64(replayed.count) >= required,
                "\(policy) crash at \(crashPoint): \(replayed.count) records recovered, \(required) acknowledged")
            #expect(replayed.count <= Self.recordCount)
            let isPrefix = replayed.enumerated().allSatisfy { $0.element == Self.payload($0.offset) }
            #expect(isPrefix, "\(policy) crash at \(crashPoint): recovered records are not a prefix")
            crashesChecked += 1
        }
        #expect(crashesChecked == Int(operationCount))
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
