import Engine
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

    public func run() -> Report {
        let reference = SimulatedFileSystem(seed: 0, plan: .none, traceEventsMax: 0)
        _ = workload(reference)
        let operations = reference.operationCount
        // The operations one recovery of the full log takes bounds the rotating recovery crash.
        let recoveryStart = reference.operationCount
        _ = try? recover(reference)
        let recoveryOperations = max(1, reference.operationCount - recoveryStart)
        var report = Report(operations: operations, imagesChecked: 0, failures: [])
        // dev_fast promises to survive a process crash only.
        let variants = policy == .devFast ? [(name: "process crash", plan: FaultPlan.none)] : Self.variants
        var rotation: UInt64 = 0
        for crashPoint in 1...operations {
            for (variantIndex, variant) in variants.enumerated() where report.failures.count < 20 {
                let fileSystem = SimulatedFileSystem(seed: crashPoint &* 31 &+ UInt64(variantIndex), plan: .none, traceEventsMax: 0)
                fileSystem.scheduleCrash(atOperation: crashPoint)
                let (durable, written) = workload(fileSystem)
                let kind: CrashKind = policy == .devFast ? .processCrash : .powerLoss
                fileSystem.setPlan(variant.plan)
                fileSystem.crash(kind)
                // Crash recovery at a rotating operation, so every operation of recovery is hit.
                rotation += 1
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1 + rotation % recoveryOperations)
                _ = try? recover(fileSystem)
                fileSystem.scheduleCrash(atOperation: nil)
                fileSystem.crash(kind)
                fileSystem.setPlan(.none)
                report.imagesChecked += 1
                let context = "\(policy.rawValue) crash at operation \(crashPoint), \(variant.name)"
                do {
                    let replayed = try recover(fileSystem)
                    let required = policy == .devFast ? written : durable
                    if replayed.count < required {
                        report.failures.append("\(context): \(replayed.count) records recovered, \(required) acknowledged")
                    } else if replayed.count > written + 1 {
                        report.failures.append("\(context): \(replayed.count) records recovered, only \(written) appended")
                    } else if let bad = replayed.indices.first(where: { replayed[$0] != Self.payload($0) }) {
                        report.failures.append("\(context): record \(bad + 1) is not what was appended")
                    }
                } catch {
                    report.failures.append("\(context): recovery refused: \(error)")
                }
            }
        }
        return report
    }
}
