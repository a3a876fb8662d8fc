import Engine
import FaultFS

/// What every seed-driven workload takes besides its seed and length: the knobs a shrinker
/// turns, the deliberate bugs a mutation test switches on, and where the trace goes.
public struct SeedControls: Sendable {
    /// Fault families left out of the seed's plan (shrinking removes them one by one).
    public var excludedFamilies: Set<FaultFamily> = []
    /// Faults and crash points, by number, drawn but not applied (shrinking leaves them out).
    public var suppressedFaults: Set<UInt64> = []
    public var suppressedCrashPoints: Set<UInt64> = []
    /// Deliberate bugs to switch on (debug builds only), to show the workload catches them.
    public var mutations: Set<EngineMutation> = []
    /// Receives every trace event (file-system operations, injected faults, crashes) when set.
    public var traceSink: (@Sendable (TraceEvent) -> Void)?
    /// Oracle checks left out, for the mutation tests only: to show that a deliberate bug gets
    /// past the simulator without the check and is caught with it.
    public var checksOff: Set<OracleCheck> = []

    public init(mutations: Set<EngineMutation> = [], traceSink: (@Sendable (TraceEvent) -> Void)? = nil) {
        self.mutations = mutations
        self.traceSink = traceSink
    }
}

/// Oracle checks a mutation test can switch off to show what each adds (`SeedControls.checksOff`).
public enum OracleCheck: String, Sendable, CaseIterable {
    /// After every recovery, every snapshot create reported made is catalogued and verifies,
    /// unless corruption at rest struck it and verify refuses it by name (I6).
    case cataloguedSnapshots = "catalogued_snapshots"
}

/// A seed-driven simulation workload, FoundationDB-style: its setup draws everything from the
/// seed, it runs `length` steps (rounds, blocks) with crashes and faults, and its oracles check
/// the system against an independent model after every recovery. `run` is a function of
/// (seed, length, controls): the same three give the same trace.
public protocol SeedWorkload: Sendable {
    init(seed: UInt64, length: Int, controls: SeedControls)
    func run() -> SeedResult
}

/// The workloads, dispatched one way: the sweep, the shrinker, the determinism check, the
/// mutation tests and the benchmarks name a workload by this enum.
public enum WorkloadKind: String, CaseIterable, Sendable, Codable {
    /// The file-system layer's own durability contract.
    case fs
    /// The write-ahead log under crashes and faults.
    case wal
    /// The whole engine: lanes on RocksDB, commit, recovery, MetaRoot, snapshots.
    case engine
    /// Several engines syncing over a simulated, faulty, partly lying network.
    case sync

    /// Steps a seed runs by default (rounds or blocks).
    public var defaultLength: Int {
        switch self {
        case .fs: 200
        case .wal: 300
        case .engine: 120
        case .sync: 40
        }
    }

    /// Runs one seed of this workload.
    public func run(seed: UInt64, length: Int? = nil, controls: SeedControls = SeedControls()) -> SeedResult {
        let length = length ?? defaultLength
        return switch self {
        case .fs: FileSystemDurabilityWorkload(seed: seed, length: length, controls: controls).run()
        case .wal: WALSwarmWorkload(seed: seed, length: length, controls: controls).run()
        case .engine: EngineSwarmWorkload(seed: seed, length: length, controls: controls).run()
        case .sync: SyncSwarmWorkload(seed: seed, length: length, controls: controls).run()
        }
    }
}

/// What the WAL and engine swarms share.
enum SwarmDefaults {
    /// Every fault family a swarm plan draws from (each switched on in about half the seeds).
    static let families: [FaultFamily] = [
        .lostUnsyncedWrites, .reorderedWrites, .tornWrites, .lostDirectoryEntries, .nonAtomicRename, .writeErrors,
        .noSpace, .shortWrites, .interrupts, .readErrors, .bitRotOnRead, .misdirectedReads, .syncErrors, .bitRotAtRest,
        .misdirectedWrites,
    ]
    /// Recovery attempts with faults on before they are switched off.
    static let recoveryAttemptsMax = 8
}
