@testable import Engine
import FaultFS
import Testing

/// A partition that starts above LSN 0 (a restored snapshot's lane, or a log after retention)
/// keeps its starting position when every record it holds is discarded as uncommitted: the
/// first segment's header is all that says where it starts. Found by the sync workload (seed 70):
/// the segment was moved aside whole, and the partition restarted at LSN 1, below what the lane
/// had applied.
@Suite("WAL: a partition started above 0 keeps its start through a discard")
struct WALStartAfterRestoreTests {
    static let startAfter: LSN = 10

    /// A lane partition started after `startAfter`, as a restore starts it, with `records` synced records.
    static func startedLog(_ fileSystem: SimulatedFileSystem, records: Int) throws {
        let scan = WALPartitionScan(
            partition: .lane(0), directory: "/wal/lane-0000", segments: [], segmentsAfterDamage: [], firstLSN: startAfter + 1,
            lastLSN: startAfter, closingChecksum: 0, damage: nil, verdict: nil, evidence: "", skipped: [], recordsRead: 0, bytesRead: 0)
        try fileSystem.createDirectories("/wal/lane-0000")
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = .strict
        let writer = try WALPartition(
            fileSystem: fileSystem, directory: "/wal/lane-0000", partition: .lane(0), configuration: configuration, clock: ManualClock(), recovered: scan)
        for index in 0..<records {
            let lsn = try writer.append([Array("record \(index)".utf8)]).upperBound
            try writer.commit(through: lsn)
        }
        try writer.close()
    }

    @Test(arguments: [1, 3])
    func discardingEveryRecordKeepsTheStart(records: Int) throws {
        let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
        try Self.startedLog(fileSystem, records: records)
        var recovered = try WriteAheadLog.recover(fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], mode: .tolerateTornTail)
        #expect(recovered.scans[.lane(0)]!.lastLSN == Self.startAfter + LSN(records))
        try WriteAheadLog.discardRecords(fileSystem: fileSystem, directory: "/wal", partition: .lane(0), after: Self.startAfter, recovered: &recovered)
        #expect(recovered.scans[.lane(0)]!.lastLSN == Self.startAfter)
        // Reopened, the log continues right after the start: no LSN the lane applied is reused.
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], configuration: WALConfiguration(), clock: ManualClock())
        #expect(log.partition(.lane(0)).writtenLSN == Self.startAfter)
        let next = try log.partition(.lane(0)).append([Array("after".utf8)]).upperBound
        #expect(next == Self.startAfter + 1)
        try log.close()
        // Idempotent: discarding again (a crash after the first) changes nothing.
        var again = try WriteAheadLog.recover(fileSystem: fileSystem, directory: "/wal", partitionIDs: [.lane(0)], mode: .tolerateTornTail)
        try WriteAheadLog.discardRecords(fileSystem: fileSystem, directory: "/wal", partition: .lane(0), after: Self.startAfter + 1, recovered: &again)
        #expect(again.scans[.lane(0)]!.lastLSN == Self.startAfter + 1)
    }
}
