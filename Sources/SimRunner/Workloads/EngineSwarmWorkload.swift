import Engine
import FaultFS

/// A seed-driven workload against the whole engine: 1–8 lanes (each a RocksDB on the simulated
/// file system), strict or balanced, small segments and frequent checkpoints, a swarm fault
/// plan, blocks of puts and deletes with skewed keys and some large values, reads with proofs,
/// and crashes (process or power) at random file-system operations, including inside recovery.
/// In about half the seeds it also takes snapshots (recorded in the catalog, so WAL retention
/// keeps what they need) and restores them, with crashes inside both.
///
/// After every recovery it checks, against an independent model:
/// - I1: the recovered height is at least the last height acknowledged as durable;
/// - I2: it is a height that was committed (never beyond what was written);
/// - I3: the MetaRoot equals the one the model computes from scratch for that height with the
///   reference tree code, and every lane root recomputed from the lane's key-values matches;
/// - reads return the model's values with proofs that verify against the MetaRoot;
/// - I6: a completed snapshot verifies and holds exactly the model's state at its height; a
///   restore of it (any number of crashes inside it and in the recovery after it) followed by
///   WAL replay recovers the latest durable height with the model's MetaRoot, and leaves no
///   journal or staging directory behind.
public struct EngineSwarmWorkload: SeedWorkload {
    public let seed: UInt64
    public var controls: SeedControls
    public let blocks: Int

    public init(seed: UInt64, length blocks: Int = WorkloadKind.engine.defaultLength, controls: SeedControls = SeedControls()) {
        precondition(blocks > 0)
        self.seed = seed
        self.blocks = blocks
        self.controls = controls
    }

    static let families = SwarmDefaults.families

    static let recoveryAttemptsMax = SwarmDefaults.recoveryAttemptsMax

    /// Runs the seed: setup, recovery, `blocks` steps, a clean close (see `EngineSwarmRun`).
    public func run() -> SeedResult {
        let run = EngineSwarmRun(self)
        run.recover()
        // Bounded: `blocks` steps.
        for _ in 0..<blocks where run.continues { run.step() }
        run.closeCleanly()
        return run.result
    }

    /// Records, as a trace event, a digest of every lane's live SST files (numbers, sizes,
    /// sequence-number and key ranges). File lengths under the lanes directory are left out of
    /// the trace hash (RocksDB's random session ids), so without this event a run whose RocksDB
    /// batches differed between runs (entry order, hence sequence numbers) would pass the
    /// determinism check.
    static func recordLaneFiles(of engine: Engine, in fileSystem: SimulatedFileSystem) {
        let description = engine.laneStores.map { $0.liveFilesDescription() }.joined(separator: "\n")
        fileSystem.recordEvent("lane_files", detail: StateHashing.sha256(Array(description.utf8)).hex.prefix(16).description)
    }

    /// I1–I3 for an engine just recovered: nil when they hold, else what broke. Throws when a
    /// lane cannot be scanned (damage RocksDB found). `tolerateTailLoss`: corruption at rest was
    /// injected since the last recovery, so blocks at the end of the log may be gone (the
    /// documented limit; counted) — the height recovered must still be a committed one with
    /// the model's roots.
    static func check(
        _ engine: Engine, model: ChainModel, durable: Int, written: Int, tolerateTailLoss: Bool = false
    ) throws(EngineError) -> OracleViolation? {
        let roots = engine.stateRoots()
        let height = Int(roots.height)
        if height < durable && tolerateTailLoss {
            Probe.walAcknowledgedTailLostToCorruption.hit()
        } else if height < durable {
            return OracleViolation(.durability, expected: "height \(durable) or above (acknowledged durable)", found: "recovered height \(height)")
        }
        if height > written || height >= model.states.count {
            return OracleViolation(.prefix, expected: "a written height (last \(written))", found: "recovered height \(height)")
        }
        let expected = model.metaRoot(at: height)
        if roots.metaRoot != expected {
            return OracleViolation(.metaRoot, expected: "MetaRoot \(expected.hex) at height \(height)", found: "\(roots.metaRoot.hex)")
        }
        for (lane, store) in engine.laneStores.enumerated() {
            let scratch = try store.recomputeRootFromScratch()
            if scratch != roots.laneRoots[lane] {
                return OracleViolation(
                    .metaRoot, expected: "lane \(lane)'s stored root at height \(height)", found: "a different root recomputed from its key-values")
            }
        }
        return nil
    }
}
