import FaultFS

/// A log sequence number: the position of a record within one WAL partition. The first record
/// of a partition has LSN 1; LSN 0 means "nothing". LSNs are contiguous: a gap is damage.
public typealias LSN = UInt64

/// Which WAL partition: one per lane, plus the meta partition that holds commit records.
public struct WALPartitionID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    /// The partition of lane `index`.
    public static func lane(_ index: Int) -> WALPartitionID {
        precondition(index >= 0 && index < Int(metaRawValue), "lane index out of range: \(index)")
        return WALPartitionID(rawValue: UInt32(index))
    }

    static let metaRawValue: UInt32 = 0xFFFF_FFFF
    /// The meta partition, for commit records that span lanes.
    public static let meta = WALPartitionID(rawValue: metaRawValue)

    public var isMeta: Bool { rawValue == Self.metaRawValue }

    /// The partition's directory name under `wal_dir`: `lane-0003` or `meta`.
    public var directoryName: String {
        if isMeta { return "meta" }
        let digits = String(rawValue)
        return "lane-" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }

    /// The partition's one spelling in every output (text, JSON, metric labels): `meta` or
    /// `lane-3`. Paths use `directoryName`.
    public var name: String { isMeta ? "meta" : "lane-\(rawValue)" }

    public var description: String { name }

    public static func < (lhs: WALPartitionID, rhs: WALPartitionID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// `wal_fsync_policy`: when appended records become durable.
public enum FsyncPolicy: String, Sendable, CaseIterable, Codable {
    /// fdatasync before any append is acknowledged; concurrent appenders share one sync
    /// (group commit). Nothing acknowledged is ever lost.
    case strict
    /// fdatasync when `syncIntervalMilliseconds` have passed or `syncBytes` have accumulated;
    /// appends are acknowledged at once. A power loss may lose the acknowledged records of the
    /// last window, never an older one and never out of order.
    case balanced
    /// Never fsync: records are handed to the OS at batch boundaries. Survives a process crash,
    /// not a power loss. Development and tests only.
    case devFast = "dev_fast"

    /// The code stored in segment headers.
    var code: UInt8 {
        switch self {
        case .strict: 1
        case .balanced: 2
        case .devFast: 3
        }
    }

    init?(code: UInt8) {
        switch code {
        case 1: self = .strict
        case 2: self = .balanced
        case 3: self = .devFast
        default: return nil
        }
    }
}

/// `wal_recovery_mode`: what recovery does with damage.
public enum WALRecoveryMode: String, Sendable, CaseIterable, Codable {
    /// Default. Drops a torn tail (damage that can only be an interrupted, unacknowledged write),
    /// keeping a copy of the dropped bytes; refuses to start on any other damage.
    case tolerateTornTail = "tolerate_torn_tail"
    /// Any damage, even a torn tail, stops recovery.
    case absolute
    /// Skips damaged records and reads on, logging each; changes nothing on disk. For forensics
    /// only: the result may have holes, and the engine reports the divergence.
    case salvage
}

/// The kinds of damage the WAL reader recognises.
public enum WALDamageClass: String, Sendable, CaseIterable, Codable {
    /// A frame header whose checksum does not match (torn, flipped or garbage).
    case headerChecksumMismatch = "header_checksum_mismatch"
    /// A valid header whose payload does not match its checksum.
    case payloadChecksumMismatch = "payload_checksum_mismatch"
    /// The file ends inside a frame.
    case truncatedFrame = "truncated_frame"
    /// An all-zero frame header with non-zero bytes after it: a hole.
    case zeroedRegion = "zeroed_region"
    /// A checksum-valid frame of another partition or segment (misdirected or stale data).
    case foreignRecord = "foreign_record"
    /// A checksum-valid frame with an LSN other than the next one.
    case lsnGap = "lsn_gap"
    /// A segment header that is missing, torn, or names another partition, index or format.
    case badSegmentHeader = "bad_segment_header"
    /// A segment whose header does not continue the previous segment's last LSN and checksum.
    case chainBreak = "chain_break"
    /// A segment index is missing between two present segments.
    case missingSegment = "missing_segment"
    /// Two segment files claim the same place in the chain.
    case duplicateSegment = "duplicate_segment"
}

/// One damaged place in a partition.
public struct WALDamage: Sendable, Equatable, CustomStringConvertible {
    public var damageClass: WALDamageClass
    public var path: String
    public var offset: UInt64
    /// The LSN expected at this place.
    public var expectedLSN: LSN
    public var detail: String

    public var description: String {
        "\(damageClass.rawValue) in \(path) at offset \(offset) (expected LSN \(expectedLSN)): \(detail)"
    }
}

/// An operating error of the WAL, with the context an operator needs.
public struct WALError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Damage that is not a torn tail: the log cannot be trusted past `damage`.
        case midLogDamage
        /// `absolute` mode found damage (possibly only a torn tail).
        case damageInAbsoluteMode
        /// A file-system call failed.
        case io
        /// A sync failed earlier; the log accepts nothing until the engine restarts and recovers.
        case failed
        /// The log was closed.
        case closed
        /// The log directory was opened in salvage mode, which is read-only.
        case readOnly
        /// A record larger than `WALFormat.recordBytesMax`.
        case recordTooLarge
    }

    public var kind: Kind
    public var partition: WALPartitionID
    public var damage: WALDamage?
    public var cause: FileSystemError?
    public var message: String

    /// What an operator should do about it.
    public var remedy: String {
        switch kind {
        case .midLogDamage, .damageInAbsoluteMode:
            "restore the most recent snapshot (rivellum-node snapshot restore --from PATH --data-dir DIR) "
                + "or resync from peers; `rivellum-node wal verify` lists all damage"
        case .io: "check the device and free space, then restart the node"
        case .failed: "restart the node; recovery replays the log from its last durable record"
        case .closed, .readOnly, .recordTooLarge: "this is a usage error in the caller"
        }
    }

    public var description: String {
        var text = "WAL \(partition): \(message)"
        if let damage { text += "; \(damage)" }
        if let cause { text += "; cause: \(cause)" }
        return text + ". Remedy: \(remedy)"
    }

    static func io(_ cause: FileSystemError, partition: WALPartitionID, _ message: String) -> WALError {
        WALError(kind: cause.code == .syncFailed ? .failed : .io, partition: partition, damage: nil, cause: cause, message: message)
    }
}

