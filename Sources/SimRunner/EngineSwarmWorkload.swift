import Engine
import FaultFS

/// A seed-driven workload against the whole engine: 1–8 lanes (each a RocksDB on the simulated
/// file system), strict or balanced, small segments and frequent checkpoints, a swarm fault
/// plan, blocks of puts and deletes with skewed keys and some large values, reads with proofs,
/// and crashes (process or power) at random file-system operations, including inside recovery.
///
/// After every recovery it checks, against an independent model:
/// - I1: the recovered height is at least the last height acknowledged as durable;
/// - I2: it is a height that was committed (never beyond what was written);
/// - I3: the MetaRoot equals the one the model computes from scratch for that height with the
///   reference tree code, and every lane root recomputed from the lane's key-values matches;
/// - reads return the model's values with proofs that verify against the MetaRoot.
public struct EngineSwarmWorkload: Sendable {
    public let seed: UInt64
    /// Fault families left out of the seed's plan (shrinking removes them one by one).
    public var excludedFamilies: Set<FaultFamily> = []
    /// Deliberate bugs to switch on (debug builds only), to show the workload catches them.
    public var mutations: Set<EngineMutation> = []
    /// Receives every trace event (file-system operations, injected faults, crashes) when set.
    public var traceSink: (@Sendable (TraceEvent) -> Void)?
    public let blocks: Int

    public init(seed: UInt64, blocks: Int = 120) {
        precondition(blocks > 0)
        self.seed = seed
        self.blocks = blocks
    }

    static let families: [FaultFamily] = [
        .lostUnsyncedWrites, .reorderedWrites, .tornWrites, .lostDirectoryEntries, .nonAtomicRename, .writeErrors,
        .noSpace, .shortWrites, .interrupts, .readErrors,
    ]

    static let recoveryAttemptsMax = 8

    /// The state after each height, and the reference MetaRoot.
    public struct Model: Sendable {
        public var states: [[[UInt8]: [UInt8]]] = [[:]]

        public init() {}

        public func metaRoot(at height: Int, chainID: String, laneCount: Int) -> Hash32 {
            var leaves: [[(path: Hash32, valueHash: Hash32)]] = Array(repeating: [], count: laneCount)
            for (key, value) in states[height] {
                leaves[LaneRouting.lane(of: key, laneCount: laneCount)].append((StateHashing.keyPath(key), StateHashing.valueHash(value)))
            }
            return MetaRoot.compute(chainID: chainID, height: UInt64(height), laneRoots: leaves.map { SparseMerkleReference.root(of: $0) })
        }
    }

