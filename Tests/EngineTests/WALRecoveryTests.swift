import Engine
import FaultFS
import Testing

/// A small log on a fault-free simulated file system, for damaging by hand.
struct WALFixture {
    let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
    let directory = "/wal"
    let partition = WALPartitionID.lane(0)
    let clock = ManualClock()
    var configuration = WALConfiguration()
    var payloads: [[UInt8]] = []

    var partitionDirectory: String { WriteAheadLog.partitionDirectory(directory, partition) }

    init(records: Int, segmentSizeBytes: UInt64 = 64 << 20, policy: FsyncPolicy = .strict, payloadBytes: Int = 100) throws {
        configuration.segmentSizeBytes = segmentSizeBytes
        configuration.fsyncPolicy = policy
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: directory, partitionIDs: [partition], configuration: configuration, clock: clock)
        for index in 0..<records {
            let payload = (0..<payloadBytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) }
            payloads.append(payload)
            let range = try log.partition(partition).append([payload])
            try log.partition(partition).commit(through: range.upperBound)
        }
        try log.close()
    }

    func segmentPaths() throws -> [String] {
        try fileSystem.listDirectory(partitionDirectory).filter { $0.hasSuffix(".wal") }.map { partitionDirectory + "/" + $0 }
    }

    /// Offsets of every frame in a segment file.
    func frameOffsets(_ path: String) throws -> [Int] {
        let bytes = try fileSystem.readFile(path)
        var offsets: [Int] = []
        var offset = WALFormat.segmentHeaderBytes
        while offset < bytes.count {
            offsets.append(offset)
            let length = bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)) }
            offset += WALFormat.frameLength(payloadLength: length)
        }
        return offsets
    }

    func overwrite(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try fileSystem.openFile(path, options: .readWrite)
        try handle.write(bytes, at: UInt64(offset))
        try handle.close()
    }

    func flipBit(_ path: String, byte offset: Int, bit: Int = 3) throws {
        var current = try fileSystem.readFile(path)[offset]
        current ^= UInt8(1) << UInt8(bit)
        try overwrite(path, at: offset, with: [current])
    }

    func truncate(_ path: String, to size: Int) throws {
        let handle = try fileSystem.openFile(path, options: .readWrite)
        try handle.truncate(to: UInt64(size))
        try handle.close()
    }

    /// Recovers with `mode`, returning the replayed payloads or the error.
    func recover(
        mode: WALRecoveryMode = .tolerateTornTail, policyWhenUnknown: FsyncPolicy = .strict
    ) -> Result<([[UInt8]], WALRecoveryReport), WALError> {
        var replayed: [[UInt8]] = []
        do {
            let (report, _) = try WALRecovery.recover(
                fileSystem: fileSystem, directory: partitionDirectory, partition: partition, mode: mode,
                policyWhenUnknown: policyWhenUnknown,
                replay: { _, payload in replayed.append(Array(payload)) })
            return .success((replayed, report))
        } catch {
            return .failure(error)
        }
    }
}

@Suite("WAL recovery decision table")
struct WALRecoveryTests {
    @Test func cleanLogReplaysEverythingTwice() throws {
        let fixture = try WALFixture(records: 20)
        for _ in 0..<2 {
            let (replayed, report) = try fixture.recover().get()
            #expect(replayed == fixture.payloads)
            #expect(report.lastLSN == 20)
            #expect(report.droppedTornTail == nil)
        }
    }

