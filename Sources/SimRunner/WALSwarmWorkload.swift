import Engine
import FaultFS

/// A seed-driven workload against the write-ahead log: several partitions, a random fsync
/// policy and segment size, a swarm fault plan, record batches, process crashes and power
/// losses at random file-system operations (including inside recovery), and after each restart
/// the checks of BRIEF §3 that apply to a log:
///
/// - I1: every record acknowledged as durable (strict: `commit` returned true; balanced: the
///   durable LSN the log reported) is recovered;
/// - I2: each partition recovers exactly a prefix of what was appended, record for record;
/// - I5: recovery that crashes part-way, followed by recovery, still satisfies I1 and I2;
/// - I7: the run is a function of the seed (checked by running it twice).
///
/// Every fault family of BRIEF §5 is drawn (under `dev_fast`, which never syncs and promises
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
public struct WALSwarmWorkload: Sendable {
    public let seed: UInt64
    /// Fault families left out of the seed's plan (shrinking removes them one by one).
    public var excludedFamilies: Set<FaultFamily> = []
    /// Faults and crash points, by number, drawn but not applied (shrinking leaves them out).
    public var suppressedFaults: Set<UInt64> = []
    public var suppressedCrashPoints: Set<UInt64> = []
    /// Deliberate bugs to switch on (debug builds only), to show the workload catches them.
    public var mutations: Set<EngineMutation> = []
    /// Receives every trace event (file-system operations, injected faults, crashes) when set.
    public var traceSink: (@Sendable (TraceEvent) -> Void)?
    public let rounds: Int

    public init(seed: UInt64, rounds: Int = 300) {
        precondition(rounds > 0)
        self.seed = seed
        self.rounds = rounds
    }

    static let families: [FaultFamily] = [
        .lostUnsyncedWrites, .reorderedWrites, .tornWrites, .lostDirectoryEntries, .nonAtomicRename, .writeErrors,
        .noSpace, .shortWrites, .interrupts, .readErrors, .bitRotOnRead, .misdirectedReads, .syncErrors, .bitRotAtRest,
        .misdirectedWrites,
    ]

    /// Recovery attempts before the simulator switches faults off to let the node come up (a
    /// real operator would fix the disk); counted, never silent.
    static let recoveryAttemptsMax = 8

    struct Model {
        /// Every record each partition holds, in LSN order (the truth after the last recovery
        /// plus what was appended since).
        var records: [[[UInt8]]]
        /// Records whose append failed part-way: any prefix of them may have reached the log.
        var uncertain: [[[UInt8]]]
        /// Per partition, the LSN the log promised durable.
        var durableLSN: [LSN]
    }

