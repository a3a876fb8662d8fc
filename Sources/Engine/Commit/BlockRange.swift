/// One committed block as peers exchange it: every touched lane's operations in order, with the
/// claims the receiver checks before anything is written — the lane roots after the block, its
/// MetaRoot and the MetaRoot it chains to.
public struct SyncBlock: Sendable, Equatable {
    /// A lane the block touched and its operations, in the order they were committed.
    public struct Lane: Sendable, Equatable {
        public var lane: Int
        public var operations: [BlockOperation]

        public init(lane: Int, operations: [BlockOperation]) {
            self.lane = lane
            self.operations = operations
        }
    }

    public var height: UInt64
    public var metaRoot: Hash32
    public var previousMetaRoot: Hash32
    /// Every lane's root after the block (untouched lanes keep theirs).
    public var laneRoots: [Hash32]
    /// The touched lanes in ascending order, each with at least one operation.
    public var lanes: [Lane]

    public init(height: UInt64, metaRoot: Hash32, previousMetaRoot: Hash32, laneRoots: [Hash32], lanes: [Lane]) {
        precondition(height > 0, "block heights start at 1")
        precondition(
            zip(lanes, lanes.dropFirst()).allSatisfy { $0.lane < $1.lane } && lanes.allSatisfy { !$0.operations.isEmpty && $0.lane < laneRoots.count },
            "a block's lanes are ascending, in range and not empty")
        self.height = height
        self.metaRoot = metaRoot
        self.previousMetaRoot = previousMetaRoot
        self.laneRoots = laneRoots
        self.lanes = lanes
    }

    /// The block's operations over all lanes.
    public var operationCount: Int { lanes.reduce(0) { $0 + $1.operations.count } }

    /// The bytes the block takes in an encoded range, its frame header included.
    public var encodedBytes: Int {
        let fixed = BlockRangeCodec.frameHeaderBytes + 8 + 32 + 32 + 4 + 32 * laneRoots.count + 4
        return lanes.reduce(fixed) { total, lane in lane.operations.reduce(total + 8) { $0 + LaneBlockRecord.encodedBytes(of: $1) } }
    }
}

/// Why a block range did not decode. `offset` is where in the bytes the problem was found;
/// `blockIndex` is the block (0-based) it belongs to, when it belongs to one.
public struct BlockRangeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The range header's magic, version or checksum is wrong.
        case badHeader = "bad_header"
        /// The bytes end before the range does.
        case truncated
        /// A block's checksum does not match its bytes.
        case checksumMismatch = "checksum_mismatch"
        /// A block's checksummed bytes do not parse as a block (a bug or a hostile peer).
        case malformedBlock = "malformed_block"
        /// Heights do not run on by one from the header's first height.
        case nonConsecutive = "non_consecutive"
        /// More blocks or bytes than the caller allows.
        case tooLarge = "too_large"
        /// The trailer's magic, count or checksum chain is wrong, or bytes follow it.
        case badTrailer = "bad_trailer"
    }

    public var kind: Kind
    public var offset: Int
    public var blockIndex: Int?
    public var message: String

    public init(_ kind: Kind, offset: Int, blockIndex: Int? = nil, _ message: String) {
        self.kind = kind
        self.offset = offset
        self.blockIndex = blockIndex
        self.message = message
    }

    public var description: String {
        "block range \(kind.rawValue) at byte \(offset)" + (blockIndex.map { " (block \($0))" } ?? "") + ": \(message)"
    }
}

/// The encoding of a range of consecutive blocks (`application/x-rivellum-blocks`, in
/// `docs/FORMATS.md`): a checksummed header, each block framed with its length and a CRC32C over
/// length and body, and a trailer that repeats the count and chains every checksum, so that a
/// flipped bit, a cut at any byte, a dropped or reordered block and trailing garbage are all
/// refused. Decoding checks form only; whether the claims are true is the engine's to check
/// (`Engine.commit(_:attested:)`).
public enum BlockRangeCodec {
    static let headerMagic: [UInt8] = Array("RVBLOCKS".utf8)
    static let trailerMagic: [UInt8] = Array("RVBLKEND".utf8)
    static let version: UInt32 = 1
    /// Magic (8), version u32, block count u32, first height u64, reserved u32, CRC32C u32.
    public static let headerBytes = 32
    /// Magic (8), block count u32, CRC32C chain u32.
    public static let trailerBytes = 16
    /// Body length u32, CRC32C u32.
    public static let frameHeaderBytes = 8
    /// The most blocks one range may hold.
    public static let blocksMax = 1_024
    /// The most bytes one range may take: a request asks for at most `requestBytesMax`, but the
    /// first block of a range is always whole, and one block (at most `api.max_body_bytes`, 16
    /// MiB, of operations, plus its roots) fits here.
    public static let rangeBytesMax = 20 << 20
    /// The most bytes a request may ask a range to take (its first block aside).
    public static let requestBytesMax = 16 << 20
    /// The HTTP media type of an encoded range.
    public static let contentType = "application/x-rivellum-blocks"

