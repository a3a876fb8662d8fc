import Engine
import FaultFS

/// Exhaustive mode for a short engine workload: commit blocks, take a snapshot, commit more,
/// stop, restore the snapshot, start again and commit a few more — and crash at every
/// file-system operation of all of it (normal work, snapshot create, restore, the journal's
/// roll-forward), under each persisted-subset variant of `ExhaustiveCrashRunner`, then crash
/// recovery itself at a rotating operation and recover again. After each, the engine must open
/// on exactly a committed height between the last acknowledged-durable one and the last written
/// one, with the MetaRoot an independent model computes from scratch (I1–I3, I5, I6).
public struct EngineExhaustiveCrashRunner: Sendable {
    public let blocks: Int
    public let laneCount: Int
    public let policy: FsyncPolicy
    let chainModel: ChainModel

    public init(blocks: Int, laneCount: Int, policy: FsyncPolicy) {
        precondition(blocks >= 2 && blocks <= 1_000 && (1...8).contains(laneCount))
        precondition(policy != .devFast, "dev_fast promises nothing across a power loss")
        self.blocks = blocks
        self.laneCount = laneCount
        self.policy = policy
        chainModel = Self.model(blocks: blocks, laneCount: laneCount)
    }

    func configuration() -> EngineConfiguration {
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = "exhaustive"
        configuration.laneCount = laneCount
        configuration.wal.fsyncPolicy = policy
        configuration.wal.segmentSizeBytes = 2_048
        configuration.wal.syncBytes = 1_024
        configuration.wal.syncIntervalMilliseconds = 20
        configuration.flushEveryBlocks = 5
        configuration.walRetentionHours = 0
        return configuration
    }

    /// Up to 4 operations over 12 keys, a fifth of them deletes; the same blocks in every run.
    static let generator = BlockGenerator(keySpace: 12, operationsPerBlock: 1...4, deleteChance: 0.2, valueBytes: 0...40)

    static func block(_ height: Int) -> [BlockOperation] {
        var random = DeterministicRandom(seed: UInt64(height) &* 0x9E37)
        return generator.block(using: &random)
    }

    struct Progress {
        var durable = 0
        var written = 0
    }

    /// The workload, until the machine halts. Returns what was acknowledged durable and written.
    func workload(_ fileSystem: SimulatedFileSystem) -> Progress {
        var progress = Progress()
        let clock = ManualClock()
        let configuration = configuration()
        let half = blocks / 2
        func commit(_ engine: Engine, _ heights: ClosedRange<Int>) throws {
            for height in heights {
                clock.advance(byNanoseconds: 7_000_000)
                progress.written = height
                let result = try engine.commit(Self.block(height))
                if result.durable { progress.durable = height }
                progress.durable = max(progress.durable, Int(engine.durableHeight))
            }
        }
        var engine: Engine?
        do {
            let first = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: SerialLaneExecutor())
            engine = first
            try commit(first, 1...half)
            _ = try SnapshotCreator.create(engine: first, fileSystem: fileSystem, outputPath: "/snapshots/s", nowSeconds: 1)
            progress.durable = max(progress.durable, half)
            try commit(first, (half + 1)...blocks)
            try first.close()
            engine = nil
            progress.durable = progress.written
            let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory)
            let plan = try SnapshotRestorer.plan(
                fileSystem: fileSystem, snapshotPath: "/snapshots/s", dataDirectory: configuration.dataDirectory, resetWAL: false, id: "x")
            try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: true, clock: clock)
            try lock.unlock()
            let second = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: SerialLaneExecutor())
            engine = second
            try commit(second, (blocks + 1)...(blocks + 2))
            try second.close()
            engine = nil
        } catch {
            // The crash point: what was acknowledged so far stands.
        }
        engine?.abandon()
        return progress
    }

    public func run() -> ExhaustiveCrashRunner.Report { CrashPointExplorer.explore(self) }
}

extension EngineExhaustiveCrashRunner: ExhaustiveCrashWorkload {
    var crashKind: CrashKind { .powerLoss }
    var variants: [(name: String, plan: FaultPlan)] { ExhaustiveCrashRunner.variants }
    var label: String { policy.rawValue }

    func run(_ fileSystem: SimulatedFileSystem) -> Progress { workload(fileSystem) }

    /// Opens (recovering) the engine, as far as the machine lets it go; then closes it, or
    /// lets it go as a crash would.
    func recover(_ fileSystem: SimulatedFileSystem, thenClose: Bool) {
        guard let engine = try? Engine(fileSystem: fileSystem, configuration: configuration(), clock: ManualClock()) else { return }
        if thenClose { try? engine.close() } else { engine.abandon() }
    }

    func checkReference(_ progress: Progress) -> String? {
        progress.written == blocks + 2 ? nil : "the workload does not run to the end without crashes (height \(progress.written))"
    }

    /// The engine opens on a committed height between the acknowledged and the written one,
    /// with the MetaRoot the model computes.
    func check(_ fileSystem: SimulatedFileSystem, after progress: Progress) -> OracleViolation? {
        let configuration = configuration()
        do {
            let engine = try Engine(fileSystem: fileSystem, configuration: configuration, clock: ManualClock())
            defer {
                try? engine.close()
                engine.abandon()
            }
            return try EngineSwarmWorkload.check(
                engine, model: chainModel, durable: progress.durable, written: progress.written)
        } catch {
            return OracleViolation(.recovery, expected: "recovery after a crash succeeds", found: "refused: \(error)")
        }
    }

    /// The chain model of every block the workload commits.
    static func model(blocks: Int, laneCount: Int) -> ChainModel {
        var model = ChainModel(chainID: "exhaustive", laneCount: laneCount)
        for height in 1...(blocks + 2) { model.apply(block(height)) }
        return model
    }
}
