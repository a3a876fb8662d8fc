import Engine
import FaultFS
import SimRunner
import Testing

/// The engine crashed at every file-system operation of a 4-lane, 50-block workload, recovered
/// after each, and checked against the independent model (docs/RULES.md, I1–I5).
@Suite("Engine crash at every operation")
struct EngineCrashTests {
    static let blockCount = 50

    struct Outcome {
        var acknowledged = 0
        var durable = 0
    }

    static func configuration(_ policy: FsyncPolicy) -> EngineConfiguration {
        var configuration = EngineTests.configuration(policy)
        configuration.wal.syncBytes = 4_096
        configuration.wal.syncIntervalMilliseconds = 30
        return configuration
    }

    /// Runs the workload until the machine halts; returns what was acknowledged.
    static func run(
        _ fileSystem: SimulatedFileSystem, configuration: EngineConfiguration, clock: ManualClock, blocks: Int = blockCount
    ) -> Outcome {
        var outcome = Outcome()
        let engine: Engine
        do {
            engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: SerialLaneExecutor())
        } catch {
            return outcome
        }
        for height in 1...blocks {
            clock.advance(byNanoseconds: 10_000_000)
            do {
                let result = try engine.commit(makeBlock(height))
                outcome.acknowledged = height
                if result.durable { outcome.durable = height }
                outcome.durable = max(outcome.durable, Int(engine.durableHeight))
            } catch {
                break
            }
        }
        if !fileSystem.isHalted { try? engine.close() }
        engine.abandon()
        return outcome
    }

    static func check(
        _ fileSystem: SimulatedFileSystem, configuration: EngineConfiguration, outcome: Outcome, model: ChainModel, crashPoint: UInt64
    ) {
        let policy = configuration.wal.fsyncPolicy
        let engine: Engine
        do {
            engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
        } catch {
            Issue.record("\(policy) crash at \(crashPoint): recovery refused: \(error)")
            return
        }
        let roots = engine.stateRoots()
        let height = Int(roots.height)
        // I1 durability and I2 prefix: exactly one committed height, at least the durable one.
        #expect(height >= outcome.durable, "\(policy) crash at \(crashPoint): height \(height) < durable \(outcome.durable)")
        #expect(height <= outcome.acknowledged + 1, "\(policy) crash at \(crashPoint): height \(height) was never written")
        // I3 MetaRoot convergence: recorded, recomputed, and independently from the model.
        if height < model.states.count {
            #expect(roots.metaRoot == model.metaRoot(at: height), "\(policy) crash at \(crashPoint): MetaRoot diverges at \(height)")
            for (lane, store) in engine.laneStores.enumerated() {
                #expect((try? store.recomputeRootFromScratch()) == roots.laneRoots[lane])
            }
        }
        try? engine.close()
        engine.abandon()
    }

    @Test(arguments: [FsyncPolicy.strict, .balanced])
    func crashAtEveryOperationRecoversToACommittedHeight(policy: FsyncPolicy) throws {
        let checked = Self.crashAtEveryOperation(configuration: Self.configuration(policy), blocks: Self.blockCount)
        print("engine crash test \(policy): \(checked) crash points checked")
    }

    /// A checkpoint after every block on 2 lanes: the 8th checkpoint compacts each lane (the
    /// simulation's compaction), and a crash lands on every operation of it — the new SST, the
    /// MANIFEST edit that swaps it in, the deletion of the old files — and of the recovery
    /// after. RocksDB must come back with the old set of files or the new one (I1, I2, I3, I5).
    @Test func crashAtEveryOperationOfALaneCompaction() throws {
        var configuration = Self.configuration(.strict)
        configuration.laneCount = 2
        configuration.flushEveryBlocks = 1
        let checked = Self.crashAtEveryOperation(configuration: configuration, blocks: 10) { engine in
            // The run without a crash compacted every lane.
            for store in engine.laneStores { #expect(filesBelowLevelZero(store) >= 1, "lane \(store.index) was compacted") }
        }
        #expect(checked > 0)
    }

    /// Runs `blocks` blocks crashing (power loss, with lost, torn and reordered unsynced writes)
    /// at every file-system operation in turn, crashes once more inside the recovery, recovers
    /// and checks the result against the model. Returns the crash points checked.
    static func crashAtEveryOperation(
        configuration: EngineConfiguration, blocks: Int, inspectFullRun: (Engine) throws -> Void = { _ in }
    ) -> Int {
        var model = ChainModel(chainID: "rivellum-test", laneCount: configuration.laneCount)
        for height in 1...blocks { model.apply(makeBlock(height)) }
        let total = SimulatedFileSystem(seed: 0, plan: .none)
        let full = Self.run(total, configuration: configuration, clock: ManualClock(), blocks: blocks)
        #expect(full.acknowledged == blocks)
        let operationCount = total.operationCount
        do {
            let reopened = try Engine(fileSystem: total, configuration: configuration, clock: ManualClock())
            try inspectFullRun(reopened)
            try reopened.close()
        } catch {
            Issue.record("reopening the run without a crash: \(error)")
        }
        // Every operation by default (about a minute in a debug build); RIVELLUM_CRASH_STRIDE=N
        // checks every N-th one for a quicker local run.
        let stride = UInt64(ProcessInfoLite.environment("RIVELLUM_CRASH_STRIDE").flatMap { Int($0) } ?? 1)
        var checked = 0
        for crashPoint in Swift.stride(from: UInt64(1), through: operationCount, by: Int(stride)) {
            let fileSystem = SimulatedFileSystem(
                seed: crashPoint,
                plan: FaultPlan(rates: [.lostUnsyncedWrites: 0.5, .tornWrites: 0.3, .reorderedWrites: 0.3, .lostDirectoryEntries: 0.5]),
                traceEventsMax: 0)
            fileSystem.scheduleCrash(atOperation: crashPoint)
            let outcome = Self.run(fileSystem, configuration: configuration, clock: ManualClock(), blocks: blocks)
            fileSystem.crash(.powerLoss)
            // A crash inside recovery too, then a clean recovery (I5).
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1 + crashPoint % 97)
            if let engine = try? Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock()) {
                engine.abandon()
            }
            fileSystem.scheduleCrash(atOperation: nil)
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            Self.check(fileSystem, configuration: configuration, outcome: outcome, model: model, crashPoint: crashPoint)
            checked += 1
        }
        #expect(checked == Int((operationCount + stride - 1) / stride))
        return checked
    }
}

/// Reads an environment variable without Foundation.
enum ProcessInfoLite {
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

#if canImport(Glibc)
import Glibc
#endif
