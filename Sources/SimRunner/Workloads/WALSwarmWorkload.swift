import Engine
import FaultFS

/// A seed-driven workload against the write-ahead log: several partitions, a random fsync
/// policy and segment size, a swarm fault plan, record batches, process crashes and power
/// losses at random file-system operations (including inside recovery), and after each restart
/// the invariants of `docs/RULES.md` that apply to a log:
///
/// - I1: every record acknowledged as durable (strict: `commit` returned true; balanced: the
///   durable LSN the log reported) is recovered;
/// - I2: each partition recovers exactly a prefix of what was appended, record for record;
/// - I5: recovery that crashes part-way, followed by recovery, still satisfies I1 and I2;
/// - I7: the run is a function of the seed (checked by running it twice).
///
/// Every fault family of `docs/RULES.md` is drawn (under `dev_fast`, which never syncs and promises
/// nothing against the media, all but corruption at rest and failed syncs), with I4 (never
/// silently diverge) checked too:
/// - faults that corrupt a read (bit rot on the way, a misdirected read) must cost nothing:
///   recovery reads a damaged segment again;
/// - a failed fsync ("pages marked clean") must cost nothing acknowledged: the log stops, and
///   recovery drops clean cached pages before it reads, so it sees what the media holds;
/// - corruption at rest (bit rot, misdirected writes) may make recovery refuse — correct, when
///   such a fault was injected and the error names the file and offset (the seed ends there, as
///   an operator would restore a snapshot) — but a recovered log must still be exactly a prefix
///   of what was appended. The one loss tolerated is the documented limit: when corruption at
///   rest was injected since the last recovery, acknowledged records at the end of a partition
///   may be gone (rot in the last synced records looks torn; the drop may happen in a recovery
///   attempt that then crashed). Each such case is counted (probe
///   `wal.acknowledged_tail_lost_to_corruption`), never silent; the records that remain must
///   still be exactly what was appended.
public struct WALSwarmWorkload: SeedWorkload {
    public let seed: UInt64
    public var controls: SeedControls
    public let rounds: Int

    public init(seed: UInt64, length rounds: Int = WorkloadKind.wal.defaultLength, controls: SeedControls = SeedControls()) {
        precondition(rounds > 0)
        self.seed = seed
        self.rounds = rounds
        self.controls = controls
    }

    static let families = SwarmDefaults.families

    /// Recovery attempts before the simulator switches faults off to let the node come up (a
    /// real operator would fix the disk); counted, never silent.
    static let recoveryAttemptsMax = SwarmDefaults.recoveryAttemptsMax

    struct Model {
        /// Every record each partition holds, in LSN order (the truth after the last recovery
        /// plus what was appended since).
        var records: [[[UInt8]]]
        /// Records whose append failed part-way: any prefix of them may have reached the log.
        var uncertain: [[[UInt8]]]
        /// Per partition, the LSN the log promised durable.
        var durableLSN: [LSN]
    }

    /// Runs the seed: setup, recovery, `rounds` steps (see `WALSwarmRun`).
    public func run() -> SeedResult {
        let run = WALSwarmRun(self)
        run.restart()
        // Bounded: `rounds` steps.
        for _ in 0..<rounds where run.continues { run.step() }
        if run.refused { run.log = nil }
        return run.result
    }

    /// Under power loss only the promised-durable prefix is certain; the rest may survive or not.
    func forgetUnsynced(_ model: inout Model, policy: FsyncPolicy) {
        for index in model.records.indices {
            let durable = policy == .devFast ? 0 : Int(model.durableLSN[index])
            if model.records[index].count > durable {
                model.uncertain[index] = Array(model.records[index][durable...]) + model.uncertain[index]
                model.records[index].removeLast(model.records[index].count - durable)
            }
        }
    }

    /// I1 and I2 for every partition; on success the model becomes what was recovered.
    /// `tolerateTailLoss`: corruption at rest was injected since the last recovery, so acknowledged
    /// records may be missing at the end of a partition (the documented limit: damage in the last
    /// synced records looks torn). The records recovered must still be exactly a prefix.
    func check(
        _ replayed: [[[UInt8]]], against model: inout Model, lastCrash: CrashKind, tolerateTailLoss: Bool
    ) -> OracleViolation? {
        for index in replayed.indices {
            let certain = model.records[index]
            let possible = certain + model.uncertain[index]
            let got = replayed[index]
            if got.count < certain.count && tolerateTailLoss {
                Probe.walAcknowledgedTailLostToCorruption.hit()
            } else if got.count < certain.count {
                return OracleViolation(
                    .durability, expected: "lane \(index): \(certain.count) certain records (durable LSN \(model.durableLSN[index]))",
                    found: "\(got.count) recovered, last crash \(lastCrash.rawValue)")
            }
            if got.count > possible.count {
                return OracleViolation(.prefix, expected: "lane \(index): at most \(possible.count) records appended", found: "\(got.count) recovered")
            }
            if let mismatch = got.indices.first(where: { got[$0] != possible[$0] }) {
                return OracleViolation(.prefix, expected: "lane \(index): the record appended at LSN \(mismatch + 1)", found: "different bytes")
            }
            model.records[index] = got
            model.uncertain[index] = []
            model.durableLSN[index] = LSN(got.count)
        }
        return nil
    }
}