    public func run() -> SeedResult {
        var random = DeterministicRandom(seed: seed)
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = "sim-\(seed % 7)"
        configuration.laneCount = random.int(in: 1...8)
        configuration.wal.fsyncPolicy = random.chance(0.6) ? .strict : .balanced
        configuration.wal.segmentSizeBytes = UInt64(random.int(in: 1_024...16_384))
        configuration.wal.syncBytes = UInt64(random.int(in: 512...8_192))
        configuration.wal.syncIntervalMilliseconds = UInt64(random.int(in: 5...50))
        configuration.flushEveryBlocks = UInt64(random.int(in: 4...40))
        configuration.walRetentionHours = 0
        configuration.wal.mutations = mutations
        let keySpace = random.int(in: 5...200)
        var plan = FaultPlan.swarm(random: &random, onProbability: 0.5, rateMin: 0.001, rateMax: 0.02)
        plan.rates = plan.rates.filter { Self.families.contains($0.key) && !excludedFamilies.contains($0.key) }
        let fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(traceSink)
        fileSystem.setOpaqueLengthPrefixes([configuration.lanesDirectoryPath])
        let clock = ManualClock()
        let executor = SeededLaneExecutor(seed: random.next())
        let knobs =
            "workload=engine lanes=\(configuration.laneCount) policy=\(configuration.wal.fsyncPolicy.rawValue) "
            + "segment_size_bytes=\(configuration.wal.segmentSizeBytes) flush_every_blocks=\(configuration.flushEveryBlocks) "
            + "key_space=\(keySpace) blocks=\(blocks) plan: \(plan)"

        var model = Model()
        var acknowledgedDurable = 0
        var written = 0
        var crashes = 0
        var failure: String?
        var engine: Engine?

        func crash(_ kind: CrashKind) {
            crashMachine(fileSystem, engine: &engine, kind)
            crashes += 1
        }

        func open() {
            var attempt = 0
            while failure == nil && engine == nil {
                attempt += 1
                if attempt > Self.recoveryAttemptsMax { fileSystem.setFaultsEnabled(false) }
                if attempt <= Self.recoveryAttemptsMax && random.chance(0.2) {
                    fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...200)))
                }
                do {
                    let opened = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: executor)
                    fileSystem.scheduleCrash(atOperation: nil)
                    fileSystem.setFaultsEnabled(false)
                    failure = check(opened, model: model, durable: acknowledgedDurable, written: written, configuration: configuration)
                    fileSystem.setFaultsEnabled(true)
                    let height = Int(opened.stateRoots().height)
                    model.states.removeLast(model.states.count - 1 - height)
                    written = height
                    acknowledgedDurable = height
                    engine = opened
                } catch where !error.isRefusal {
                    crash(random.chance(0.5) ? .powerLoss : .processCrash)
                } catch {
                    failure = "recovery refused, but no corrupting fault is drawn in this workload: \(error)"
                }
            }
        }

        open()
        for _ in 0..<blocks where failure == nil {
            if random.chance(0.04) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...300)))
            }
            let block = (0..<random.int(in: 1...8)).map { _ -> BlockOperation in
                // Skewed keys: half the operations hit the first tenth of the key space.
                let index = random.chance(0.5) ? random.int(in: 0..<max(1, keySpace / 10)) : random.int(in: 0..<keySpace)
                let key = Array("k\(index)".utf8)
                if random.chance(0.15) { return BlockOperation(key: key, value: nil) }
                let length = random.chance(0.05) ? random.int(in: 1_000...8_000) : random.int(in: 0...64)
                return BlockOperation(key: key, value: (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) })
            }
            clock.advance(byNanoseconds: UInt64(random.int(in: 0...20)) * 1_000_000)
            do {
                var next = model.states.last!
                for operation in block { next[operation.key] = operation.value }
                written = model.states.count
                model.states.append(next)
                let result = try engine!.commit(block)
                guard result.height == UInt64(model.states.count - 1) else {
                    failure = "commit returned height \(result.height), the model is at \(model.states.count - 1)"
                    break
                }
                if result.durable { acknowledgedDurable = Int(result.height) }
                acknowledgedDurable = max(acknowledgedDurable, Int(engine!.durableHeight))
                if configuration.wal.fsyncPolicy == .strict && !result.durable {
                    failure = "I1: strict commit of height \(result.height) returned without durability"
                }
                if random.chance(0.1) {
                    let key = Array("k\(random.int(in: 0..<keySpace))".utf8)
                    let read = try engine!.get(key)
                    if read.value != model.states.last![key] || !read.proof.verify(key: key, value: read.value, root: read.laneRoot) {
                        failure = "read of \(String(decoding: key, as: UTF8.self)) returned the wrong value or proof"
                    }
                }
            } catch {
                crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
                open()
            }
        }
        if failure == nil, let running = engine {
            fileSystem.scheduleCrash(atOperation: nil)
            fileSystem.setFaultsEnabled(false)
            do {
                try running.close()
            } catch {
                failure = "clean close failed with faults off: \(error)"
            }
        }
        engine?.abandon()
        return SeedResult(
            seed: seed, failure: failure, traceHash: fileSystem.traceHash, fileSystemOperations: fileSystem.operationCount,
            crashes: crashes, knobs: knobs, faults: fileSystem.injectedFaultCounts)
    }

    private func check(_ engine: Engine, model: Model, durable: Int, written: Int, configuration: EngineConfiguration) -> String? {
        let roots = engine.stateRoots()
        let height = Int(roots.height)
        if height < durable { return "I1: recovered height \(height), but height \(durable) was acknowledged durable" }
        if height > written || height >= model.states.count { return "I2: recovered height \(height) was never written (last \(written))" }
        let expected = model.metaRoot(at: height, chainID: configuration.chainID, laneCount: configuration.laneCount)
        if roots.metaRoot != expected {
            return "I3: MetaRoot at height \(height) is \(roots.metaRoot.hex), the model computes \(expected.hex)"
        }
        for (lane, store) in engine.laneStores.enumerated() {
            guard let scratch = try? store.recomputeRootFromScratch() else { return "I3: lane \(lane) could not be scanned" }
            if scratch != roots.laneRoots[lane] {
                return "I3: lane \(lane) root recomputed from its key-values differs from the stored root at height \(height)"
            }
        }
        return nil
    }
}
