@_spi(Mutations) import Engine
import FaultFS

/// One seed of `WALSwarmWorkload`, as named steps over the run's state: `restart` (recover the
/// log, maybe crashing inside recovery, and check what it replays against the model), `step`
/// (append and commit one batch; a failure crashes the machine and restarts). Every random draw happens in the order the
/// seed fixes, so a seed replays exactly.
final class WALSwarmRun {
    let workload: WALSwarmWorkload
    var random: DeterministicRandom
    let partitionCount: Int
    let policy: FsyncPolicy
    let configuration: WALConfiguration
    let fileSystem: SimulatedFileSystem
    let clock = ManualClock()
    let partitions: [WALPartitionID]
    let knobs: String

    var model: WALSwarmWorkload.Model
    var crashes = 0
    var failure: OracleViolation?
    var log: WriteAheadLog?
    var lastCrash = CrashKind.processCrash
    /// Recovery refused on corruption at rest: correct, and the seed ends.
    var refused = false
    /// Corruption at rest injected before the last successful recovery read the log.
    var atRestAtLastRecovery: UInt64 = 0
    var syncErrorsSeen: UInt64 = 0

    /// The setup: the seed draws the partitions, the policy, the sizes and the fault plan, in
    /// this order.
    init(_ workload: WALSwarmWorkload) {
        self.workload = workload
        var random = DeterministicRandom(seed: workload.seed)
        partitionCount = random.int(in: 1...4)
        policy = FsyncPolicy.allCases[random.int(in: 0..<FsyncPolicy.allCases.count)]
        var configuration = WALConfiguration()
        configuration.fsyncPolicy = policy
        configuration.mutations = workload.controls.mutations
        configuration.segmentSizeBytes = UInt64(random.int(in: 512...8_192))
        configuration.syncBytes = UInt64(random.int(in: 256...4_096))
        configuration.syncIntervalMilliseconds = UInt64(random.int(in: 5...100))
        var plan = swarmPlan(
            random: &random, families: WALSwarmWorkload.families, excluding: workload.controls.excludedFamilies, rateMin: 0.002, rateMax: 0.05)
        if policy == .devFast {
            // dev_fast never syncs: its whole log is a tail, so damage on the media is by design
            // indistinguishable from a torn write, and it promises nothing against it.
            plan.rates = plan.rates.filter { !corruptionAtRestFamilies.contains($0.key) && $0.key != .syncErrors }
        }
        fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(workload.controls.traceSink)
        fileSystem.suppress(faults: workload.controls.suppressedFaults, crashPoints: workload.controls.suppressedCrashPoints)
        partitions = (0..<partitionCount).map { WALPartitionID.lane($0) }
        knobs =
            "workload=wal partitions=\(partitionCount) policy=\(policy.rawValue) "
            + "segment_size_bytes=\(configuration.segmentSizeBytes) sync_bytes=\(configuration.syncBytes) "
            + "sync_interval_ms=\(configuration.syncIntervalMilliseconds) rounds=\(workload.rounds) plan: \(plan)"
        model = WALSwarmWorkload.Model(
            records: Array(repeating: [], count: partitionCount), uncertain: Array(repeating: [], count: partitionCount),
            durableLSN: Array(repeating: 0, count: partitionCount))
        self.configuration = configuration
        self.random = random
    }

    /// Neither a violation nor a correct refusal has ended the seed.
    var continues: Bool { failure == nil && !refused }

    var result: SeedResult {
        SeedResult(fileSystem: fileSystem, seed: workload.seed, failure: failure, crashes: crashes, knobs: knobs, endedOnRefusal: refused)
    }

    func atRestFaults() -> UInt64 { corruptionAtRestCount(fileSystem) }

    /// Whether an fsync failed since the last call: its dirty pages were dropped ("marked
    /// clean"), so what was not durable may be gone even after a process crash.
    func syncFailedSinceLastLook() -> Bool {
        let count = fileSystem.injectedFaultCounts[FaultFamily.syncErrors.rawValue] ?? 0
        defer { syncErrorsSeen = count }
        return count > syncErrorsSeen
    }