    /// Encodes consecutive blocks (heights running on by one). An empty range is allowed.
    public static func encode(_ blocks: [SyncBlock]) -> [UInt8] {
        precondition(blocks.count <= blocksMax, "a range holds at most \(blocksMax) blocks")
        precondition(zip(blocks, blocks.dropFirst()).allSatisfy { $0.height + 1 == $1.height }, "a range's heights run on by one")
        var bytes = headerMagic
        bytes.appendLittleEndian(version)
        bytes.appendLittleEndian(UInt32(blocks.count))
        bytes.appendLittleEndian(blocks.first?.height ?? 0)
        bytes.appendLittleEndian(UInt32(0))
        let headerChecksum = CRC32C.checksum(bytes)
        bytes.appendLittleEndian(headerChecksum)
        var chain = headerChecksum
        for block in blocks {
            let body = encodeBody(block)
            assert(BlockRangeCodec.frameHeaderBytes + body.count == block.encodedBytes, "the block's size formula")
            var frame: [UInt8] = []
            frame.appendLittleEndian(UInt32(body.count))
            let checksum = CRC32C.checksum(frame + body)
            frame.appendLittleEndian(checksum)
            bytes += frame
            bytes += body
            chain = chainChecksum(chain, checksum)
        }
        bytes += trailerMagic
        bytes.appendLittleEndian(UInt32(blocks.count))
        bytes.appendLittleEndian(chain)
        return bytes
    }

    /// Decodes a range of at most `blocksMax` blocks; every problem is a `BlockRangeError`, and
    /// nothing partial is returned.
    public static func decode(_ bytes: [UInt8], blocksMax: Int = BlockRangeCodec.blocksMax) throws(BlockRangeError) -> [SyncBlock] {
        precondition(blocksMax >= 0 && blocksMax <= Self.blocksMax)
        guard bytes.count <= rangeBytesMax else { throw BlockRangeError(.tooLarge, offset: 0, "\(bytes.count) bytes; a range takes at most \(rangeBytesMax)") }
        let (count, firstHeight, headerChecksum) = try decodeHeader(bytes, blocksMax: blocksMax)
        var offset = headerBytes
        var chain = headerChecksum
        var blocks: [SyncBlock] = []
        blocks.reserveCapacity(count)
        // Bounded by `count` (at most `blocksMax`); each round consumes a frame or throws.
        for index in 0..<count {
            let (block, checksum, next) = try decodeFrame(bytes, at: offset, index: index)
            guard block.height == firstHeight + UInt64(index) else {
                throw BlockRangeError(.nonConsecutive, offset: offset, blockIndex: index, "height \(block.height), expected \(firstHeight + UInt64(index))")
            }
            blocks.append(block)
            chain = chainChecksum(chain, checksum)
            offset = next
        }
        try checkTrailer(bytes, at: offset, count: count, chain: chain)
        return blocks
    }

    // MARK: Parts

    private static func chainChecksum(_ chain: UInt32, _ checksum: UInt32) -> UInt32 {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(chain)
        bytes.appendLittleEndian(checksum)
        return CRC32C.checksum(bytes)
    }

    private static func decodeHeader(_ bytes: [UInt8], blocksMax: Int) throws(BlockRangeError) -> (Int, UInt64, UInt32) {
        guard bytes.count >= headerBytes + trailerBytes else {
            throw BlockRangeError(.truncated, offset: bytes.count, "\(bytes.count) bytes cannot hold a range's header and trailer")
        }
        var reader = ByteReader(Array(bytes[0..<headerBytes]))
        guard reader.bytes(8) == headerMagic, reader.integer(UInt32.self) == version, let count = reader.integer(UInt32.self),
            let firstHeight = reader.integer(UInt64.self), reader.integer(UInt32.self) == 0, let checksum = reader.integer(UInt32.self),
            checksum == CRC32C.checksum(bytes[0..<(headerBytes - 4)])
        else { throw BlockRangeError(.badHeader, offset: 0, "not a version-\(version) block range, or its header does not verify") }
        guard Int(count) <= blocksMax else { throw BlockRangeError(.tooLarge, offset: 12, "\(count) blocks; at most \(blocksMax) were asked for") }
        guard count == 0 || firstHeight > 0, firstHeight <= UInt64.max - UInt64(count) else {
            throw BlockRangeError(.badHeader, offset: 16, "first height \(firstHeight) with \(count) blocks")
        }
        return (Int(count), firstHeight, checksum)
    }

