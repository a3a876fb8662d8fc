/// The on-disk layout of WAL segments and record frames (documented with a hex example in
/// docs/FORMATS.md). All integers are little-endian.
///
/// Segment header, 64 bytes:
/// ```
/// 0   magic "RVWALSEG"            8 bytes
/// 8   format version u16          (1)
/// 10  fsync policy code u8        (1 strict, 2 balanced, 3 dev_fast)
/// 11  reserved u8                 (0)
/// 12  partition id u32
/// 16  segment index u64
/// 24  first LSN u64
/// 32  previous last LSN u64       (0 for a partition's first segment)
/// 40  previous checksum u32       (the previous segment's closing checksum, 0 for the first)
/// 44  reserved u32                (0)
/// 48  created at u64              (seconds since the Unix epoch, from the WAL's clock)
/// 56  reserved u32                (0)
/// 60  header checksum u32         masked CRC32C of bytes 0..<60
/// ```
///
/// Record frame: a 40-byte header, the payload, then zero padding to a multiple of 8 that no
/// reader trusts or checks.
/// ```
/// 0   header checksum u32         masked CRC32C of header bytes 4..<40
/// 4   payload length u32
/// 8   LSN u64
/// 16  synced-through LSN u64      the highest LSN the writer knew durable when it wrote this
/// 24  partition id u32
/// 28  segment index u32           (low 32 bits)
/// 32  record type u8
/// 33  flags u8                    (0)
/// 34  reserved u16                (0)
/// 36  payload checksum u32        masked CRC32C of the payload
/// ```
/// The header checksum covers the length, LSN, partition, segment and the payload checksum, so a
/// torn or flipped length can never frame garbage, and a record copied to another partition,
/// segment or position fails the checks that follow. The synced-through LSN is recovery's second
/// witness: a valid record that says LSN n was durable proves that damage at n is not a torn tail.
/// A segment's closing checksum is the header checksum of its last frame, or its own header
/// checksum when it holds no frame.
public enum WALFormat {
    public static let formatVersion: UInt16 = 1
    public static let segmentMagic: [UInt8] = Array("RVWALSEG".utf8)
    public static let segmentHeaderBytes = 64
    public static let frameHeaderBytes = 40
    public static let frameAlignmentBytes = 8
    /// The largest payload a record may carry.
    public static let recordBytesMax = 16 << 20

    /// The total size of a frame with a payload of `payloadLength` bytes.
    public static func frameLength(payloadLength: Int) -> Int {
        frameHeaderBytes + (payloadLength + frameAlignmentBytes - 1) / frameAlignmentBytes * frameAlignmentBytes
    }
}

/// The header at the start of every segment file.
public struct WALSegmentHeader: Sendable, Equatable {
    public var fsyncPolicy: FsyncPolicy
    public var partition: WALPartitionID
    public var segmentIndex: UInt64
    public var firstLSN: LSN
    public var previousLastLSN: LSN
    public var previousChecksum: UInt32
    public var createdAtSeconds: UInt64

    public init(
        fsyncPolicy: FsyncPolicy, partition: WALPartitionID, segmentIndex: UInt64, firstLSN: LSN,
        previousLastLSN: LSN, previousChecksum: UInt32, createdAtSeconds: UInt64
    ) {
        precondition(firstLSN == previousLastLSN + 1, "a segment starts right after the previous one")
        self.fsyncPolicy = fsyncPolicy
        self.partition = partition
        self.segmentIndex = segmentIndex
        self.firstLSN = firstLSN
        self.previousLastLSN = previousLastLSN
        self.previousChecksum = previousChecksum
        self.createdAtSeconds = createdAtSeconds
    }