    public func run() -> SeedResult {
        var random = DeterministicRandom(seed: seed)
        let partitionCount = random.int(in: 1...4)
        let policy = FsyncPolicy.allCases[random.int(in: 0..<FsyncPolicy.allCases.count)]
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = policy
        configuration.mutations = mutations
        configuration.segmentSizeBytes = UInt64(random.int(in: 512...8_192))
        configuration.syncBytes = UInt64(random.int(in: 256...4_096))
        configuration.syncIntervalMilliseconds = UInt64(random.int(in: 5...100))
        var plan = swarmPlan(random: &random, families: Self.families, excluding: excludedFamilies, rateMin: 0.002, rateMax: 0.05)
        if policy == .devFast {
            // dev_fast never syncs: its whole log is a tail, so damage on the media is by design
            // indistinguishable from a torn write, and it promises nothing against it.
            plan.rates = plan.rates.filter { !corruptionAtRestFamilies.contains($0.key) && $0.key != .syncErrors }
        }
        let fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(traceSink)
        fileSystem.suppress(faults: suppressedFaults, crashPoints: suppressedCrashPoints)
        let clock = ManualClock()
        let partitions = (0..<partitionCount).map { WALPartitionID.lane($0) }
        let knobs =
            "workload=wal partitions=\(partitionCount) policy=\(policy.rawValue) "
            + "segment_size_bytes=\(configuration.segmentSizeBytes) sync_bytes=\(configuration.syncBytes) "
            + "sync_interval_ms=\(configuration.syncIntervalMilliseconds) rounds=\(rounds) plan: \(plan)"

        var model = Model(
            records: Array(repeating: [], count: partitionCount), uncertain: Array(repeating: [], count: partitionCount),
            durableLSN: Array(repeating: 0, count: partitionCount))
        var crashes = 0
        var failure: OracleViolation?
        var log: WriteAheadLog?
        var lastCrash = CrashKind.processCrash
        /// Recovery refused on corruption at rest: correct, and the seed ends.
        var refused = false
        func atRestFaults() -> UInt64 { corruptionAtRestCount(fileSystem) }
        /// Corruption at rest injected before the last successful recovery read the log.
        var atRestAtLastRecovery: UInt64 = 0
        var syncErrorsSeen: UInt64 = 0
        /// Whether an fsync failed since the last call: its dirty pages were dropped ("marked
        /// clean"), so what was not durable may be gone even after a process crash.
        func syncFailedSinceLastLook() -> Bool {
            let count = fileSystem.injectedFaultCounts[FaultFamily.syncErrors.rawValue] ?? 0
            defer { syncErrorsSeen = count }
            return count > syncErrorsSeen
        }

        func restart() {
            // Recover, crashing part-way sometimes; bounded attempts, then faults off.
            var attempt = 0
            while failure == nil {
                attempt += 1
                if attempt > Self.recoveryAttemptsMax { fileSystem.setFaultsEnabled(false) }
                if attempt <= Self.recoveryAttemptsMax && random.chance(0.2) {
                    fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...40)))
                }
                var replayed: [[[UInt8]]] = Array(repeating: [], count: partitionCount)
                // Counted from before this recovery read the log: damage its own writes take
                // (a misdirected segment header) shows only to the next recovery.
                let atRestBeforeRecovery = atRestFaults()
                do {
                    let opened = try WriteAheadLog(
                        fileSystem: fileSystem, directory: "/wal", partitionIDs: partitions, configuration: configuration,
                        clock: clock,
                        replay: { partition, header, payload in
                            let lane = Int(partition.rawValue)
                            // LSNs must run 1, 2, 3, …: a record at another LSN is a hole.
                            replayed[lane].append(header.lsn == LSN(replayed[lane].count + 1) ? Array(payload) : [0xDE, 0xAD])
                        })
                    fileSystem.scheduleCrash(atOperation: nil)
                    // The tail may have been dropped by this recovery or by an attempt that
                    // crashed part-way; either way only after corruption at rest since the last
                    // recovery.
                    failure = check(
                        replayed, against: &model, lastCrash: lastCrash,
                        tolerateTailLoss: atRestFaults() > atRestAtLastRecovery)
                    atRestAtLastRecovery = atRestBeforeRecovery
                    log = opened
                    fileSystem.setFaultsEnabled(true)
                    return
                } catch let error where error.kind == .midLogDamage || error.kind == .damageInAbsoluteMode {
                    if atRestFaults() > 0 && error.damage != nil {
                        // I4: corruption at rest detected and refused with the file and offset.
                        refused = true
                        return
                    }
                    failure = OracleViolation(.neverSilentlyDiverge, expected: "no refusal without corruption at rest", found: "recovery refused: \(error)")
                } catch {
                    // An injected I/O error or a crash inside recovery: crash and try again.
                    fileSystem.scheduleCrash(atOperation: nil)
                    lastCrash = random.chance(0.5) ? .powerLoss : lastCrash
                    if lastCrash == .powerLoss || syncFailedSinceLastLook() { forgetUnsynced(&model, policy: policy) }
                    fileSystem.crash(lastCrash)
                    crashes += 1
                }
            }
        }

        restart()
        for _ in 0..<rounds where failure == nil && !refused {
            if random.chance(0.03) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...60)))
            }
            let lane = random.int(in: 0..<partitionCount)
            let batch = (0..<random.int(in: 1...4)).map { _ in
                (0..<random.int(in: 0...600)).map { _ in UInt8.random(in: 0...255, using: &random) }
            }
            clock.advance(byNanoseconds: UInt64(random.int(in: 0...20)) * 1_000_000)
            do {
                let writer = log!.partition(partitions[lane])
                let range: ClosedRange<LSN>
                do {
                    range = try writer.append(batch)
                } catch {
                    model.uncertain[lane] = batch
                    throw error
                }
                model.records[lane] += batch
                let durable = try writer.commit(through: range.upperBound)
                if policy == .strict && !durable { failure = OracleViolation(.durability, expected: "a strict commit returns durable", found: "it returned without durability") }
                for (index, id) in partitions.enumerated() {
                    model.durableLSN[index] = max(model.durableLSN[index], log!.partition(id).durableLSN)
                }
                if policy == .balanced && random.chance(0.1) { try writer.tick() }
            } catch {
                // A failed log stops; the node restarts: a process crash, or the machine's
                // power fails if a crash point was reached.
                lastCrash = fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash
                fileSystem.scheduleCrash(atOperation: nil)
                // A failed fsync dropped the dirty pages ("marked clean"): what was not durable
                // may be gone even though the process, not the machine, stopped.
                if lastCrash == .powerLoss || syncFailedSinceLastLook() { forgetUnsynced(&model, policy: policy) }
                fileSystem.crash(lastCrash)
                crashes += 1
                log = nil
                restart()
            }
        }
        if refused { log = nil }
        return SeedResult(fileSystem: fileSystem, seed: seed, failure: failure, crashes: crashes, knobs: knobs, endedOnRefusal: refused)
    }

    /// Under power loss only the promised-durable prefix is certain; the rest may survive or not.
    private func forgetUnsynced(_ model: inout Model, policy: FsyncPolicy) {
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
    private func check(
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
