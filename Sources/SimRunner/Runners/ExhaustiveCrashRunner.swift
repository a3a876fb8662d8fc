@_spi(Mutations) import Engine
import FaultFS

/// Exhaustive mode for short WAL workloads (ALICE/ACE style): crash at every file-system
/// operation in turn, and for each crash point build several post-crash images from a bounded
/// set of persistence variants of the unsynced writes; then crash recovery itself at a rotating
/// operation, recover again, and check that what comes back is a prefix of what was appended
/// that holds every acknowledged record.
public struct ExhaustiveCrashRunner: Sendable {
    /// The persisted-subset variants applied at each crash point.
    public static let variants: [(name: String, plan: FaultPlan)] = [
        ("nothing unsynced survives", FaultPlan(rates: [.lostUnsyncedWrites: 1])),
        ("everything written survives", .none),
        ("a random half survives, reordered", FaultPlan(rates: [.lostUnsyncedWrites: 0.5, .reorderedWrites: 1])),
        ("every unsynced write torn", FaultPlan(rates: [.tornWrites: 1])),
        ("unsynced directory entries lost", FaultPlan(rates: [.lostDirectoryEntries: 1, .lostUnsyncedWrites: 0.5])),
    ]

    public let records: Int
    public let policy: FsyncPolicy
    /// Deliberate bugs to switch on (debug builds only), to show this mode catches them.
    public var mutations: Set<EngineMutation> = []

    public init(records: Int, policy: FsyncPolicy) {
        precondition(records > 0 && records <= 10_000)
        self.records = records
        self.policy = policy
    }

    public struct Report: Sendable {
        public var operations: UInt64
        public var imagesChecked: Int
        public var failures: [String]
    }

    static let partition = WALPartitionID.lane(0)

    func configuration() -> WALConfiguration {
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = policy
        configuration.segmentSizeBytes = 2_048
        configuration.syncBytes = 1_024
        configuration.syncIntervalMilliseconds = 20
        configuration.mutations = mutations
        return configuration
    }

    static func payload(_ index: Int) -> [UInt8] {
        (0..<(16 + (index * 29) % 120)).map { UInt8(truncatingIfNeeded: $0 &+ index &* 7) }
    }

    /// Appends and commits `records` records until the machine halts; returns (durable, written).
    func workload(_ fileSystem: SimulatedFileSystem) -> (durable: Int, written: Int) {
        var durable = 0
        var written = 0
        let clock = ManualClock()
        do {
            let log = try WriteAheadLog(
                fileSystem: fileSystem, directory: "/wal", partitionIDs: [Self.partition], configuration: configuration(),
                clock: clock)
            let writer = log.partition(Self.partition)
            for index in 0..<records {
                let lsn = try writer.append([Self.payload(index)]).upperBound
                written = Int(lsn)
                clock.advance(byNanoseconds: 7_000_000)
                if try writer.commit(through: lsn) { durable = Int(lsn) }
                durable = max(durable, Int(writer.durableLSN))
            }
            try log.close()
        } catch {
            // The crash point: what was acknowledged so far stands.
        }
        return (durable, written)
    }

    func recover(_ fileSystem: SimulatedFileSystem) throws -> [[UInt8]] {
        var replayed: [[UInt8]] = []
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: "/wal", partitionIDs: [Self.partition], configuration: configuration(),
            clock: ManualClock(), replay: { _, header, payload in
                replayed.append(header.lsn == LSN(replayed.count + 1) ? Array(payload) : [0xDE, 0xAD])
            })
        try log.close()
        return replayed
    }

    public func run() -> Report { CrashPointExplorer.explore(self) }
}

extension ExhaustiveCrashRunner: ExhaustiveCrashWorkload {
    var crashKind: CrashKind { policy == .devFast ? .processCrash : .powerLoss }
    // dev_fast promises to survive a process crash only.
    var variants: [(name: String, plan: FaultPlan)] { policy == .devFast ? [(name: "process crash", plan: FaultPlan.none)] : Self.variants }
    var label: String { policy.rawValue }

    func run(_ fileSystem: SimulatedFileSystem) -> (durable: Int, written: Int) { workload(fileSystem) }

    /// The log is closed either way (as the runner always did).
    func recover(_ fileSystem: SimulatedFileSystem, thenClose: Bool) { _ = try? recover(fileSystem) as [[UInt8]] }

    func checkReference(_ progress: (durable: Int, written: Int)) -> String? { nil }

    /// A prefix of what was appended that holds every acknowledged record (every written one
    /// under dev_fast, which promises only to survive a process crash).
    func check(_ fileSystem: SimulatedFileSystem, after progress: (durable: Int, written: Int)) -> OracleViolation? {
        let replayed: [[UInt8]]
        do {
            replayed = try recover(fileSystem)
        } catch {
            return OracleViolation(.recovery, expected: "recovery after a crash succeeds", found: "refused: \(error)")
        }
        let required = policy == .devFast ? progress.written : progress.durable
        if replayed.count < required { return OracleViolation(.durability, expected: "\(required) records acknowledged", found: "\(replayed.count) recovered") }
        if replayed.count > progress.written + 1 {
            return OracleViolation(.prefix, expected: "at most \(progress.written + 1) records (\(progress.written) appended)", found: "\(replayed.count) recovered")
        }
        if let bad = replayed.indices.first(where: { replayed[$0] != Self.payload($0) }) {
            return OracleViolation(.prefix, expected: "record \(bad + 1) as appended", found: "different bytes")
        }
        return nil
    }
}