    @Test func tearAtEveryByteOfTheLastRecordIsTruncated() throws {
        let probe = try WALFixture(records: 5)
        let path = try probe.segmentPaths()[0]
        let lastFrame = try probe.frameOffsets(path).last!
        let fileSize = try probe.fileSystem.readFile(path).count
        let coveredEnd = lastFrame + WALFormat.frameHeaderBytes + 100
        for cut in lastFrame..<fileSize {
            // Garbage in the padding after the payload harms nothing: no reader trusts padding.
            for garbage in cut < coveredEnd ? [false, true] : [false] {
                let fixture = try WALFixture(records: 5)
                if garbage {
                    let noise = (cut..<fileSize).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 17) }
                    try fixture.overwrite(path, at: cut, with: noise)
                } else {
                    try fixture.truncate(path, to: cut)
                }
                guard case .success(let (replayed, report)) = fixture.recover() else {
                    Issue.record("tear at \(cut) (garbage: \(garbage)) was refused")
                    continue
                }
                #expect(replayed.count == 4, "tear at \(cut)")
                #expect(replayed == Array(fixture.payloads.prefix(replayed.count)), "tear at \(cut) replayed other data")
                if cut > lastFrame || garbage { #expect(report.droppedTornTail?.offset == UInt64(lastFrame)) }
                // Idempotent: the second recovery finds a clean log ending at LSN 4.
                let (again, secondReport) = try fixture.recover().get()
                #expect(again.count == replayed.count)
                #expect(secondReport.droppedTornTail == nil)
                #expect(try fixture.fileSystem.readFile(path).count == lastFrame)
            }
        }
    }

    /// Header fields of a frame: (name, first byte).
    static let headerFields: [(String, Int)] = [
        ("header checksum", 0), ("payload length", 4), ("LSN", 8), ("synced-through LSN", 16), ("partition", 24),
        ("segment index", 28), ("record type", 32), ("flags", 33), ("reserved", 34), ("payload checksum", 36),
        ("payload", 40), ("payload end", 139),
    ]

    @Test(arguments: 0..<headerFields.count)
    func bitFlipInAMiddleRecordIsMidLogDamage(field: Int) throws {
        let (name, fieldOffset) = Self.headerFields[field]
        let fixture = try WALFixture(records: 10)
        let path = try fixture.segmentPaths()[0]
        let middle = try fixture.frameOffsets(path)[4]
        try fixture.flipBit(path, byte: middle + fieldOffset)
        let before = try fixture.fileSystem.readFile(path)
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("flip in \(name) was not refused")
            return
        }
        #expect(error.kind == .midLogDamage, "\(name)")
        #expect(error.damage?.offset == UInt64(middle))
        #expect(error.damage?.expectedLSN == 5)
        #expect(error.damage?.path == path)
        #expect(error.description.contains("restore the most recent snapshot"))
        #expect(try fixture.fileSystem.readFile(path) == before, "a refused recovery changes nothing")
    }

    /// A segment's header is synced before its first record: a damaged header with a record of
    /// the segment after it was durable, so it is refused; a header with nothing after it can
    /// be a torn roll and is dropped (decision table, rule 4).
    @Test func damagedHeaderOfTheLastSegmentIsRefusedWhenRecordsFollowIt() throws {
        let fixture = try WALFixture(records: 30, segmentSizeBytes: 1_024)
        let last = try fixture.segmentPaths().sorted().last!
        #expect(try fixture.frameOffsets(last).count > 0)
        try fixture.overwrite(last, at: 0, with: [UInt8](repeating: 0, count: WALFormat.segmentHeaderBytes))
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("a damaged header with records after it was dropped as torn")
            return
        }
        #expect(error.kind == .midLogDamage)
        #expect(error.damage?.damageClass == .badSegmentHeader)
        #expect(error.damage?.path == last)

        let headerOnly = try WALFixture(records: 30, segmentSizeBytes: 1_024)
        let lastOfHeaderOnly = try headerOnly.segmentPaths().sorted().last!
        try headerOnly.truncate(lastOfHeaderOnly, to: WALFormat.segmentHeaderBytes)
        let before = try headerOnly.recover().get().0.count
        try headerOnly.overwrite(lastOfHeaderOnly, at: 0, with: [UInt8](repeating: 0, count: WALFormat.segmentHeaderBytes))
        let (replayed, _) = try headerOnly.recover().get()
        #expect(replayed.count == before, "a torn header with nothing after it loses no record")
    }

    @Test func bitFlipInTheLastRecordIsATornTail() throws {
        let fixture = try WALFixture(records: 10)
        let path = try fixture.segmentPaths()[0]
        let last = try fixture.frameOffsets(path).last!
        try fixture.flipBit(path, byte: last + 50)
        let (replayed, report) = try fixture.recover().get()
        #expect(replayed.count == 9)
        #expect(report.forensicCopies == [path + ".torn-\(last)"])
        #expect(try fixture.fileSystem.readFile(path + ".torn-\(last)").count == WALFormat.frameLength(payloadLength: 100))
    }

    /// When no segment header survives to say how the segments were written (a dev_fast log
    /// after a power loss loses them all), damage is classified under the configured policy:
    /// dev_fast drops it all as a tail, anything else refuses.
    @Test func damageWithNoSurvivingHeaderIsClassifiedUnderTheConfiguredPolicy() throws {
        let fixture = try WALFixture(records: 30, segmentSizeBytes: 1_024, policy: .devFast)
        let paths = try fixture.segmentPaths().sorted()
        #expect(paths.count >= 2)
        for path in paths { try fixture.overwrite(path, at: 0, with: [UInt8](repeating: 0, count: WALFormat.segmentHeaderBytes)) }
        let (replayed, _) = try fixture.recover(policyWhenUnknown: .devFast).get()
        #expect(replayed.isEmpty)
        let fresh = try WALFixture(records: 30, segmentSizeBytes: 1_024, policy: .devFast)
        for path in try fresh.segmentPaths() { try fresh.overwrite(path, at: 0, with: [UInt8](repeating: 0, count: WALFormat.segmentHeaderBytes)) }
        guard case .failure(let error) = fresh.recover(policyWhenUnknown: .strict) else {
            Issue.record("damage with no surviving header was dropped under strict")
            return
        }
        #expect(error.kind == .midLogDamage)
    }

    @Test func zeroedSectorInTheMiddleIsMidLogDamage() throws {
        let fixture = try WALFixture(records: 30)
        let path = try fixture.segmentPaths()[0]
        try fixture.overwrite(path, at: 1_024, with: [UInt8](repeating: 0, count: 512))
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("zeroed sector accepted")
            return
        }
        #expect(error.kind == .midLogDamage)
    }

    @Test func unsyncedHoleWithLaterUnsyncedRecordsIsATornTail() throws {
        // Records written under dev_fast carry no durability witness: a hole followed by valid
        // records is what a power loss with non-prefix survival leaves.
        let fixture = try WALFixture(records: 10, policy: .devFast)
        let path = try fixture.segmentPaths()[0]
        let offsets = try fixture.frameOffsets(path)
        try fixture.overwrite(path, at: offsets[6], with: [UInt8](repeating: 0, count: offsets[7] - offsets[6]))
        let (replayed, _) = try fixture.recover().get()
        #expect(replayed == Array(fixture.payloads.prefix(6)))
    }

    @Test func misdirectedRecordFromAnotherSegmentIsRefused() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        #expect(paths.count >= 3)
        let sourceOffset = try fixture.frameOffsets(paths[0])[0]
        let frameBytes = Array(try fixture.fileSystem.readFile(paths[0])[sourceOffset..<(sourceOffset + 144)])
        let target = try fixture.frameOffsets(paths[1])[0]
        try fixture.overwrite(paths[1], at: target, with: frameBytes)
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("misdirected record accepted")
            return
        }
        #expect(error.kind == .midLogDamage)
        #expect(error.damage?.damageClass == .foreignRecord)
        #expect(error.damage?.path == paths[1])
    }

    @Test func deletedMiddleSegmentIsRefused() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        try fixture.fileSystem.removeFile(paths[1])
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("missing segment accepted")
            return
        }
        #expect(error.damage?.damageClass == .missingSegment)
    }

    @Test func duplicatedSegmentIsRefused() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        let copy = try fixture.fileSystem.readFile(paths[1])
        try fixture.fileSystem.removeFile(paths[2])
        try fixture.fileSystem.writeFileAtomically(paths[2], bytes: copy)
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("duplicated segment accepted")
            return
        }
        #expect(error.damage?.damageClass == .duplicateSegment)
    }

    @Test func damageInAnEarlierSegmentIsRefusedEvenWithoutWitness() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        let last = try fixture.frameOffsets(paths[0]).last!
        try fixture.flipBit(paths[0], byte: last + 45)
        guard case .failure(let error) = fixture.recover() else {
            Issue.record("damage before a later segment accepted")
            return
        }
        #expect(error.kind == .midLogDamage)
    }

    @Test func tornHeaderOfTheNewestSegmentMovesItAside() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        let newest = paths.last!
        let lastLSNBefore = try fixture.recover().get().1.lastLSN
        try fixture.fileSystem.removeFile(newest)
        try fixture.fileSystem.writeFileAtomically(newest, bytes: [UInt8](repeating: 0xEE, count: 30))
        let (_, report) = try fixture.recover().get()
        #expect(report.droppedTornTail?.damageClass == .badSegmentHeader)
        #expect(report.lastLSN < lastLSNBefore, "the newest segment's records went with it")
        #expect(try fixture.fileSystem.exists(newest) == false)
        #expect(try fixture.fileSystem.exists(newest + ".torn-0"))
    }

    @Test func absoluteModeRefusesEvenATornTail() throws {
        let fixture = try WALFixture(records: 5)
        let path = try fixture.segmentPaths()[0]
        let size = try fixture.fileSystem.readFile(path).count
        try fixture.truncate(path, to: size - 3)
        guard case .failure(let error) = fixture.recover(mode: .absolute) else {
            Issue.record("absolute accepted a torn tail")
            return
        }
        #expect(error.kind == .damageInAbsoluteMode)
        #expect(try fixture.fileSystem.readFile(path).count == size - 3, "nothing was truncated")
    }

    @Test func salvageSkipsDamageAndReportsIt() throws {
        let fixture = try WALFixture(records: 10)
        let path = try fixture.segmentPaths()[0]
        let middle = try fixture.frameOffsets(path)[4]
        try fixture.flipBit(path, byte: middle + 60)
        let before = try fixture.fileSystem.readFile(path)
        let (replayed, report) = try fixture.recover(mode: .salvage).get()
        var expected = fixture.payloads
        expected.remove(at: 4)
        #expect(replayed == expected)
        #expect(report.skipped.count == 1)
        #expect(report.skipped.first?.damageClass == .payloadChecksumMismatch)
        #expect(try fixture.fileSystem.readFile(path) == before, "salvage writes nothing")
    }

    @Test func verifierReportsRangesAndDamage() throws {
        let fixture = try WALFixture(records: 12, segmentSizeBytes: 600)
        var reports = try WALVerifier.verify(fileSystem: fixture.fileSystem, directory: fixture.directory)
        #expect(reports.count == 1)
        #expect(reports[0].firstLSN == 1)
        #expect(reports[0].lastLSN == 12)
        #expect(reports[0].damage.isEmpty)
        #expect(reports[0].segments.map(\.index) == Array(1...UInt64(reports[0].segments.count)))
        let paths = try fixture.segmentPaths()
        try fixture.flipBit(paths[0], byte: try fixture.frameOffsets(paths[0])[1] + 50)
        reports = try WALVerifier.verify(fileSystem: fixture.fileSystem, directory: fixture.directory)
        #expect(reports[0].verdict == .midLog)
        #expect(reports[0].damage.first?.damageClass == .payloadChecksumMismatch)
    }

    @Test func retentionDeletesOldSegmentsBelowTheLSNOnly() throws {
        let fixture = try WALFixture(records: 24, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        #expect(paths.count >= 6)
        let now = fixture.clock.nowNanoseconds() / 1_000_000_000
        let tooYoung = try WALRetention.deleteSegments(
            fileSystem: fixture.fileSystem, directory: fixture.partitionDirectory, partition: fixture.partition,
            below: 1_000, retentionHours: 24, nowSeconds: now)
        #expect(tooYoung.isEmpty)
        let deleted = try WALRetention.deleteSegments(
            fileSystem: fixture.fileSystem, directory: fixture.partitionDirectory, partition: fixture.partition,
            below: 9, retentionHours: 24, nowSeconds: now + 25 * 3_600)
        #expect(!deleted.isEmpty)
        #expect(deleted == Array(paths.prefix(deleted.count)))
        let (replayed, report) = try fixture.recover().get()
        #expect(report.lastLSN == 24)
        #expect(report.firstLSN <= 9)
        #expect(replayed == Array(fixture.payloads.suffix(replayed.count)))
    }

    @Test func missingFirstSegmentIsRefusedUnlessWrittenUnderDevFast() throws {
        for policy in [FsyncPolicy.strict, .devFast] {
            let fixture = try WALFixture(records: 12, segmentSizeBytes: 600, policy: policy)
            try fixture.fileSystem.removeFile(try fixture.segmentPaths()[0])
            switch (policy, fixture.recover()) {
            case (.strict, .failure(let error)):
                #expect(error.damage?.damageClass == .missingSegment)
            case (.devFast, .success(let (replayed, _))):
                #expect(replayed.isEmpty, "nothing after a hole is kept")
            case (_, let result):
                Issue.record("\(policy): unexpected \(result)")
            }
        }
    }

    @Test func segmentsBelowTheRetentionMarkerAreIgnored() throws {
        let fixture = try WALFixture(records: 24, segmentSizeBytes: 600)
        let paths = try fixture.segmentPaths()
        let now = fixture.clock.nowNanoseconds() / 1_000_000_000 + 25 * 3_600
        let deleted = try WALRetention.deleteSegments(
            fileSystem: fixture.fileSystem, directory: fixture.partitionDirectory, partition: fixture.partition,
            below: 9, retentionHours: 24, nowSeconds: now)
        #expect(deleted.count >= 1)
        // As if the retention run had crashed after writing the marker and before unlinking:
        // put a deleted segment back; recovery ignores it.
        try fixture.fileSystem.writeFileAtomically(deleted[0], bytes: [1, 2, 3])
        let (_, report) = try fixture.recover().get()
        #expect(report.lastLSN == 24)
        #expect(paths.count > deleted.count)
    }
}
