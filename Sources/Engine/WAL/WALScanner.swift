import FaultFS

/// One segment file as the scanner found it.
public struct WALScannedSegment: Sendable, Equatable {
    public var path: String
    public var index: UInt64
    /// `nil` when the header could not be decoded.
    public var header: WALSegmentHeader?
    public var headerChecksum: UInt32
    /// The LSN of the last trusted record in this segment; the previous segment's last LSN when
    /// it holds none.
    public var lastLSN: LSN
    /// The header checksum of the last trusted frame, or the segment header's checksum.
    public var closingChecksum: UInt32
    /// The end of the trusted data (frames are trusted up to here).
    public var validEndOffset: UInt64
    public var sizeBytes: UInt64
}

/// How recovery must treat a damage it found.
public enum WALDamageVerdict: String, Sendable, Equatable {
    /// Only an interrupted, never-acknowledged write can explain it: safe to drop.
    case tornTail = "torn_tail"
    /// Anything else: the log must not be used past it.
    case midLog = "mid_log"
}

/// The result of reading one partition, before anything on disk is changed.
public struct WALPartitionScan: Sendable {
    public var partition: WALPartitionID
    public var directory: String
    /// Every segment file in index order, up to and including the one with the first damage
    /// (all of them in salvage mode).
    public var segments: [WALScannedSegment]
    /// Segment files after the damaged one (dev_fast torn tails can span segments).
    public var segmentsAfterDamage: [String]
    /// The first LSN the partition holds (after retention), or `lastLSN + 1` when empty.
    public var firstLSN: LSN
    public var lastLSN: LSN
    public var closingChecksum: UInt32
    /// The first damage, if any, and its verdict with the evidence behind it.
    public var damage: WALDamage?
    public var verdict: WALDamageVerdict?
    public var evidence: String
    /// Damage skipped in salvage mode.
    public var skipped: [WALDamage]
    public var recordsRead: UInt64
    public var bytesRead: UInt64
}

/// Reads a WAL partition's segments in order, checks every frame and the segment chain, hands
/// each trusted record to a visitor, and classifies the first damage as a torn tail or mid-log
/// damage. Changes nothing on disk.
///
/// The torn-tail rule (`docs/RULES.md`, R1–R5; the rows are `WALTornTailRule`): damage at expected LSN d is
/// a torn tail only if (1) it is in the last segment (or the segment was written under
/// `dev_fast`, which never syncs, so later segments may be torn too), (2) no checksum-valid frame
/// after it claims that d was durable (its synced-through LSN ≥ d), and (3) no checksum-valid
/// frame after it belongs elsewhere (another partition or segment, or an LSN below d). Anything
/// else is mid-log damage.
public struct WALScanner {
    public let fileSystem: any FileSystem
    public let directory: String
    public let partition: WALPartitionID
    let mutations: Set<EngineMutation>
    /// The fsync policy damage is classified under when no segment header of the partition
    /// survives to say what the damaged bytes were written under: the policy the log is
    /// configured with now (`strict`, the conservative choice, when unknown).
    let policyWhenUnknown: FsyncPolicy

    public init(fileSystem: any FileSystem, directory: String, partition: WALPartitionID, policyWhenUnknown: FsyncPolicy = .strict) {
        self.init(fileSystem: fileSystem, directory: directory, partition: partition, mutations: [], policyWhenUnknown: policyWhenUnknown)
    }

    /// A scanner with the simulator's deliberate bugs (`EngineMutation`), which only the engine's
    /// own configuration passes on.
    init(fileSystem: any FileSystem, directory: String, partition: WALPartitionID, mutations: Set<EngineMutation>, policyWhenUnknown: FsyncPolicy) {
        self.fileSystem = fileSystem
        self.directory = directory
        self.partition = partition
        self.mutations = mutations
        self.policyWhenUnknown = policyWhenUnknown
    }

    /// `segment-<16 hex digits>.wal`.
    public static func segmentFileName(index: UInt64) -> String {
        let hex = String(index, radix: 16)
        return "segment-" + String(repeating: "0", count: 16 - hex.count) + hex + ".wal"
    }

    static func segmentIndex(fileName: String) -> UInt64? {
        guard fileName.count == 28, fileName.hasPrefix("segment-"), fileName.hasSuffix(".wal") else { return nil }
        let hex = fileName.dropFirst(8).prefix(16)
        guard hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        return UInt64(hex, radix: 16)
    }

