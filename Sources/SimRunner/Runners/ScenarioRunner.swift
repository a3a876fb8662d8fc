@_spi(Mutations) import Engine
import FaultFS

/// Runs one `Scenario` against the engine on a `SimulatedFileSystem` and compares the outcome
/// with its expectation. Convergence is checked against an independent model: the recovered
/// height is at least the last durable acknowledged one and at most the last written one, and
/// its MetaRoot equals the model's, computed from scratch.
public struct ScenarioRunner {
    public let scenario: Scenario
    /// Deliberate bugs to switch on (debug builds only), to show the scenario catches them.
    public let mutations: Set<EngineMutation>
    /// Oracle checks left out (mutation tests only: what a check adds).
    public let checksOff: Set<OracleCheck>

    public init(scenario: Scenario, mutations: Set<EngineMutation> = [], checksOff: Set<OracleCheck> = []) {
        self.scenario = scenario
        self.mutations = mutations
        self.checksOff = checksOff
    }

    final class Run {
        let fileSystem: SimulatedFileSystem
        var configuration: EngineConfiguration
        let executorSeed: UInt64
        var model: ChainModel
        var engine: Engine?
        var written = 0
        var durable = 0
        var random: DeterministicRandom
        /// Snapshots created and catalogued (checked after recovery by `SnapshotOracle`).
        var snapshots: [(path: String, height: Int)] = []

        init(scenario: Scenario, mutations: Set<EngineMutation>) {
            let seed = UInt64(scenario.seed ?? 1)
            fileSystem = SimulatedFileSystem(seed: seed, plan: .none, traceEventsMax: 0)
            configuration = EngineConfiguration(dataDirectory: "/data")
            configuration.chainID = "scenario"
            configuration.laneCount = scenario.lanes ?? 4
            configuration.wal.fsyncPolicy = scenario.fsyncPolicy ?? .strict
            configuration.wal.segmentSizeBytes = UInt64(scenario.segmentSizeBytes ?? 4_096)
            configuration.wal.syncBytes = 1 << 30
            configuration.wal.syncIntervalMilliseconds = 1_000_000
            configuration.flushEveryBlocks = 1_000
            configuration.wal.mutations = mutations
            model = ChainModel(chainID: configuration.chainID, laneCount: configuration.laneCount)
            executorSeed = seed
            random = DeterministicRandom(seed: seed)
        }

        func open() throws(EngineError) -> Engine {
            try Engine(
                fileSystem: fileSystem, configuration: configuration, clock: ManualClock(),
                executor: SeededLaneExecutor(seed: executorSeed))
        }

        /// Up to 6 operations over 60 keys, some deletes, values up to 300 bytes.
        static let generator = BlockGenerator(keySpace: 60, operationsPerBlock: 1...6, deleteChance: 0.15, valueBytes: 1...300)

        func block() -> [BlockOperation] { Self.generator.block(using: &random) }

        /// Commits one block; returns false when the commit failed (the engine is then failed).
        @discardableResult
        func commit() -> Bool {
            let operations = block()
            model.apply(operations)
            written = model.height
            do {
                let result = try engine!.commit(operations)
                if result.durable { durable = Int(result.height) }
                durable = max(durable, Int(engine!.durableHeight))
                return true
            } catch {
                return false
            }
        }

        func stop(_ kind: CrashKind) {
            crashMachine(fileSystem, engine: &engine, kind)
        }

        /// Commits one block that puts a value under a key of `lane` only.
        func commitToLane(_ lane: Int) {
            let key = (0..<10_000).lazy.map { Array("lane-\(lane)-key-\($0)".utf8) }
                .first { LaneRouting.lane(of: $0, laneCount: self.configuration.laneCount) == lane }!
            let operations = [BlockOperation(key: key, value: Array("value-\(written + 1)".utf8))]
            model.apply(operations)
            written = model.height
            if let result = try? engine!.commit(operations), result.durable { durable = Int(result.height) }
        }

        /// The last segment of a lane's WAL partition and the offset of its last frame.
        func lastFrame(lane: Int) throws -> (path: String, offset: Int) {
            try WALDamage.lastFrame(fileSystem: fileSystem, walDirectory: "/data/wal", partition: .lane(lane))
        }

