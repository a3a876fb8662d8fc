import Engine
import FaultFS
import Testing

/// The engine crashed at every file-system operation of a 4-lane, 50-block workload, recovered
/// after each, and checked against the independent model (BRIEF I1–I5).
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
    static func run(_ fileSystem: SimulatedFileSystem, policy: FsyncPolicy, clock: ManualClock) -> Outcome {
        var outcome = Outcome()
        let engine: Engine
        do {
            engine = try Engine(fileSystem: fileSystem, configuration: configuration(policy), clock: clock, executor: SerialLaneExecutor())
        } catch {
            return outcome
        }
        for height in 1...blockCount {
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
        _ fileSystem: SimulatedFileSystem, policy: FsyncPolicy, outcome: Outcome, model: ChainModel, crashPoint: UInt64
    ) {
        let engine: Engine
        do {
            engine = try Engine(fileSystem: fileSystem, configuration: configuration(policy), clock: ManualClock())
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
        var model = ChainModel(chainID: "rivellum-test", laneCount: 4)
        for height in 1...Self.blockCount { model.apply(makeBlock(height)) }
        let total = SimulatedFileSystem(seed: 0, plan: .none)
        let full = Self.run(total, policy: policy, clock: ManualClock())
        #expect(full.acknowledged == Self.blockCount)
        let operationCount = total.operationCount
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
            let clock = ManualClock()
            let outcome = Self.run(fileSystem, policy: policy, clock: clock)
            fileSystem.crash(.powerLoss)
            // A crash inside recovery too, then a clean recovery (I5).
            fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + 1 + crashPoint % 97)
            if let engine = try? Engine(fileSystem: fileSystem, configuration: Self.configuration(policy), clock: ManualClock()) {
                engine.abandon()
            }
            fileSystem.scheduleCrash(atOperation: nil)
            fileSystem.crash(.powerLoss)
            fileSystem.setPlan(.none)
            Self.check(fileSystem, policy: policy, outcome: outcome, model: model, crashPoint: crashPoint)
            checked += 1
        }
        #expect(checked == Int((operationCount + stride - 1) / stride))
        print("engine crash test \(policy): \(operationCount) operations, \(checked) crash points checked")
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
