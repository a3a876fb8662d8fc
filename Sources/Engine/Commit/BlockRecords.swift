/// One state change of a block: a put (`value` set) or a delete (`value == nil`).
public struct BlockOperation: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]?

    public init(key: [UInt8], value: [UInt8]?) {
        self.key = key
        self.value = value
    }

    /// Appends the operation as lane records and block ranges hold it (little-endian): key length
    /// u32, key, then 0 for a delete, or 1, value length u32 and the value for a put.
    func append(to bytes: inout [UInt8]) {
        bytes.appendLittleEndian(UInt32(key.count))
        bytes += key
        if let value {
            bytes.append(1)
            bytes.appendLittleEndian(UInt32(value.count))
            bytes += value
        } else {
            bytes.append(0)
        }
    }
}

/// WAL record types of the engine's commit protocol.
public enum EngineRecordType: UInt8 {
    /// A lane's part of a block, in the lane's partition.
    case laneBlock = 1
    /// The commit record of a block, in the meta partition.
    case commit = 2
}

/// A lane's part of a block: the operations routed to the lane and the lane root after them.
///
/// Layout (little-endian): height u64, lane root (32), operation count u32, then per operation:
/// key length u32, key, kind u8 (1 put, 0 delete), and for a put value length u32 and value.
public struct LaneBlockRecord: Sendable, Equatable {
    public var height: UInt64
    public var laneRoot: Hash32
    public var operations: [BlockOperation]

    public init(height: UInt64, laneRoot: Hash32, operations: [BlockOperation]) {
        self.height = height
        self.laneRoot = laneRoot
        self.operations = operations
    }

    /// Height (8), lane root (32), operation count (4).
    public static let headerBytes = 44

    /// The bytes `operation` takes in an encoded record: key length (4), key, value flag (1), and
    /// for a put the value length (4) and the value.
    public static func encodedBytes(of operation: BlockOperation) -> Int {
        4 + operation.key.count + 1 + (operation.value.map { 4 + $0.count } ?? 0)
    }

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(operations.reduce(Self.headerBytes) { $0 + Self.encodedBytes(of: $1) })
        bytes.appendLittleEndian(height)
        bytes += laneRoot.bytes
        bytes.appendLittleEndian(UInt32(operations.count))
        for operation in operations { operation.append(to: &bytes) }
        assert(bytes.count == operations.reduce(Self.headerBytes) { $0 + Self.encodedBytes(of: $1) }, "the lane record's size formula")
        return bytes
    }

    /// Decodes a record; nil when the bytes are not a well-formed record (which, behind the
    /// WAL's checksums, means a bug or a foreign writer).
    public static func decode(_ bytes: some Collection<UInt8>) -> LaneBlockRecord? {
        var reader = ByteReader(Array(bytes))
        guard let height = reader.integer(UInt64.self), let root = reader.bytes(32),
            let count = reader.integer(UInt32.self), count <= 1_000_000
        else { return nil }
        guard let operations = reader.operations(count: Int(count)), reader.isAtEnd else { return nil }
        return LaneBlockRecord(height: height, laneRoot: Hash32(bytes: root), operations: operations)
    }
}

/// The commit record of a block: which lane records make it up, every lane root after it, and
/// the MetaRoot chained to the previous one. A block is committed exactly when its commit record
/// and every lane record it names are in the log.
///
/// Layout (little-endian): height u64, MetaRoot (32), previous MetaRoot (32), lane count u32,
/// then per lane: touched u8, lane LSN u64 (0 when untouched), lane root (32); then the block's
/// operation count u32; then the durable height u64 (absent in records written before it
/// existed, which decode with 0).
public struct CommitRecord: Sendable, Equatable {
    public struct Lane: Sendable, Equatable {
        /// The LSN of the lane's record for this block, nil when the block did not touch the lane.
        public var lsn: LSN?
        public var laneRoot: Hash32
    }

    public var height: UInt64
    public var metaRoot: Hash32
    public var previousMetaRoot: Hash32
    public var lanes: [Lane]
    /// How many operations the block carried (all lanes).
    public var operationCount: UInt32
    /// The highest height whose every record (lane and commit) was durable when this record was
    /// framed; always below `height`. Recovery's witness: a block at or below it that cannot be
    /// recovered was damaged after it was synced, never torn.
    public var durableHeight: UInt64 = 0

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(height)
        bytes += metaRoot.bytes
        bytes += previousMetaRoot.bytes
        bytes.appendLittleEndian(UInt32(lanes.count))
        for lane in lanes {
            bytes.append(lane.lsn == nil ? 0 : 1)
            bytes.appendLittleEndian(lane.lsn ?? 0)
            bytes += lane.laneRoot.bytes
        }
        bytes.appendLittleEndian(operationCount)
        bytes.appendLittleEndian(durableHeight)
        return bytes
    }

    public static func decode(_ bytes: some Collection<UInt8>) -> CommitRecord? {
        var reader = ByteReader(Array(bytes))
        guard let height = reader.integer(UInt64.self), let metaRoot = reader.bytes(32),
            let previous = reader.bytes(32), let count = reader.integer(UInt32.self),
            EngineConfiguration.laneCountRange.contains(Int(count))
        else { return nil }
        var lanes: [Lane] = []
        for _ in 0..<count {
            guard let touched = reader.integer(UInt8.self), touched <= 1, let lsn = reader.integer(UInt64.self),
                let root = reader.bytes(32)
            else { return nil }
            lanes.append(Lane(lsn: touched == 1 ? lsn : nil, laneRoot: Hash32(bytes: root)))
        }
        guard let operationCount = reader.integer(UInt32.self) else { return nil }
        var durableHeight: UInt64 = 0
        if !reader.isAtEnd {
            guard let value = reader.integer(UInt64.self), value < max(height, 1) else { return nil }
            durableHeight = value
        }
        guard reader.isAtEnd else { return nil }
        return CommitRecord(
            height: height, metaRoot: Hash32(bytes: metaRoot), previousMetaRoot: Hash32(bytes: previous), lanes: lanes,
            operationCount: operationCount, durableHeight: durableHeight)
    }
}

/// Reads little-endian fields from a byte array, refusing to read past its end.
struct ByteReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func integer<Value: FixedWidthInteger>(_ type: Value.Type) -> Value? {
        let size = MemoryLayout<Value>.size
        guard bytes.count - offset >= size else { return nil }
        let value = bytes.littleEndian(at: offset, as: Value.self)
        offset += size
        return value
    }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, bytes.count - offset >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    /// `count` operations as `BlockOperation.append(to:)` writes them; nil when they do not parse.
    mutating func operations(count: Int) -> [BlockOperation]? {
        var operations: [BlockOperation] = []
        operations.reserveCapacity(min(count, 65_536))
        // Bounded by `count`, which callers cap, and by the bytes (each operation takes at least 5).
        for _ in 0..<count {
            guard let keyLength = integer(UInt32.self), let key = bytes(Int(keyLength)), let kind = integer(UInt8.self) else { return nil }
            switch kind {
            case 0:
                operations.append(BlockOperation(key: key, value: nil))
            case 1:
                guard let valueLength = integer(UInt32.self), let value = bytes(Int(valueLength)) else { return nil }
                operations.append(BlockOperation(key: key, value: value))
            default:
                return nil
            }
        }
        return operations
    }
}