        /// Overwrites `bytes` at `offset` of `path` durably (damage on the media).
        func damage(_ path: String, at offset: Int, with bytes: [UInt8]) throws {
            try WALDamage.overwrite(fileSystem: fileSystem, path, at: offset, with: bytes)
        }

        /// The lane WAL segment with the most bytes (for damaging a middle record).
        func busiestLaneSegment() throws -> String {
            var best = ("", 0)
            for lane in 0..<configuration.laneCount {
                let directory = "/data/wal/" + WALPartitionID.lane(lane).directoryName
                for name in try fileSystem.listDirectory(directory) where name.hasSuffix(".wal") {
                    let size = try fileSystem.readFile(directory + "/" + name).count
                    if size > best.1 { best = (directory + "/" + name, size) }
                }
            }
            return best.0
        }
    }

    /// Runs the scenario, then checks that every probe it names was hit during the run (the
    /// counters are process-wide: run scenarios one at a time for this check to be exact).
    public func run() -> ScenarioOutcome {
        let before = ProbeCounters.snapshot()
        var outcome: ScenarioOutcome
        switch scenario.fault {
        case .engine(let fault): outcome = runEngine(fault)
        case .sync(let fault): outcome = SyncScenarioRunner(scenario: scenario, fault: fault, mutations: mutations).run()
        }
        let missed = Self.missedProbes(scenario.expectProbes ?? [], before: before, after: ProbeCounters.snapshot())
        if outcome.failure == nil && !missed.isEmpty {
            outcome.failure = "the run never hit \(missed.joined(separator: ", ")): the branch the scenario is about was not taken"
        }
        return outcome
    }

    /// The probes of `expected` (validated `Probe` names) whose count did not grow from
    /// `before` to `after`.
    static func missedProbes(_ expected: [String], before: [Probe: UInt64], after: [Probe: UInt64]) -> [String] {
        expected.filter { name in
            let probe = Probe(rawValue: name)!
            return after[probe, default: 0] <= before[probe, default: 0]
        }
    }

    private func runEngine(_ fault: Scenario.Fault) -> ScenarioOutcome {
        let run = Run(scenario: scenario, mutations: mutations)
        var summary = ""
        let outcome: Result<Engine, EngineError>
        do {
            run.engine = try run.open()
            for _ in 0..<(scenario.blocks ?? 30) { run.commit() }
            try inject(fault, into: run)
            outcome = recover(run)
        } catch {
            return ScenarioOutcome(
                scenario: scenario.name, failure: "the scenario could not be set up: \(error)", summary: "setup failed",
                fileSystemOperations: run.fileSystem.operationCount)
        }
        var failure: String?
        switch (outcome, scenario.expect) {
        case (.success(let engine), .converges):
            let roots = engine.stateRoots()
            let height = Int(roots.height)
            summary = "converged at height \(height) (durable \(run.durable), written \(run.written))"
            // The swarm's oracle: I1–I3, lane roots recomputed from their key-values included.
            do {
                failure = try EngineSwarmWorkload.check(
                    engine, model: run.model, durable: run.durable, written: run.written)?.description
                if failure == nil && !checksOff.contains(.cataloguedSnapshots) {
                    failure = SnapshotOracle.checkCatalogued(run.snapshots, fileSystem: run.fileSystem, dataDirectory: run.configuration.dataDirectory)?
                        .description
                }
            } catch {
                failure = OracleViolation(.metaRoot, expected: "lane roots recomputable from scratch", found: "\(error)").description
            }
            try? engine.close()
        case (.success(let engine), .refuses):
            summary = "converged at height \(engine.stateRoots().height)"
            failure = "expected a refusal (\(scenario.expectError ?? "")), but recovery converged"
            try? engine.close()
        case (.failure(let error), .refuses):
            let found = [error.kind.rawValue, error.walError?.damage?.damageClass.rawValue, error.walError.map { walKind($0.kind) }]
                .compactMap { $0 }
            summary = "refused: \(error)"
            if !found.contains(scenario.expectError ?? "") {
                failure = "refused with \(found.joined(separator: "/")), expected \(scenario.expectError ?? "")"
            } else if let lane = scenario.expectLane, error.lane != lane {
                failure = "refused naming lane \(error.lane.map(String.init) ?? "none"), expected lane \(lane)"
            }
        case (.failure(let error), .converges):
            summary = "refused: \(error)"
            failure = "expected convergence, recovery refused: \(error)"
        }
        return ScenarioOutcome(
            scenario: scenario.name, failure: failure, summary: summary, fileSystemOperations: run.fileSystem.operationCount)
    }