    private static func decodeFrame(_ bytes: [UInt8], at offset: Int, index: Int) throws(BlockRangeError) -> (SyncBlock, UInt32, Int) {
        guard bytes.count - offset >= frameHeaderBytes + trailerBytes else {
            throw BlockRangeError(.truncated, offset: offset, blockIndex: index, "the bytes end before block \(index)")
        }
        let length = Int(bytes.littleEndian(at: offset, as: UInt32.self))
        let checksum = bytes.littleEndian(at: offset + 4, as: UInt32.self)
        let bodyStart = offset + frameHeaderBytes
        guard length <= bytes.count - bodyStart - trailerBytes else {
            throw BlockRangeError(.truncated, offset: offset, blockIndex: index, "block \(index) says \(length) bytes; fewer are left")
        }
        let body = bytes[bodyStart..<(bodyStart + length)]
        guard checksum == CRC32C.checksum(Array(bytes[offset..<(offset + 4)]) + body) else {
            throw BlockRangeError(.checksumMismatch, offset: offset, blockIndex: index, "block \(index)'s bytes do not match its checksum")
        }
        guard let block = decodeBody(Array(body)) else {
            throw BlockRangeError(.malformedBlock, offset: bodyStart, blockIndex: index, "block \(index) verifies but does not parse")
        }
        return (block, checksum, bodyStart + length)
    }

    private static func checkTrailer(_ bytes: [UInt8], at offset: Int, count: Int, chain: UInt32) throws(BlockRangeError) {
        guard bytes.count - offset >= trailerBytes else { throw BlockRangeError(.truncated, offset: offset, "the bytes end inside the trailer") }
        var reader = ByteReader(Array(bytes[offset...]))
        guard reader.bytes(8) == trailerMagic, reader.integer(UInt32.self) == UInt32(count), reader.integer(UInt32.self) == chain else {
            throw BlockRangeError(.badTrailer, offset: offset, "the trailer does not close \(count) blocks")
        }
        guard reader.isAtEnd else { throw BlockRangeError(.badTrailer, offset: offset + trailerBytes, "bytes follow the trailer") }
    }

    /// Height u64, MetaRoot (32), previous MetaRoot (32), lane count u32, every lane root (32
    /// each), touched-lane count u32, then per touched lane: lane index u32, operation count u32
    /// and the operations (`BlockOperation.append(to:)`).
    static func encodeBody(_ block: SyncBlock) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(block.height)
        bytes += block.metaRoot.bytes
        bytes += block.previousMetaRoot.bytes
        bytes.appendLittleEndian(UInt32(block.laneRoots.count))
        for root in block.laneRoots { bytes += root.bytes }
        bytes.appendLittleEndian(UInt32(block.lanes.count))
        for lane in block.lanes {
            bytes.appendLittleEndian(UInt32(lane.lane))
            bytes.appendLittleEndian(UInt32(lane.operations.count))
            for operation in lane.operations { operation.append(to: &bytes) }
        }
        return bytes
    }

    static func decodeBody(_ bytes: [UInt8]) -> SyncBlock? {
        var reader = ByteReader(bytes)
        guard let height = reader.integer(UInt64.self), height > 0, let metaRoot = reader.bytes(32), let previous = reader.bytes(32),
            let laneCount = reader.integer(UInt32.self), EngineConfiguration.laneCountRange.contains(Int(laneCount))
        else { return nil }
        var laneRoots: [Hash32] = []
        for _ in 0..<laneCount {
            guard let root = reader.bytes(32) else { return nil }
            laneRoots.append(Hash32(bytes: root))
        }
        guard let touched = reader.integer(UInt32.self), touched <= laneCount else { return nil }
        var lanes: [SyncBlock.Lane] = []
        for _ in 0..<touched {
            guard let lane = reader.integer(UInt32.self), lane < laneCount, lanes.last.map({ $0.lane < Int(lane) }) ?? true,
                let count = reader.integer(UInt32.self), count > 0, count <= 1_000_000, let operations = reader.operations(count: Int(count))
            else { return nil }
            lanes.append(SyncBlock.Lane(lane: Int(lane), operations: operations))
        }
        guard reader.isAtEnd else { return nil }
        return SyncBlock(height: height, metaRoot: Hash32(bytes: metaRoot), previousMetaRoot: Hash32(bytes: previous), laneRoots: laneRoots, lanes: lanes)
    }
}
