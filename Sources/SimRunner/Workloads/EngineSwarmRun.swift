@_spi(Mutations) import Engine
import FaultFS

/// One seed of `EngineSwarmWorkload`, as named steps over the run's state: `recover` (open the
/// engine, maybe crashing inside recovery, and check it against the model), `createSnapshot`,
/// `restoreSnapshot`, `step` (one block committed), `closeCleanly`. Every random draw happens in the order the
/// seed fixes, so a seed replays exactly.
final class EngineSwarmRun {
    let workload: EngineSwarmWorkload
    var random: DeterministicRandom
    let configuration: EngineConfiguration
    let keySpace: Int
    let snapshotsOn: Bool
    let fileSystem: SimulatedFileSystem
    let clock = ManualClock()
    let executor: SeededLaneExecutor
    let knobs: String

    var model: ChainModel
    let blocks: BlockGenerator
    var acknowledgedDurable = 0
    var written = 0
    var crashes = 0
    var failure: OracleViolation?
    var engine: Engine?
    /// Completed snapshots: path and height.
    var snapshots: [(path: String, height: Int)] = []
    var snapshotCounter = 0
    var restoreCounter = 0
    /// Recovery (or a later read) refused on corruption at rest: correct, and the seed ends.
    var refused = false
    var atRestAtLastRecovery: UInt64 = 0
    /// The lane an operator just replaced with another chain's (until recovery has run): the
    /// one refusal that needs no corruption at rest, and it must name this lane.
    var foreignLane: Int?
    /// Another chain's snapshot, made the first time a lane swap asks for one.
    var foreignSnapshotPath: String?

    /// The setup: the seed draws the configuration, the key space, snapshots on or off, and the
    /// fault plan, in this order.
    init(_ workload: EngineSwarmWorkload) {
        self.workload = workload
        var random = DeterministicRandom(seed: workload.seed)
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = "sim-\(workload.seed % 7)"
        configuration.laneCount = random.int(in: 1...8)
        configuration.wal.fsyncPolicy = random.chance(0.6) ? .strict : .balanced
        configuration.wal.segmentSizeBytes = UInt64(random.int(in: 1_024...16_384))
        configuration.wal.syncBytes = UInt64(random.int(in: 512...8_192))
        configuration.wal.syncIntervalMilliseconds = UInt64(random.int(in: 5...50))
        configuration.flushEveryBlocks = UInt64(random.int(in: 4...40))
        configuration.walRetentionHours = 0
        configuration.wal.mutations = workload.controls.mutations
        keySpace = random.int(in: 5...200)
        snapshotsOn = random.chance(0.5)
        let plan = swarmPlan(
            random: &random, families: EngineSwarmWorkload.families, excluding: workload.controls.excludedFamilies, rateMin: 0.001, rateMax: 0.02)
        fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(workload.controls.traceSink)
        fileSystem.suppress(faults: workload.controls.suppressedFaults, crashPoints: workload.controls.suppressedCrashPoints)
        // RocksDB writes a random session id into its files, which can shift a length by a byte
        // between runs; snapshots copy those files and record their sizes (the manifest, the
        // catalog), so their lengths are left out of the trace hash too.
        fileSystem.setOpaqueLengthPrefixes([
            configuration.lanesDirectoryPath, "/snapshots", PathComponents.join(configuration.dataDirectory, SnapshotCatalog.fileName),
            Self.foreignDataDirectory,
        ])
        executor = SeededLaneExecutor(seed: random.next())
        knobs =
            "workload=engine lanes=\(configuration.laneCount) policy=\(configuration.wal.fsyncPolicy.rawValue) "
            + "segment_size_bytes=\(configuration.wal.segmentSizeBytes) flush_every_blocks=\(configuration.flushEveryBlocks) "

            + "key_space=\(keySpace) blocks=\(workload.blocks) snapshots=\(snapshotsOn ? "on" : "off") plan: \(plan)"
        model = ChainModel(chainID: configuration.chainID, laneCount: configuration.laneCount)
        blocks = BlockGenerator(
            keySpace: keySpace, operationsPerBlock: 1...8, skewed: true, deleteChance: 0.15, valueBytes: 0...64,
            largeValues: .init(chance: 0.05, bytes: 1_000...8_000))
        self.configuration = configuration
        self.random = random
    }

    /// Neither a violation nor a correct refusal has ended the seed.
    var continues: Bool { failure == nil && !refused }

    var result: SeedResult {
        SeedResult(fileSystem: fileSystem, seed: workload.seed, failure: failure, crashes: crashes, knobs: knobs, endedOnRefusal: refused)
    }