    private func walKind(_ kind: WALError.Kind) -> String {
        switch kind {
        case .midLogDamage: "mid_log"
        case .damageInAbsoluteMode: "absolute"
        case .io: "io"
        case .failed: "failed"
        case .closed: "closed"
        case .readOnly: "read_only"
        case .recordTooLarge: "record_too_large"
        }
    }

    /// Recovers; a transient failure (the injected fault still firing) is retried with faults
    /// off, as an operator restarting on a repaired device would.
    private func recover(_ run: Run) -> Result<Engine, EngineError> {
        run.fileSystem.setPlan(.none)
        do {
            return .success(try run.open())
        } catch {
            return .failure(error)
        }
    }

    private func inject(_ fault: Scenario.Fault, into run: Run) throws {
        let fileSystem = run.fileSystem
        switch fault {
        case .cleanRestart:
            try run.engine!.close()
            run.engine = nil
        case .tornTail:
            fileSystem.setPlan(FaultPlan(rates: [.tornWrites: 1, .lostUnsyncedWrites: 0.3]))
            // Halt inside the next block, after its first append and before its syncs.
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 2)
            run.commit()
            run.stop(.powerLoss)
        case .bitRotMidLog:
            try rotMidLog(run)
        case .misdirectedWrite:
            fileSystem.setPlan(FaultPlan(rates: [.misdirectedWrites: 1]))
            run.commit()
            fileSystem.setPlan(.none)
            for _ in 0..<10 { run.commit() }
            run.stop(.powerLoss)
        case .fsyncErrorPagesMarkedClean:
            fileSystem.setPlan(FaultPlan(rates: [.syncErrors: 1]))
            run.commit()
            fileSystem.setPlan(FaultPlan(rates: [.lostUnsyncedWrites: 1]))
            run.stop(.powerLoss)
        case .noSpaceDuringRoll:
            fileSystem.setPlan(FaultPlan(capacityBytes: fileSystem.cachedBytesTotal + 6_000))
            var committed = 0
            // Bounded: the device fills within a few dozen blocks.
            while committed < 500 && run.commit() { committed += 1 }
            run.stop(.processCrash)
        case .directoryEntryLostOnRoll:
            fileSystem.setPlan(FaultPlan(rates: [.lostDirectoryEntries: 1, .lostUnsyncedWrites: 1]))
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(run.random.int(in: 20...200)))
            for _ in 0..<40 where !fileSystem.isHalted { run.commit() }
            run.stop(.powerLoss)
        case .crashDuringRecovery:
            try crashThroughRecovery(run)
        case .powerLossInBalancedWindow:
            fileSystem.setPlan(FaultPlan(rates: [.lostUnsyncedWrites: 1]))
            run.stop(.powerLoss)
        case .metaLogLost:
            try run.engine!.close()
            run.engine = nil
            let meta = "/data/wal/meta"
            for name in try fileSystem.listDirectory(meta) { try fileSystem.removeFile(meta + "/" + name) }
            try fileSystem.syncDirectory(meta)
        case .genesisMismatch:
            try run.engine!.close()
            run.engine = nil
            run.configuration.laneCount += 1
        case .segmentHeaderLost:
            run.stop(.processCrash)
            let (path, _) = try run.lastFrame(lane: 0)
            try run.damage(path, at: 0, with: [UInt8](repeating: 0, count: WALFormat.segmentHeaderBytes))
        case .rotInWitnessedLastRecord:
            try rotWitnessedLastRecord(run)
        case .powerLossAfterSnapshot:
            let manifest = try SnapshotCreator.createVerifiedAndRecorded(
                engine: run.engine!, fileSystem: fileSystem, outputPath: "/snapshots/s0", nowSeconds: 1)
            run.snapshots.append(("/snapshots/s0", Int(manifest.height)))
            for _ in 0..<5 { run.commit() }
            fileSystem.setPlan(FaultPlan(rates: [.lostDirectoryEntries: 1, .lostUnsyncedWrites: 1]))
            run.stop(.powerLoss)
        case .laneFromOlderSnapshot:
            _ = try SnapshotCreator.create(engine: run.engine!, fileSystem: fileSystem, outputPath: "/snapshots/older", nowSeconds: 1)
            for _ in 0..<10 { run.commit() }
            try run.engine!.close()
            run.engine = nil
            try LaneSwap.replace(lane: 1, in: run.configuration.dataDirectory, from: "/snapshots/older", fileSystem: fileSystem)
        case .laneFromOtherChain:
            try laneFromOtherChain(run)
        }
    }

    /// Another chain (same lane count and height) in `/other`, every block of it writing to
    /// lane 1, snapshotted; its lane 1 replaces ours with the engine stopped. Its lane stands at
    /// our height with at least our LSN, so no record of ours replays onto it: only the lane's
    /// applied root, checked against our commit record at that height, tells it apart.
    private func laneFromOtherChain(_ run: Run) throws {
        var other = run.configuration
        other.dataDirectory = "/other"
        other.chainID = "another-chain"
        let engine = try Engine(fileSystem: run.fileSystem, configuration: other, clock: ManualClock(), executor: SeededLaneExecutor(seed: 99))
        let keys = (0..<100_000).lazy.map { Array("other-key-\($0)".utf8) }.filter { LaneRouting.lane(of: $0, laneCount: other.laneCount) == 1 }
        for (height, key) in zip(1...run.model.height, keys) { _ = try engine.commit([BlockOperation(key: key, value: Array("other-\(height)".utf8))]) }
        _ = try SnapshotCreator.create(engine: engine, fileSystem: run.fileSystem, outputPath: "/snapshots/other", nowSeconds: 1)
        try engine.close()
        try run.engine!.close()
        run.engine = nil
        try LaneSwap.replace(lane: 1, in: run.configuration.dataDirectory, from: "/snapshots/other", fileSystem: run.fileSystem)
    }

    /// Flips a byte a third of the way into the busiest lane segment's records: acknowledged,
    /// with later records after it.
    private func rotMidLog(_ run: Run) throws {
        run.stop(.processCrash)
        let path = try run.busiestLaneSegment()
        let bytes = try run.fileSystem.readFile(path)
        let offset = WALFormat.segmentHeaderBytes + (bytes.count - WALFormat.segmentHeaderBytes) / 3
        // Not synced: the scenario has always left the flipped byte in the page cache only.
        let handle = try run.fileSystem.openFile(path, options: .readWrite)
        try handle.write([bytes[offset] ^ 0x10], at: UInt64(offset))
        try handle.close()
    }

    /// Crashes at the 1st, 2nd, … 64th operation of recovery, then at ever later ones (each step
    /// an eighth further), until one recovery completes. Bounded: about 100 tries.
    private func crashThroughRecovery(_ run: Run) throws {
        let fileSystem = run.fileSystem
        run.stop(.powerLoss)
        var step = 1
        while step < 100_000 {
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(step))
            if let engine = try? run.open() {
                fileSystem.scheduleCrash(atOperation: nil)
                try engine.close()
                return
            }
            run.stop(.powerLoss)
            step += step < 64 ? 1 : step / 8
        }
    }

    /// Rot in lane 0's last record, which lane 1's later block (its commit record's durable
    /// height) witnesses as durable.
    private func rotWitnessedLastRecord(_ run: Run) throws {
        precondition(run.configuration.laneCount >= 2, "the scenario needs two lanes")
        run.commitToLane(0)
        run.commitToLane(1)
        run.stop(.processCrash)
        try WALDamage.rotLastFrame(fileSystem: run.fileSystem, walDirectory: "/data/wal", partition: .lane(0))
    }
}
