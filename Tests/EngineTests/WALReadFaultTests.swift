@testable import Engine
import FaultFS
import Testing

/// Recovery reads what the media holds, and a bad read costs nothing (docs/RULES.md, I1 and I4).
@Suite("WAL recovery under bad reads and failed fsyncs")
struct WALReadFaultTests {
    static func payload(_ index: Int) -> [UInt8] { (0..<(20 + index % 50)).map { UInt8(truncatingIfNeeded: $0 &+ index) } }

    static func recover(_ fileSystem: SimulatedFileSystem) throws -> [[UInt8]] {
        var replayed: [[UInt8]] = []
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], configuration: WALConfiguration(), clock: ManualClock(),
            replay: { _, _, payload in replayed.append(Array(payload)) })
        try log.close()
        return replayed
    }

    /// Writes `count` synced records.
    static func syncedLog(_ fileSystem: SimulatedFileSystem, count: Int) throws -> WriteAheadLog {
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], configuration: WALConfiguration(), clock: ManualClock())
        for index in 0..<count {
            let lsn = try log.partition(.lane(0)).append([payload(index)]).upperBound
            #expect(try log.partition(.lane(0)).commit(through: lsn))
        }
        return log
    }

    /// Discarding uncommitted records under bad reads never leaves one behind: the log ends
    /// exactly at the LSN, or the discard fails (and the next recovery discards again).
    @Test func discardingRecordsUnderBadReadsNeverKeepsOne() throws {
        var discarded = 0
        for seed in UInt64(1)...12 {
            let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
            try Self.syncedLog(fileSystem, count: 40).close()
            var recovered = try WriteAheadLog.recover(fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], mode: .tolerateTornTail)
            fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.3, .misdirectedReads: 0.3]))
            var succeeded = false
            do {
                try WriteAheadLog.discardRecords(fileSystem: fileSystem, directory: "/wal", partition: .lane(0), after: 25, recovered: &recovered)
                #expect(recovered.scans[.lane(0)]!.lastLSN == 25, "seed \(seed)")
                succeeded = true
                discarded += 1
            } catch {
                #expect(error.kind == .io || error.kind == .midLogDamage, "seed \(seed): \(error)")
            }
            fileSystem.setPlan(.none)
            let replayed = try Self.recover(fileSystem)
            #expect(succeeded ? replayed.count == 25 : (replayed.count == 25 || replayed.count == 40), "seed \(seed): \(replayed.count) records")
            #expect(replayed == (0..<replayed.count).map(Self.payload), "seed \(seed)")
        }
        #expect(discarded > 0)
    }

    /// After a failed fsync the kernel keeps the lost pages cached as clean; a restarted process
    /// must not take them for durable records (it would acknowledge later records on top of a
    /// hole that the next power loss opens).
    @Test func recordsWhoseSyncFailedAreNotReplayedAfterAProcessCrash() throws {
        let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
        let log = try Self.syncedLog(fileSystem, count: 3)
        fileSystem.setPlan(FaultPlan(rates: [.syncErrors: 1]))
        let lsn = try log.partition(.lane(0)).append([Self.payload(3)]).upperBound
        #expect(throws: WALError.self) { try log.partition(.lane(0)).commit(through: lsn) }
        fileSystem.setPlan(.none)
        fileSystem.crash(.processCrash)
        #expect(try Self.recover(fileSystem) == (0..<3).map(Self.payload))
    }

    /// Bit rot on the way and misdirected reads make a segment look damaged; reading it again
    /// must give every record back, with no refusal and no truncation.
    @Test func badReadsNeitherRefuseNorTruncate() throws {
        var badReads: UInt64 = 0
        for seed in UInt64(1)...12 {
            let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
            try Self.syncedLog(fileSystem, count: 40).close()
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.3, .misdirectedReads: 0.3]))
            #expect(try Self.recover(fileSystem) == (0..<40).map(Self.payload), "seed \(seed)")
            let counts = fileSystem.injectedFaultCounts
            badReads += (counts[FaultFamily.bitRotOnRead.rawValue] ?? 0) + (counts[FaultFamily.misdirectedReads.rawValue] ?? 0)
        }
        #expect(badReads > 0, "bad reads were injected")
    }

    /// Damage that every read shows still counts: bad reads never hide real damage.
    @Test func damageOnTheMediaIsStillFoundUnderBadReads() throws {
        let fileSystem = SimulatedFileSystem(seed: 3, plan: .none)
        try Self.syncedLog(fileSystem, count: 40).close()
        let segment = "/wal/lane-0000/segment-0000000000000001.wal"
        let handle = try fileSystem.openFile(segment, options: .readWrite)
        let offset = UInt64(WALFormat.segmentHeaderBytes + 10 * WALFormat.frameLength(payloadLength: 30))
        let byte = try handle.read(at: offset, count: 1)[0]
        try handle.write([byte ^ 0x08], at: offset)
        try handle.sync()
        try handle.close()
        fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.3, .misdirectedReads: 0.3]))
        do {
            _ = try Self.recover(fileSystem)
            Issue.record("mid-log damage was not refused")
        } catch let error as WALError {
            #expect(error.kind == .midLogDamage)
            #expect(error.damage?.path == segment)
        }
    }
}