    /// The 64 encoded bytes and their masked checksum (the segment's opening checksum).
    public func encoded() -> (bytes: [UInt8], checksum: UInt32) {
        var bytes = WALFormat.segmentMagic
        bytes.reserveCapacity(WALFormat.segmentHeaderBytes)
        bytes.appendLittleEndian(WALFormat.formatVersion)
        bytes.append(fsyncPolicy.code)
        bytes.append(0)
        bytes.appendLittleEndian(partition.rawValue)
        bytes.appendLittleEndian(segmentIndex)
        bytes.appendLittleEndian(firstLSN)
        bytes.appendLittleEndian(previousLastLSN)
        bytes.appendLittleEndian(previousChecksum)
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(createdAtSeconds)
        bytes.appendLittleEndian(UInt32(0))
        let checksum = CRC32C.mask(CRC32C.checksum(bytes))
        bytes.appendLittleEndian(checksum)
        assert(bytes.count == WALFormat.segmentHeaderBytes)
        return (bytes, checksum)
    }

    /// Decodes a header, or says why it cannot.
    public static func decode(_ bytes: some Collection<UInt8>) -> Result<(WALSegmentHeader, UInt32), WALHeaderError> {
        guard bytes.count >= WALFormat.segmentHeaderBytes else { return .failure(.tooShort) }
        let header = Array(bytes.prefix(WALFormat.segmentHeaderBytes))
        guard header.prefix(8).elementsEqual(WALFormat.segmentMagic) else { return .failure(.badMagic) }
        let stored = header.littleEndian(at: 60, as: UInt32.self)
        guard CRC32C.mask(CRC32C.checksum(header[0..<60])) == stored else { return .failure(.checksumMismatch) }
        guard header.littleEndian(at: 8, as: UInt16.self) == WALFormat.formatVersion else {
            return .failure(.unsupportedVersion)
        }
        guard let policy = FsyncPolicy(code: header[10]) else { return .failure(.unsupportedVersion) }
        let firstLSN = header.littleEndian(at: 24, as: UInt64.self)
        let previousLastLSN = header.littleEndian(at: 32, as: UInt64.self)
        guard firstLSN == previousLastLSN &+ 1 else { return .failure(.inconsistent) }
        let decoded = WALSegmentHeader(
            fsyncPolicy: policy, partition: WALPartitionID(rawValue: header.littleEndian(at: 12, as: UInt32.self)),
            segmentIndex: header.littleEndian(at: 16, as: UInt64.self), firstLSN: firstLSN,
            previousLastLSN: previousLastLSN, previousChecksum: header.littleEndian(at: 40, as: UInt32.self),
            createdAtSeconds: header.littleEndian(at: 48, as: UInt64.self))
        return .success((decoded, stored))
    }
}

/// Why a segment header could not be decoded.
public enum WALHeaderError: String, Error, Sendable {
    case tooShort = "shorter than a segment header"
    case badMagic = "no segment magic"
    case checksumMismatch = "header checksum mismatch"
    case unsupportedVersion = "unsupported format version or policy code"
    case inconsistent = "first LSN does not follow the previous last LSN"
}

/// The decoded header of one record frame.
public struct WALFrameHeader: Sendable, Equatable {
    public var headerChecksum: UInt32
    public var payloadLength: Int
    public var lsn: LSN
    public var syncedThroughLSN: LSN
    public var partition: WALPartitionID
    public var segmentIndexLow: UInt32
    public var recordType: UInt8
    public var payloadChecksum: UInt32

    public var frameLength: Int { WALFormat.frameLength(payloadLength: payloadLength) }
}

/// What the frame decoder found at an offset.
public enum WALFrameDecoding: Sendable, Equatable {
    /// A whole, checksum-valid frame.
    case frame(WALFrameHeader)
    /// The bytes end before the frame does; with more input it may decode.
    case needMoreData
    /// An all-zero header: unwritten space, if nothing but zeros follows.
    case zeroHeader
    /// The frame is damaged.
    case damaged(WALDamageClass)
}

