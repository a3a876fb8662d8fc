import Engine
import FaultFS
import PeerSync

/// A seed-driven workload of several nodes syncing over `SimulatedNetwork`, each an engine on
/// its own `SimulatedFileSystem`, all in one process and driven by the seed: a primary (the
/// chain's one writer, an archive) commits blocks; 1–3 followers follow it (`follow = true`);
/// a node that starts later from genesis catches up from all of them; in about half the seeds a
/// byzantine minority of one (`ByzantineMode`) serves it lies. The network delays, drops,
/// duplicates, corrupts and partitions; the followers and the catching-up node crash and lose
/// power at any file-system operation, during catch-up too, and recover. Each runs the same
/// `SyncMachine`, `SyncExchange` and `SyncServing` the node runs over HTTP.
///
/// After every step it checks I8 (`docs/RULES.md`): every live honest node's height is one the
/// primary committed and its MetaRoot is the model's at that height (so no node ever applies a
/// block the primary did not commit, whatever the byzantine node sends); after a crash, the
/// height recovered is at least what the node had applied durably (I1). Once the network heals
/// and the faults stop, every node must converge on the primary's height and roots within a
/// bound.
public struct SyncSwarmWorkload: SeedWorkload {
    public let seed: UInt64
    public var controls: SeedControls
    /// Blocks the primary commits.
    public let blocks: Int

    public init(seed: UInt64, length blocks: Int = WorkloadKind.sync.defaultLength, controls: SeedControls = SeedControls()) {
        precondition(blocks > 0)
        self.seed = seed
        self.blocks = blocks
        self.controls = controls
    }

    /// File-system faults the syncing nodes see: crashes' companions and failed I/O, no
    /// corruption at rest (that is the engine workload's; here every refusal is a violation).
    static let families: [FaultFamily] = [
        .lostUnsyncedWrites, .reorderedWrites, .tornWrites, .lostDirectoryEntries, .nonAtomicRename, .writeErrors, .noSpace, .shortWrites,
        .interrupts, .readErrors, .syncErrors,
    ]

    public func run() -> SeedResult {
        let run = SyncSwarmRun(self)
        run.execute()
        return run.result
    }
}

/// One simulated node: its engine (nil while crashed), its sync machine and peers, and what the
/// oracle knows of it.
struct SimulatedNode {
    enum Role: String { case primary, follower, catcher }

    let index: Int
    let role: Role
    let fileSystem: SimulatedFileSystem
    let configuration: EngineConfiguration
    var engine: Engine?
    var machine: SyncMachine?
    /// Node indices of its peers, by the machine's peer slot.
    var peers: [Int] = []
    var incarnation = 0
    /// The height it had applied and made durable (strict): a recovery must not go below it.
    var durableHeight: UInt64 = 0
    var started: Bool
    /// It crashed while behind the primary and has not caught up since.
    var resumingAfterCrash = false
    /// Its own chain's tip, when it committed blocks of its own before syncing (a local fork):
    /// it must never change.
    var ownTip: (height: UInt64, metaRoot: Hash32)?
    /// Why it stopped syncing for good (a scenario that expects it), with its roots then.
    var stop: SyncStop?
    /// State-sync seeds: what it runs next, decided as the node's `sync` decides
    /// (`SyncModePlan`, made again at each start as a process would).
    var plan: SyncModePlan?
    /// It starts and restarts by a plan (state-sync seeds: the followers and the catcher).
    var followsPlan = false
    /// Set while the plan's step is state sync (the engine is closed throughout).
    var syncingState = false
    var stateSync: StateSyncMachine?
    var staging: StateSyncStaging?
    /// The data directory's lock, held from the start of a state sync to its install.
    var stateSyncLock: (any FileLock)?
    /// Why its plan stopped for good (a state sync that could not install, or no way on).
    var planStop: SyncModePlan.StopReason?

    var isStopped: Bool { stop != nil || planStop != nil }
    /// Up: an open engine, or a state sync running.
    var isUp: Bool { engine != nil || stateSync != nil }
}