    /// The segment files of the partition, sorted by index. Other names (forensic copies of
    /// torn tails, temporary files) are ignored.
    func segmentFiles() throws(WALError) -> [(index: UInt64, path: String)] {
        let names: [String]
        do {
            guard try fileSystem.exists(directory) else { return [] }
            names = try fileSystem.listDirectory(directory)
        } catch {
            throw WALError.io(error, partition: partition, "listing \(directory)")
        }
        return names.compactMap { name in
            Self.segmentIndex(fileName: name).map { ($0, PathComponents.join(directory, name)) }
        }.sorted { $0.index < $1.index }
    }

    /// The file, in a partition directory, that names the partition's first segment once
    /// retention has deleted older ones: 8 bytes of segment index and a masked CRC32C of them.
    public static let firstSegmentMarkerName = "FIRST_SEGMENT"

    static func encodeFirstSegmentMarker(index: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(index)
        bytes.appendLittleEndian(CRC32C.mask(CRC32C.checksum(bytes)))
        return bytes
    }

    /// The index the partition's chain must start at: 1, or what the marker says.
    func firstSegmentIndex() throws(WALError) -> UInt64 {
        let path = PathComponents.join(directory, Self.firstSegmentMarkerName)
        func verifies(_ bytes: [UInt8]) -> Bool {
            bytes.count == 12 && CRC32C.mask(CRC32C.checksum(bytes[0..<8])) == bytes.littleEndian(at: 8, as: UInt32.self)
        }
        let read: (bytes: [UInt8], verified: Bool)
        do {
            guard try fileSystem.exists(path) else { return 1 }
            // A bad read is read again (see `scan`); bounded.
            read = try fileSystem.readFile(path, verifies: verifies)
        } catch {
            throw WALError.io(error, partition: partition, "reading \(path)")
        }
        guard read.verified else {
            throw WALError(
                kind: .midLogDamage, partition: partition,
                damage: WALDamage(damageClass: .badSegmentHeader, path: path, offset: 0, expectedLSN: 0, detail: "first-segment marker does not verify"),
                cause: nil, message: "the marker naming the first segment is damaged")
        }
        return read.bytes.littleEndian(at: 0, as: UInt64.self)
    }

    /// Scans the partition. `visit` sees every trusted record in LSN order; after a scan that
    /// ends in mid-log damage the caller must discard what it was given.
    public func scan(
        mode: WALRecoveryMode,
        visit: (WALFrameHeader, UnsafeRawBufferPointer) throws -> Void = { _, _ in }
    ) throws -> WALPartitionScan {
        // Segments below the first one are left over from a retention run that crashed after
        // writing the marker: they are no longer part of the chain.
        let firstIndex = try firstSegmentIndex()
        let files = try segmentFiles().filter { $0.index >= firstIndex }
        var scan = WALPartitionScan(
            partition: partition, directory: directory, segments: [], segmentsAfterDamage: [], firstLSN: 1,
            lastLSN: 0, closingChecksum: 0, damage: nil, verdict: nil, evidence: "", skipped: [], recordsRead: 0,
            bytesRead: 0)
        for (position, file) in files.enumerated() {
            var bytes = try read(file.path)
            scan.bytesRead += UInt64(bytes.count)
            let before = scan
            var visitedThrough = scan.lastLSN
            var found: WALDamage?
            // A damaged read is read again: a bad read (bit rot on the way, a misdirected read)
            // can only make damage appear earlier, never fabricate a frame that verifies (every
            // frame checks its CRC32C, partition, segment and LSN). So the first clean read wins,
            // and when every read shows damage the read that verified the most is used. A bad
            // read must neither refuse nor truncate. Bounded: a few reads.
            var best: (scan: WALPartitionScan, found: WALDamage?, bytes: [UInt8])?
            for attempt in 0...BadReads.rereadsMax {
                scan = before
                found = try bytes.withUnsafeBytes { buffer throws -> WALDamage? in
                    try scanSegment(
                        buffer, file: file, isFirst: position == 0, firstIndex: firstIndex, mode: mode, scan: &scan,
                        visit: { header, payload in
                            // Records an earlier, damaged read already handed over are not repeated.
                            guard header.lsn > visitedThrough else { return }
                            try visit(header, payload)
                        })
                }
                visitedThrough = max(visitedThrough, scan.lastLSN)
                guard let damage = found else {
                    if attempt > 0 { Probe.walTransientReadDamage.hit() }
                    best = (scan, nil, bytes)
                    break
                }
                if let current = best, let currentDamage = current.found,
                    (current.scan.lastLSN, currentDamage.offset) >= (scan.lastLSN, damage.offset)
                {
                    // An earlier read got further.
                } else {
                    best = (scan, found, bytes)
                }
                if attempt == BadReads.rereadsMax { break }
                bytes = try read(file.path)
            }
            scan = best!.scan
            found = best!.found
            bytes = best!.bytes
            if let found {
                scan.damage = found
                let rest = files[(position + 1)...].map(\.path)
                scan.segmentsAfterDamage = rest
                (scan.verdict, scan.evidence) = classify(found, bytes: bytes, laterSegments: rest, scan: scan)
                break
            }
        }
        scan.firstLSN = scan.segments.first?.header?.firstLSN ?? (scan.lastLSN + 1)
        return scan
    }