public enum WALFrameCodec {
    /// Appends one encoded frame to `buffer` and returns its header checksum.
    @discardableResult
    public static func encode(
        payload: UnsafeRawBufferPointer, lsn: LSN, syncedThroughLSN: LSN, partition: WALPartitionID,
        segmentIndex: UInt64, recordType: UInt8, into buffer: inout [UInt8]
    ) -> UInt32 {
        precondition(payload.count <= WALFormat.recordBytesMax, "record of \(payload.count) bytes is too large")
        precondition(lsn > 0 && syncedThroughLSN < lsn, "synced-through LSN must precede the record")
        let start = buffer.count
        buffer.appendLittleEndian(UInt32(0))
        buffer.appendLittleEndian(UInt32(payload.count))
        buffer.appendLittleEndian(lsn)
        buffer.appendLittleEndian(syncedThroughLSN)
        buffer.appendLittleEndian(partition.rawValue)
        buffer.appendLittleEndian(UInt32(truncatingIfNeeded: segmentIndex))
        buffer.append(recordType)
        buffer.append(0)
        buffer.appendLittleEndian(UInt16(0))
        buffer.appendLittleEndian(CRC32C.mask(CRC32C.checksum(payload)))
        let headerChecksum = buffer.withUnsafeBytes { bytes in
            CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(start + 4)..<(start + WALFormat.frameHeaderBytes)])))
        }
        buffer.withUnsafeMutableBytes { bytes in
            bytes.storeBytes(of: headerChecksum.littleEndian, toByteOffset: start, as: UInt32.self)
        }
        buffer.append(contentsOf: payload)
        let padding = WALFormat.frameLength(payloadLength: payload.count) - WALFormat.frameHeaderBytes - payload.count
        buffer.append(contentsOf: repeatElement(0, count: padding))
        return headerChecksum
    }

    /// Decodes the frame that starts at `offset` in `bytes`. Trusts nothing before both checksums
    /// match: the length is used only once the header checksum has vouched for it.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> WALFrameDecoding {
        precondition(offset >= 0 && offset <= bytes.count)
        let available = bytes.count - offset
        guard available >= WALFormat.frameHeaderBytes else {
            return available == 0 || !isAllZero(bytes, offset, bytes.count) ? .needMoreData : .zeroHeader
        }
        let headerEnd = offset + WALFormat.frameHeaderBytes
        if isAllZero(bytes, offset, headerEnd) { return .zeroHeader }
        let stored = bytes.loadLittleEndian(at: offset, as: UInt32.self)
        let computed = CRC32C.mask(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 4)..<headerEnd])))
        guard stored == computed else { return .damaged(.headerChecksumMismatch) }
        let header = WALFrameHeader(
            headerChecksum: stored,
            payloadLength: Int(bytes.loadLittleEndian(at: offset + 4, as: UInt32.self)),
            lsn: bytes.loadLittleEndian(at: offset + 8, as: UInt64.self),
            syncedThroughLSN: bytes.loadLittleEndian(at: offset + 16, as: UInt64.self),
            partition: WALPartitionID(rawValue: bytes.loadLittleEndian(at: offset + 24, as: UInt32.self)),
            segmentIndexLow: bytes.loadLittleEndian(at: offset + 28, as: UInt32.self),
            recordType: bytes[offset + 32],
            payloadChecksum: bytes.loadLittleEndian(at: offset + 36, as: UInt32.self))
        guard header.payloadLength <= WALFormat.recordBytesMax, header.syncedThroughLSN < header.lsn else {
            // A checksum-valid header with impossible fields was not written by this format.
            return .damaged(.foreignRecord)
        }
        guard available >= header.frameLength else { return .needMoreData }
        let payload = UnsafeRawBufferPointer(rebasing: bytes[headerEnd..<(headerEnd + header.payloadLength)])
        guard CRC32C.mask(CRC32C.checksum(payload)) == header.payloadChecksum else {
            return .damaged(.payloadChecksumMismatch)
        }
        return .frame(header)
    }

    static func isAllZero(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Bool {
        var index = start
        // Bounded by end - start.
        while index < end {
            if bytes[index] != 0 { return false }
            index += 1
        }
        return true
    }
}