    /// Stops the machine as `lastCrash` says; after a power loss or a failed fsync, the model
    /// forgets what was not durable.
    private func crashMachine() {
        fileSystem.scheduleCrash(atOperation: nil)
        if lastCrash == .powerLoss || syncFailedSinceLastLook() { workload.forgetUnsynced(&model, policy: policy) }
        fileSystem.crash(lastCrash)
        crashes += 1
    }

    /// Recovers, crashing part-way sometimes, until the log opens, refuses correctly, or a
    /// violation shows. Bounded: `recoveryAttemptsMax` attempts with faults, then faults off.
    func restart() {
        var attempt = 0
        while failure == nil {
            attempt += 1
            if attempt > WALSwarmWorkload.recoveryAttemptsMax { fileSystem.setFaultsEnabled(false) }
            if attempt <= WALSwarmWorkload.recoveryAttemptsMax && random.chance(0.2) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...40)))
            }
            if recoverOnce() { return }
        }
    }

    /// One recovery attempt; `true` when the attempts end (opened, or refused correctly).
    private func recoverOnce() -> Bool {
        var replayed: [[[UInt8]]] = Array(repeating: [], count: partitionCount)
        // Counted from before this recovery read the log: damage its own writes take (a
        // misdirected segment header) shows only to the next recovery.
        let atRestBeforeRecovery = atRestFaults()
        do {
            let opened = try WriteAheadLog(
                fileSystem: fileSystem, directory: "/wal", partitionIDs: partitions, configuration: configuration, clock: clock,
                replay: { partition, header, payload in
                    let lane = Int(partition.rawValue)
                    // LSNs must run 1, 2, 3, …: a record at another LSN is a hole.
                    replayed[lane].append(header.lsn == LSN(replayed[lane].count + 1) ? Array(payload) : [0xDE, 0xAD])
                })
            fileSystem.scheduleCrash(atOperation: nil)
            // The tail may have been dropped by this recovery or by an attempt that crashed
            // part-way; either way only after corruption at rest since the last recovery.
            failure = workload.check(replayed, against: &model, lastCrash: lastCrash, tolerateTailLoss: atRestFaults() > atRestAtLastRecovery)
            atRestAtLastRecovery = atRestBeforeRecovery
            log = opened
            fileSystem.setFaultsEnabled(true)
            return true
        } catch let error where error.kind == .midLogDamage || error.kind == .damageInAbsoluteMode {
            if atRestFaults() > 0 && error.damage != nil {
                // I4: corruption at rest detected and refused with the file and offset.
                refused = true
                return true
            }
            failure = OracleViolation(
                .neverSilentlyDiverge, expected: "no refusal without corruption at rest", found: "recovery refused: \(error)")
        } catch {
            // An injected I/O error or a crash inside recovery: crash and try again.
            lastCrash = random.chance(0.5) ? .powerLoss : lastCrash
            crashMachine()
        }
        return false
    }

    /// Maybe a crash point, then one batch of 1–4 records appended to a random partition and
    /// committed; a failure crashes the machine and restarts.
    func step() {
        if random.chance(0.03) {
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...60)))
        }
        let lane = random.int(in: 0..<partitionCount)
        let batch = (0..<random.int(in: 1...4)).map { _ in
            (0..<random.int(in: 0...600)).map { _ in UInt8.random(in: 0...255, using: &random) }
        }
        clock.advance(byNanoseconds: UInt64(random.int(in: 0...20)) * 1_000_000)
        do {
            try appendAndCommit(batch, lane: lane)
        } catch {
            // A failed log stops; the node restarts: a process crash, or the machine's power
            // fails if a crash point was reached. A failed fsync dropped the dirty pages
            // ("marked clean"): what was not durable may be gone even though the process, not
            // the machine, stopped.
            lastCrash = fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash
            crashMachine()
            log = nil
            restart()
        }
    }

    private func appendAndCommit(_ batch: [[UInt8]], lane: Int) throws(WALError) {
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
        if policy == .strict && !durable {
            failure = OracleViolation(.durability, expected: "a strict commit returns durable", found: "it returned without durability")
        }
        for (index, id) in partitions.enumerated() {
            model.durableLSN[index] = max(model.durableLSN[index], log!.partition(id).durableLSN)
        }
        if policy == .balanced && random.chance(0.1) { try writer.tick() }
    }
}