    /// Reads a segment as the media holds it (`readFileFromMedia`), so pages a failed fsync
    /// marked clean are not mistaken for durable records.
    private func read(_ path: String) throws(WALError) -> [UInt8] {
        do {
            return try fileSystem.readFileFromMedia(path)
        } catch {
            throw WALError.io(error, partition: partition, "reading \(path)")
        }
    }

    /// Scans one segment, appending it to `scan.segments`. Returns the first damage (nil when
    /// the segment is clean, or in salvage mode where damage is skipped).
    private func scanSegment(
        _ bytes: UnsafeRawBufferPointer, file: (index: UInt64, path: String), isFirst: Bool, firstIndex: UInt64,
        mode: WALRecoveryMode,
        scan: inout WALPartitionScan, visit: (WALFrameHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws -> WALDamage? {
        var segment = WALScannedSegment(
            path: file.path, index: file.index, header: nil, headerChecksum: 0, lastLSN: scan.lastLSN,
            closingChecksum: scan.closingChecksum, validEndOffset: 0, sizeBytes: UInt64(bytes.count))
        if let damage = checkHeader(bytes, file: file, isFirst: isFirst, firstIndex: firstIndex, scan: &scan, segment: &segment) {
            scan.segments.append(segment)
            return damage
        }
        let found = try scanFrames(bytes, file: file, mode: mode, scan: &scan, segment: &segment, visit: visit)
        if segment.validEndOffset == 0 { segment.validEndOffset = UInt64(WALFormat.segmentHeaderBytes) }
        scan.segments.append(segment)
        return found
    }

    /// The damage found at `offset` of `file`, expecting the LSN after `scan`'s last.
    private func damage(
        _ damageClass: WALDamageClass, _ offset: Int, _ detail: String, file: (index: UInt64, path: String), scan: WALPartitionScan
    ) -> WALDamage {
        WALDamage(damageClass: damageClass, path: file.path, offset: UInt64(offset), expectedLSN: scan.lastLSN + 1, detail: detail)
    }

    /// Decodes the segment header and checks that it continues the chain (index, partition,
    /// previous LSN and checksum); on success the scan continues from the header's position.
    private func checkHeader(
        _ bytes: UnsafeRawBufferPointer, file: (index: UInt64, path: String), isFirst: Bool, firstIndex: UInt64,
        scan: inout WALPartitionScan, segment: inout WALScannedSegment
    ) -> WALDamage? {
        let header: WALSegmentHeader
        switch WALSegmentHeader.decode(bytes) {
        case .failure(let reason):
            return damage(.badSegmentHeader, 0, reason.rawValue, file: file, scan: scan)
        case .success(let (decoded, checksum)):
            header = decoded
            segment.header = decoded
            segment.headerChecksum = checksum
        }
        if isFirst && file.index != firstIndex {
            return damage(.missingSegment, 0, "the chain starts at segment \(firstIndex), the first file is \(file.index)", file: file, scan: scan)
        }
        if let previous = scan.segments.last {
            if header.partition == partition && header.segmentIndex == previous.index {
                return damage(.duplicateSegment, 0, "a second copy of segment \(previous.index)", file: file, scan: scan)
            }
            if file.index != previous.index + 1 {
                return damage(.missingSegment, 0, "segment \(previous.index + 1) is missing before \(file.index)", file: file, scan: scan)
            }
        }
        guard header.partition == partition, header.segmentIndex == file.index else {
            return damage(
                .badSegmentHeader, 0,
                "header names partition \(header.partition) segment \(header.segmentIndex), file is \(partition) segment \(file.index)",
                file: file, scan: scan)
        }
        if isFirst {
            scan.lastLSN = header.previousLastLSN
            scan.closingChecksum = header.previousChecksum
            segment.lastLSN = header.previousLastLSN
        } else if header.previousLastLSN != scan.lastLSN || header.previousChecksum != scan.closingChecksum {
            return damage(
                header.firstLSN <= scan.lastLSN ? .duplicateSegment : .chainBreak, 0,
                "header continues LSN \(header.previousLastLSN) checksum \(header.previousChecksum), "
                    + "previous segment ends at LSN \(scan.lastLSN) checksum \(scan.closingChecksum)",
                file: file, scan: scan)
        }
        scan.closingChecksum = segment.headerChecksum
        segment.closingChecksum = segment.headerChecksum
        return nil
    }

    /// Reads the segment's frames in order, visiting each valid one; stops at the clean end, or
    /// at the first damage (returned), or in salvage mode skips it and resynchronises.
    private func scanFrames(
        _ bytes: UnsafeRawBufferPointer, file: (index: UInt64, path: String), mode: WALRecoveryMode,
        scan: inout WALPartitionScan, segment: inout WALScannedSegment, visit: (WALFrameHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws -> WALDamage? {
        var offset = WALFormat.segmentHeaderBytes
        // Bounded: every round advances offset by at least one frame alignment or leaves.
        while offset < bytes.count {
            var problem: (WALDamageClass, String)
            switch WALFrameCodec.decode(bytes, at: offset) {
            case .frame(let frame):
                if frame.partition != partition || frame.segmentIndexLow != UInt32(truncatingIfNeeded: file.index) {
                    problem = (.foreignRecord, "frame of \(frame.partition) segment \(frame.segmentIndexLow)")
                } else if frame.lsn != scan.lastLSN + 1 {
                    problem = (frame.lsn <= scan.lastLSN ? .foreignRecord : .lsnGap, "frame has LSN \(frame.lsn), expected \(scan.lastLSN + 1)")
                } else {
                    let payloadStart = offset + WALFormat.frameHeaderBytes
                    try visit(frame, UnsafeRawBufferPointer(rebasing: bytes[payloadStart..<(payloadStart + frame.payloadLength)]))
                    scan.lastLSN = frame.lsn
                    scan.closingChecksum = frame.headerChecksum
                    scan.recordsRead += 1
                    segment.lastLSN = frame.lsn
                    segment.closingChecksum = frame.headerChecksum
                    offset += frame.frameLength
                    segment.validEndOffset = UInt64(offset)
                    continue
                }
            case .zeroHeader:
                if WALFrameCodec.isAllZero(bytes, offset, bytes.count) { return nil }
                problem = (.zeroedRegion, "zero bytes followed by data")
            case .needMoreData:
                problem = (.truncatedFrame, "the file ends inside a frame")
            case .damaged(let damageClass):
                problem = (damageClass, "frame does not verify")
            }
            let here = damage(problem.0, offset, problem.1, file: file, scan: scan)
            guard mode == .salvage else { return here }
            // Salvage: resynchronise on the next valid frame of this partition and segment.
            scan.skipped.append(here)
            guard let next = nextValidFrame(bytes, after: offset, segmentIndex: file.index, minimumLSN: scan.lastLSN + 1) else { return nil }
            scan.lastLSN = next.lsn - 1
            offset = next.offset
        }
        return nil
    }

    /// The next offset after `offset` holding a checksum-valid frame of this partition and
    /// segment with an LSN of at least `minimumLSN`.
    private func nextValidFrame(
        _ bytes: UnsafeRawBufferPointer, after offset: Int, segmentIndex: UInt64, minimumLSN: LSN
    ) -> (offset: Int, lsn: LSN)? {
        var candidate = offset + WALFormat.frameAlignmentBytes
        // Bounded by the segment size.
        while candidate + WALFormat.frameHeaderBytes <= bytes.count {
            if case .frame(let frame) = WALFrameCodec.decode(bytes, at: candidate),
                frame.partition == partition, frame.segmentIndexLow == UInt32(truncatingIfNeeded: segmentIndex),
                frame.lsn >= minimumLSN
            {
                return (candidate, frame.lsn)
            }
            candidate += WALFormat.frameAlignmentBytes
        }
        return nil
    }

    /// Decides whether `damage` is a torn tail, and says why: gathers the evidence, then the
    /// first row of `WALTornTailRule` that applies decides.
    private func classify(
        _ damage: WALDamage, bytes: [UInt8], laterSegments: [String], scan: WALPartitionScan
    ) -> (WALDamageVerdict, String) {
        if mutations.active(.midLogDamageAsTornTail) { return (.tornTail, "mutation: every damage is a torn tail") }
        let evidence = evidence(damage, bytes: bytes, laterSegments: laterSegments, scan: scan)
        let rule = WALTornTailRule.decide(evidence)
        return (rule.verdict, rule.explanation(evidence))
    }

    private func evidence(_ damage: WALDamage, bytes: [UInt8], laterSegments: [String], scan: WALPartitionScan) -> WALTornTailEvidence {
        let damagedSegment = scan.segments.last!
        let chainBroken =
            switch damage.damageClass {
            case .missingSegment, .chainBreak, .duplicateSegment: true
            default: false
            }
        return WALTornTailEvidence(
            writtenUnder: policyWrittenUnder(damagedSegment: damagedSegment, scan: scan, laterSegments: laterSegments),
            damageOffset: damage.offset, chainBroken: chainBroken, laterSegments: laterSegments.count,
            ownRecordAfterDamagedHeader: damage.offset == 0 ? firstOwnFrame(in: bytes, segmentIndex: damagedSegment.index) : nil,
            witness: witness(
                in: bytes, from: Int(damage.offset) + WALFormat.frameAlignmentBytes, segmentIndex: damagedSegment.index,
                damagedLSN: damage.expectedLSN))
    }

    /// The policy the damaged bytes were written under: the damaged segment's own header, or
    /// (when that header is what is damaged) its neighbours'; the configured one when none says.
    private func policyWrittenUnder(damagedSegment: WALScannedSegment, scan: WALPartitionScan, laterSegments: [String]) -> FsyncPolicy {
        var policy = damagedSegment.header?.fsyncPolicy ?? scan.segments.dropLast().last?.header?.fsyncPolicy
        for path in laterSegments where policy == nil {
            // Read again while the header does not decode: a bad read is not a missing header.
            let read = try? fileSystem.readFile(path) { bytes in
                if case .success = WALSegmentHeader.decode(bytes) { true } else { false }
            }
            if let read, case .success(let (header, _)) = WALSegmentHeader.decode(read.bytes) {
                policy = header.fsyncPolicy
            }
        }
        return policy ?? policyWhenUnknown
    }

    /// The offset of the first checksum-valid frame of this partition and segment after the
    /// segment header, if any.
    private func firstOwnFrame(in bytes: [UInt8], segmentIndex: UInt64) -> Int? {
        bytes.withUnsafeBytes { buffer in
            var offset = WALFormat.segmentHeaderBytes
            // Bounded by the segment size.
            while offset + WALFormat.frameHeaderBytes <= buffer.count {
                if case .frame(let frame) = WALFrameCodec.decode(buffer, at: offset), frame.partition == partition,
                    frame.segmentIndexLow == UInt32(truncatingIfNeeded: segmentIndex)
                {
                    return offset
                }
                offset += WALFormat.frameAlignmentBytes
            }
            return nil
        }
    }

    /// A checksum-valid frame at or after `start` that proves the damage is not a torn tail.
    private func witness(in bytes: [UInt8], from start: Int, segmentIndex: UInt64, damagedLSN: LSN) -> String? {
        bytes.withUnsafeBytes { buffer in
            var offset = start
            // Bounded by the segment size.
            while offset + WALFormat.frameHeaderBytes <= buffer.count {
                if case .frame(let frame) = WALFrameCodec.decode(buffer, at: offset) {
                    if frame.partition != partition || frame.segmentIndexLow != UInt32(truncatingIfNeeded: segmentIndex) {
                        return "a valid record of \(frame.partition) segment \(frame.segmentIndexLow) sits at offset \(offset)"
                    }
                    if frame.lsn < damagedLSN {
                        return "a valid record with the older LSN \(frame.lsn) sits at offset \(offset)"
                    }
                    if frame.syncedThroughLSN >= damagedLSN {
                        return "the record with LSN \(frame.lsn) at offset \(offset) was written after LSN \(frame.syncedThroughLSN) was durable"
                    }
                    offset += frame.frameLength
                } else {
                    offset += WALFormat.frameAlignmentBytes
                }
            }
            return nil
        }
    }
}