    /// Whether `error` is an acceptable end of the seed: damage refused with the lane or file
    /// named, after corruption at rest was injected (I4).
    func refusalAccepted(_ error: EngineError) -> Bool {
        if let foreignLane, error.lane == foreignLane, [.laneRootMismatch, .laneAheadOfLog, .missingRecord].contains(error.kind) { return true }
        return error.isRefusal && corruptionAtRestCount(fileSystem) > 0 && (error.lane != nil || error.path != nil)
    }

    func crash(_ kind: CrashKind) {
        crashMachine(fileSystem, engine: &engine, kind)
        crashes += 1
    }

    /// After a failed operation: the machine crashes (power loss more often when it halted) and
    /// recovers.
    func crashAndRecover() {
        crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
        recover()
    }

    // MARK: Recovery

    /// Opens the engine until it opens, refuses correctly, or a violation shows. Bounded:
    /// `recoveryAttemptsMax` attempts with faults, then 4 more with faults off.
    func recover() {
        var attempt = 0
        while failure == nil && engine == nil && !refused {
            attempt += 1
            if attempt > EngineSwarmWorkload.recoveryAttemptsMax { fileSystem.setFaultsEnabled(false) }
            if attempt <= EngineSwarmWorkload.recoveryAttemptsMax && random.chance(0.2) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...200)))
            }
            let atRestBeforeRecovery = corruptionAtRestCount(fileSystem)
            do {
                let opened = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: executor)
                try checkRecovered(opened, atRestBeforeRecovery: atRestBeforeRecovery)
            } catch where refusalAccepted(error) {
                refused = true
            } catch where !error.isRefusal && attempt <= EngineSwarmWorkload.recoveryAttemptsMax + 4 {
                crash(random.chance(0.5) ? .powerLoss : .processCrash)
            } catch where !error.isRefusal {
                failure = OracleViolation(.recovery, expected: "recovery with faults off succeeds", found: "\(error)")
            } catch {
                failure = OracleViolation(
                    .neverSilentlyDiverge, expected: "no refusal without corruption at rest", found: "recovery refused: \(error)")
            }
        }
    }

    /// Checks a freshly opened engine against the model (faults off), then adopts its height.
    /// A lane's damage found by the full scan ends the seed as a correct refusal.
    private func checkRecovered(_ opened: Engine, atRestBeforeRecovery: UInt64) throws(EngineError) {
        fileSystem.scheduleCrash(atOperation: nil)
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(true) }
        do {
            // Blocks at the end of the log may be gone only after corruption at rest since the
            // last recovery (the documented limit), counted.
            failure = try EngineSwarmWorkload.check(
                opened, model: model, durable: acknowledgedDurable, written: written,
                tolerateTailLoss: corruptionAtRestCount(fileSystem) > atRestAtLastRecovery)
        } catch where refusalAccepted(error) {
            // Detected, never silent.
            opened.abandon()
            refused = true
            return
        }
        for leftover in [RestoreJournal.fileName, "lanes.restore-staging"] where failure == nil {
            if (try? fileSystem.exists(PathComponents.join(configuration.dataDirectory, leftover))) != false {
                failure = OracleViolation(.snapshot, expected: "no restore leftovers after recovery", found: "\(leftover) in the data directory")
            }
        }
        if failure == nil && !workload.controls.checksOff.contains(.cataloguedSnapshots) {
            failure = SnapshotOracle.checkCatalogued(snapshots, fileSystem: fileSystem, dataDirectory: configuration.dataDirectory)
        }
        guard failure == nil else {
            // The seed ends on the violation; the model cannot adopt a height it never held.
            opened.abandon()
            return
        }
        EngineSwarmWorkload.recordLaneFiles(of: opened, in: fileSystem)
        // Counted from before this recovery read the log: damage its own writes take shows
        // only to the next recovery.
        atRestAtLastRecovery = atRestBeforeRecovery
        let height = Int(opened.stateRoots().height)
        model.truncate(toHeight: height)
        written = height
        acknowledgedDurable = height
        engine = opened
    }

    // MARK: Snapshots

    /// Takes a snapshot (maybe crashing inside it) and checks it against the model.
    func createSnapshot() {
        // The name advances only once a snapshot completes: a create that crashed is retried
        // under the same name, over its `.partial` leftover.
        let path = "/snapshots/s\(snapshotCounter)"
        if random.chance(0.3) {
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...400)))
        }
        let manifest: SnapshotManifest
        do {
            manifest = try SnapshotCreator.createVerifiedAndRecorded(
                engine: engine!, fileSystem: fileSystem, outputPath: path, nowSeconds: clock.nowNanoseconds() / 1_000_000_000)
        } catch {
            crashAndRecover()
            return
        }
        fileSystem.scheduleCrash(atOperation: nil)
        acknowledgedDurable = max(acknowledgedDurable, Int(manifest.height))
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(true) }
        failure = checkCreated(manifest, path: path)
        if failure == nil {
            snapshots.append((path, Int(manifest.height)))
            snapshotCounter += 1
        }
    }

    /// A snapshot just made holds the model's newest height and MetaRoot, and verifies.
    private func checkCreated(_ manifest: SnapshotManifest, path: String) -> OracleViolation? {
        let height = Int(manifest.height)
        let expected = model.metaRoot(at: height)
        guard height == model.height, manifest.metaRoot == expected.hex else {
            return OracleViolation(
                .snapshot, expected: "height \(model.height) MetaRoot \(expected.hex)",
                found: "snapshot \(path) holds height \(height) MetaRoot \(manifest.metaRoot)")
        }
        do {
            _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: path)
        } catch {
            return OracleViolation(.snapshot, expected: "snapshot \(path) verifies right after it was created", found: "\(error)")
        }
        return nil
    }

    /// Stops the engine, restores a completed snapshot (maybe crashing inside), and reopens:
    /// WAL replay must bring back the latest durable height.
    func restoreSnapshot() {
        let target = snapshots[random.int(in: 0..<snapshots.count)]
        do {
            try engine!.close()
        } catch {
            crashAndRecover()
            return
        }
        engine = nil
        // A clean close made everything written durable.
        acknowledgedDurable = written
        if random.chance(0.4) {
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...600)))
        }
        do {
            try attemptRestore(target)
            fileSystem.scheduleCrash(atOperation: nil)
        } catch {
            let refusal = error.kind != .io && error.kind != .locked && error.kind != .engine
            if refusal && !fileSystem.isHalted {
                retryRestoreWithFaultsOff(target)
            } else {
                crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
            }
        }
        if continues { recover() }
    }

    /// An injected read or write error can look like damage; a refusal that stands with faults
    /// off is a real one.
    private func retryRestoreWithFaultsOff(_ target: (path: String, height: Int)) {
        fileSystem.scheduleCrash(atOperation: nil)
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(true) }
        do {
            try attemptRestore(target)
        } catch where (error.kind == .damaged || error.kind == .walGap) && struckWhereRefused(error, target.path) {
            // The snapshot or the log it needs was damaged on the media, and the restore
            // refused, naming it (I4). An operator would take another snapshot or resync; the
            // seed ends.
            refused = true
        } catch {
            failure = OracleViolation(
                .snapshot, expected: "snapshot \(target.path) (height \(target.height)) restores", found: "refused: \(error)")
        }
    }

    /// Whether corruption at rest struck what a refused restore names, or — for a WAL gap — the
    /// log or the snapshot (a damaged lane file of it can surface as a gap).
    private func struckWhereRefused(_ error: SnapshotError, _ snapshotPath: String) -> Bool {
        // A refusal naming the whole data directory (or nothing) is excused by nothing.
        var places = [configuration.dataDirectory, "/", ""].contains(error.path) ? [] : [error.path]
        if error.kind == .walGap { places += [configuration.layout.wal, snapshotPath] }
        return places.contains { !fileSystem.filesDamagedAtRest(under: $0).isEmpty }
    }

    /// One restore as the operator runs it: lock, finish an interrupted one, plan, restore.
    private func attemptRestore(_ target: (path: String, height: Int)) throws(SnapshotError) {
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory)
        defer { try? lock.unlock() }
        try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory, clock: clock)
        let plan = try SnapshotRestorer.plan(
            fileSystem: fileSystem, snapshotPath: target.path, dataDirectory: configuration.dataDirectory, resetWAL: false,
            id: "r\(restoreCounter)")
        restoreCounter += 1
        guard case .keep = plan.walAction else {
            throw SnapshotError(.walGap, path: target.path, "the WAL was not kept: \(plan.walAction)")
        }
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: random.chance(0.5), clock: clock)
    }

    // MARK: Lanes restored one by one

    static let foreignDataDirectory = "/foreign"

    /// An operator restores one lane on its own, with the engine stopped: from a completed
    /// snapshot of this chain (recovery must converge: the catalog keeps the log the lane needs
    /// to come forward), or in a quarter of the swaps from another chain's snapshot (recovery
    /// must refuse naming that lane, or — where that lane of the other chain is still empty —
    /// converge with the log rebuilding it). Counted as injected faults.
    func swapLane() {
        do {
            try engine!.close()
            // A crash point reached inside the close (which reports no error) halted the machine.
            guard !fileSystem.isHalted else { throw EngineError(.failed, "the machine halted inside the close") }
        } catch {
            crashAndRecover()
            return
        }
        engine = nil
        acknowledgedDurable = written
        let lane = random.int(in: 0..<configuration.laneCount)
        let foreign = random.chance(0.25)
        let ownSource = snapshots[random.int(in: 0..<snapshots.count)]
        // The operator's copy runs on a healthy machine: no fault, no crash point pending.
        fileSystem.scheduleCrash(atOperation: nil)
        fileSystem.setFaultsEnabled(false)
        do {
            let source = foreign ? try foreignSnapshot() : ownSource.path
            try LaneSwap.replace(lane: lane, in: configuration.dataDirectory, from: source, fileSystem: fileSystem)
            fileSystem.recordInjectedFault(foreign ? "lane_swap_other_chain" : "lane_swap_older_snapshot", detail: "lane \(lane) from \(source)")
        } catch {
            failure = OracleViolation(.faultFreeOperation, expected: "a lane swap with faults off", found: "\(error)")
        }
        fileSystem.setFaultsEnabled(true)
        guard failure == nil else { return }
        foreignLane = foreign ? lane : nil
        recover()
        foreignLane = nil
    }

    /// Another chain with this one's lane count, a few blocks long, and its snapshot (faults off).
    private func foreignSnapshot() throws -> String {
        if let foreignSnapshotPath { return foreignSnapshotPath }
        var other = EngineConfiguration(dataDirectory: Self.foreignDataDirectory + "/data")
        other.chainID = configuration.chainID + "-other"
        other.laneCount = configuration.laneCount
        var foreignRandom = random.fork()
        // Lanes in a seeded order, as the seed's own engine runs them (a thread pool would not replay).
        let engine = try Engine(fileSystem: fileSystem, configuration: other, clock: ManualClock(), executor: SeededLaneExecutor(seed: foreignRandom.next()))
        for _ in 0..<6 { _ = try engine.commit(blocks.block(using: &foreignRandom)) }
        let path = Self.foreignDataDirectory + "/snapshot"
        _ = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: path, nowSeconds: 0)
        try engine.close()
        foreignSnapshotPath = path
        return path
    }

    // MARK: Blocks

    /// One step of the main loop: maybe a snapshot, maybe a restore, maybe a crash point, then
    /// one block committed and maybe one read checked.
    func step() {
        if snapshotsOn && random.chance(0.04) { createSnapshot() }
        if snapshotsOn && !snapshots.isEmpty && continues && random.chance(0.02) { restoreSnapshot() }
        if snapshotsOn && !snapshots.isEmpty && continues && random.chance(0.01) { swapLane() }
        guard continues else { return }
        if random.chance(0.04) {
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...300)))
        }
        let block = blocks.block(using: &random)
        clock.advance(byNanoseconds: UInt64(random.int(in: 0...20)) * 1_000_000)
        do {
            try commit(block)
        } catch {
            crashAndRecover()
        }
    }

    /// Commits `block` (the model advances first: it was written once the commit began) and
    /// checks the answer, then maybe reads one key with its proof.
    private func commit(_ block: [BlockOperation]) throws(EngineError) {
        written = model.height + 1
        model.apply(block)
        let result = try engine!.commit(block)
        guard result.height == UInt64(model.height) else {
            failure = OracleViolation(.prefix, expected: "commit at height \(model.height)", found: "height \(result.height)")
            return
        }
        if result.durable { acknowledgedDurable = Int(result.height) }
        acknowledgedDurable = max(acknowledgedDurable, Int(engine!.durableHeight))
        if configuration.wal.fsyncPolicy == .strict && !result.durable {
            failure = OracleViolation(
                .durability, expected: "a strict commit returns durable", found: "height \(result.height) returned without durability")
        }
        if random.chance(0.1) {
            let key = Array("\(blocks.keyPrefix)\(random.int(in: 0..<keySpace))".utf8)
            let read = try engine!.get(key)
            if read.value != model.states.last![key] || !read.proof.verify(key: key, value: read.value, root: read.laneRoot) {
                failure = OracleViolation(
                    .metaRoot, expected: "the model's value of \(String(decoding: key, as: UTF8.self)) with a valid proof",
                    found: "another value or proof")
            }
        }
    }

    /// The end of the seed: a clean close with faults off, then the engine is let go.
    func closeCleanly() {
        if failure == nil, let running = engine {
            fileSystem.scheduleCrash(atOperation: nil)
            fileSystem.setFaultsEnabled(false)
            do {
                try running.close()
            } catch {
                failure = OracleViolation(.faultFreeOperation, expected: "a clean close with faults off", found: "\(error)")
            }
        }
        engine?.abandon()
    }
}
