@testable import Engine
import FaultFS
import SimRunner
import Testing

@Suite("Block headers, commit records and the balanced tick")
struct BlockHeaderTests {
    @Test func commitRecordLayoutIsFixedAndRoundTrips() {
        let record = CommitRecord(
            height: 0x0102, metaRoot: Hash32(bytes: Array(repeating: 0xAA, count: 32)),
            previousMetaRoot: Hash32(bytes: Array(repeating: 0xBB, count: 32)),
            lanes: [
                CommitRecord.Lane(lsn: 7, laneRoot: Hash32(bytes: Array(repeating: 0x11, count: 32))),
                CommitRecord.Lane(lsn: nil, laneRoot: Hash32(bytes: Array(repeating: 0x22, count: 32))),
            ],
            operationCount: 0x0304, durableHeight: 0x0101)
        let bytes = record.encoded()
        // height u64 | meta root | previous | lane count u32 | 2 × (touched u8, lsn u64, root) | op count u32 | durable height u64
        #expect(bytes.count == 8 + 32 + 32 + 4 + 2 * (1 + 8 + 32) + 4 + 8)
        #expect(Array(bytes[0..<8]) == [0x02, 0x01, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[72..<76]) == [2, 0, 0, 0])
        #expect(bytes[76] == 1 && bytes[77] == 7)
        #expect(bytes[117] == 0)
        #expect(Array(bytes[(bytes.count - 12)..<(bytes.count - 8)]) == [0x04, 0x03, 0, 0])
        #expect(Array(bytes[(bytes.count - 8)...]) == [0x01, 0x01, 0, 0, 0, 0, 0, 0])
        #expect(CommitRecord.decode(bytes) == record)
        // A record written before the durable height existed decodes with 0 (no witness).
        var older = record
        older.durableHeight = 0
        #expect(CommitRecord.decode(bytes[0..<(bytes.count - 8)]) == older)
        // Every other truncation, any trailing byte and a durable height not below the record's
        // own height are refused.
        for length in 0..<bytes.count where length != bytes.count - 8 { #expect(CommitRecord.decode(bytes[0..<length]) == nil) }
        #expect(CommitRecord.decode(bytes + [0]) == nil)
        var ahead = record
        ahead.durableHeight = record.height
        #expect(CommitRecord.decode(ahead.encoded()) == nil)
    }

    @Test func oldBlocksAreServedFromTheLogOnceOutOfTheMemoryWindow() throws {
        let fileSystem = SimulatedFileSystem(seed: 11, plan: .none)
        var configuration = EngineTests.configuration()
        configuration.recentBlockHeadersKept = 4
        var model = ChainModel(chainID: configuration.chainID, laneCount: configuration.laneCount)
        var engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
        var acknowledged: [UInt64: Hash32] = [:]
        for height in 1...40 {
            let block = makeBlock(height)
            model.apply(block)
            let result = try engine.commit(block)
            acknowledged[result.height] = result.metaRoot
        }
        for height in 1...40 {
            let header = try #require(try engine.block(at: UInt64(height)))
            #expect(header.metaRoot == acknowledged[UInt64(height)])
            #expect(header.metaRoot == model.metaRoot(at: height))
            #expect(header.laneRoots == model.laneRoots(at: height))
            #expect(header.operationCount == makeBlock(height).count)
        }
        #expect(try engine.block(at: 0) == nil)
        #expect(try engine.block(at: 41) == nil)
        // After a reopen, old headers still come from the log.
        try engine.close()
        engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
        defer { try? engine.close() }
        #expect(try engine.block(at: 3)?.metaRoot == model.metaRoot(at: 3))
        #expect(try engine.block(at: 40)?.metaRoot == model.metaRoot(at: 40))
    }

    @Test func balancedTickMakesBlocksDurableWithoutFurtherCommits() throws {
        let fileSystem = SimulatedFileSystem(seed: 12, plan: .none)
        var configuration = EngineTests.configuration(.balanced)
        configuration.wal.syncIntervalMilliseconds = 200
        configuration.wal.syncBytes = 1 << 30
        let clock = ManualClock()
        let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock)
        defer { try? engine.close() }
        let result = try engine.commit(makeBlock(1))
        #expect(!result.durable)
        #expect(engine.durableHeight == 0)
        try engine.tick()
        #expect(engine.durableHeight == 0, "the interval has not passed")
        clock.advance(byNanoseconds: 200_000_000)
        try engine.tick()
        #expect(engine.durableHeight == 1)
        let syncs = engine.walStatistics.reduce(0) { $0 + $1.statistics.syncs }
        #expect(syncs >= 2, "the lane and the meta partition synced")
    }

    @Test func aBlockTooLargeToLogIsRefusedAndTheEngineKeepsWorking() throws {
        let fileSystem = SimulatedFileSystem(seed: 14, plan: .none)
        let engine = try Engine(fileSystem: fileSystem, configuration: EngineTests.configuration(), clock: ManualClock())
        defer { try? engine.close() }
        let huge = [BlockOperation(key: Array("big".utf8), value: [UInt8](repeating: 1, count: WALFormat.recordBytesMax))]
        do {
            _ = try engine.commit(huge)
            Issue.record("a block larger than a WAL record was accepted")
        } catch {
            #expect(error.kind == .invalidInput)
        }
        #expect(engine.stateRoots().height == 0)
        #expect(try engine.commit([BlockOperation(key: Array("small".utf8), value: [1])]).height == 1)
    }

    @Test func walObserverSeesEverySyncWithItsBatch() throws {
        final class Recorder: WALObserver, @unchecked Sendable {
            let lock = ConditionLock()
            var events: [WALSyncEvent] = []
            func walSynced(_ event: WALSyncEvent) { lock.withLock { events.append(event) } }
        }
        let recorder = Recorder()
        let fileSystem = SimulatedFileSystem(seed: 13, plan: .none)
        let engine = try Engine(fileSystem: fileSystem, configuration: EngineTests.configuration(), clock: ManualClock(), walObserver: recorder)
        defer { try? engine.close() }
        let before = recorder.lock.withLock { recorder.events.count }
        _ = try engine.commit([BlockOperation(key: Array("k".utf8), value: [1])])
        let events = recorder.lock.withLock { Array(recorder.events[before...]) }
        // One lane record and one commit record, each made durable by a sync of its partition.
        #expect(events.filter { $0.partition.isMeta }.map(\.records) == [1])
        #expect(events.filter { !$0.partition.isMeta }.map(\.records) == [1])
        #expect(events.allSatisfy { $0.bytes > 0 })
    }
}