/// A clock in nanoseconds since the Unix epoch. The node uses the wall clock; the simulator a
/// manual one, so balanced-mode sync intervals and segment timestamps are deterministic.
public protocol WALClock: Sendable {
    func nowNanoseconds() -> UInt64
}

/// The system clock (`clock_gettime(CLOCK_REALTIME)`).
public struct SystemClock: WALClock {
    public init() {}

    public func nowNanoseconds() -> UInt64 { readClock(CLOCK_REALTIME) }
}

/// The monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`): for intervals and timeouts (peer
/// sync's backoff, request limits, progress rates), which a wall-clock step must not bend.
public struct MonotonicClock: WALClock {
    public init() {}

    public func nowNanoseconds() -> UInt64 { readClock(CLOCK_MONOTONIC) }
}

/// Nanoseconds of one of the system's clocks.
private func readClock(_ clock: clockid_t) -> UInt64 {
    var spec = timespec()
    clock_gettime(clock, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}

/// A clock that moves only when told to.
public final class ManualClock: WALClock {
    private let nanoseconds: Mutex<UInt64>

    public init(nanoseconds: UInt64 = 1_700_000_000_000_000_000) {
        self.nanoseconds = Mutex(nanoseconds)
    }

    public func nowNanoseconds() -> UInt64 { nanoseconds.withLock { $0 } }

    public func advance(byNanoseconds delta: UInt64) {
        nanoseconds.withLock { $0 += delta }
    }
}

/// How a WAL partition writes.
public struct WALConfiguration: Sendable, Equatable {
    /// The default is `strict`.
    public var fsyncPolicy: FsyncPolicy = .strict
    /// A segment is rolled once a record would take it past this size. The default is 64 MiB.
    public var segmentSizeBytes: UInt64 = 64 << 20
    /// `balanced`: sync at least this often. The default is 200 ms.
    public var syncIntervalMilliseconds: UInt64 = 200
    /// `balanced`: sync once this many bytes are unsynced. The default is 1 MiB.
    public var syncBytes: UInt64 = 1 << 20
    /// The default is `tolerateTornTail`.
    public var recoveryMode: WALRecoveryMode = .tolerateTornTail
    /// Deliberate bugs for the simulator's tests; ignored by release builds. The default is none.
    /// Not part of the operator's configuration: only a module that imports the engine with
    /// `@_spi(Mutations)` (the simulator and its tests) can set it.
    @_spi(Mutations) public var mutations: Set<EngineMutation> = []

    public init() {}
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
