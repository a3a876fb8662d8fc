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
public struct EngineSwarmWorkload: Sendable {
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
    public let blocks: Int

    public init(seed: UInt64, blocks: Int = 120) {
        precondition(blocks > 0)
        self.seed = seed
        self.blocks = blocks
    }

    static let families: [FaultFamily] = [
        .lostUnsyncedWrites, .reorderedWrites, .tornWrites, .lostDirectoryEntries, .nonAtomicRename, .writeErrors,
        .noSpace, .shortWrites, .interrupts, .readErrors, .bitRotOnRead, .misdirectedReads, .syncErrors, .bitRotAtRest,
        .misdirectedWrites,
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
        let snapshotsOn = random.chance(0.5)
        let plan = swarmPlan(random: &random, families: Self.families, excluding: excludedFamilies, rateMin: 0.001, rateMax: 0.02)
        let fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(traceSink)
        fileSystem.suppress(faults: suppressedFaults, crashPoints: suppressedCrashPoints)
        // RocksDB writes a random session id into its files, which can shift a length by a byte
        // between runs; snapshots copy those files and record their sizes (the manifest, the
        // catalog), so their lengths are left out of the trace hash too.
        fileSystem.setOpaqueLengthPrefixes([
            configuration.lanesDirectoryPath, "/snapshots", PathComponents.join(configuration.dataDirectory, SnapshotCatalog.fileName),
        ])
        let clock = ManualClock()
        let executor = SeededLaneExecutor(seed: random.next())
        let knobs =
            "workload=engine lanes=\(configuration.laneCount) policy=\(configuration.wal.fsyncPolicy.rawValue) "
            + "segment_size_bytes=\(configuration.wal.segmentSizeBytes) flush_every_blocks=\(configuration.flushEveryBlocks) "
            + "key_space=\(keySpace) blocks=\(blocks) snapshots=\(snapshotsOn ? "on" : "off") plan: \(plan)"

        var model = Model()
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

        /// Whether `error` is an acceptable end of the seed: damage refused with the lane or file
        /// named, after corruption at rest was injected (I4).
        func refusalAccepted(_ error: EngineError) -> Bool {
            error.isRefusal && corruptionAtRestCount(fileSystem) > 0 && (error.lane != nil || error.path != nil)
        }

        func crash(_ kind: CrashKind) {
            crashMachine(fileSystem, engine: &engine, kind)
            crashes += 1
        }

        func open() {
            var attempt = 0
            while failure == nil && engine == nil && !refused {
                attempt += 1
                if attempt > Self.recoveryAttemptsMax { fileSystem.setFaultsEnabled(false) }
                if attempt <= Self.recoveryAttemptsMax && random.chance(0.2) {
                    fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...200)))
                }
                let atRestBeforeRecovery = corruptionAtRestCount(fileSystem)
                do {
                    let opened = try Engine(fileSystem: fileSystem, configuration: configuration, clock: clock, executor: executor)
                    fileSystem.scheduleCrash(atOperation: nil)
                    fileSystem.setFaultsEnabled(false)
                    defer { fileSystem.setFaultsEnabled(true) }
                    do {
                        // Blocks at the end of the log may be gone only after corruption at rest
                        // since the last recovery (the documented limit), counted.
                        failure = try Self.check(
                            opened, model: model, durable: acknowledgedDurable, written: written, configuration: configuration,
                            tolerateTailLoss: corruptionAtRestCount(fileSystem) > atRestAtLastRecovery)
                    } catch where refusalAccepted(error) {
                        // A lane's damage found by the full scan: detected, never silent.
                        opened.abandon()
                        refused = true
                        return
                    }
                    for leftover in [RestoreJournal.fileName, "lanes.restore-staging"] where failure == nil {
                        if (try? fileSystem.exists(PathComponents.join(configuration.dataDirectory, leftover))) != false {
                            failure = OracleViolation(.snapshot, expected: "no restore leftovers after recovery", found: "\(leftover) in the data directory")
                        }
                    }
                    if failure == nil { Self.recordLaneFiles(of: opened, in: fileSystem) }
                    // Counted from before this recovery read the log: damage its own writes
                    // take shows only to the next recovery.
                    atRestAtLastRecovery = atRestBeforeRecovery
                    let height = Int(opened.stateRoots().height)
                    model.states.removeLast(model.states.count - 1 - height)
                    written = height
                    acknowledgedDurable = height
                    engine = opened
                } catch where refusalAccepted(error) {
                    refused = true
                } catch where !error.isRefusal && attempt <= Self.recoveryAttemptsMax + 4 {
                    crash(random.chance(0.5) ? .powerLoss : .processCrash)
                } catch where !error.isRefusal {
                    failure = OracleViolation(.recovery, expected: "recovery with faults off succeeds", found: "\(error)")
                } catch {
                    failure = OracleViolation(.neverSilentlyDiverge, expected: "no refusal without corruption at rest", found: "recovery refused: \(error)")
                }
            }
        }

        /// Takes a snapshot (maybe crashing inside it) and checks it against the model.
        func snapshotCreate() {
            // The name advances only once a snapshot completes: a create that crashed is
            // retried under the same name, over its `.partial` leftover.
            let path = "/snapshots/s\(snapshotCounter)"
            if random.chance(0.3) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...400)))
            }
            do {
                let manifest = try SnapshotCreator.createVerifiedAndRecorded(
                    engine: engine!, fileSystem: fileSystem, outputPath: path, nowSeconds: clock.nowNanoseconds() / 1_000_000_000)
                fileSystem.scheduleCrash(atOperation: nil)
                acknowledgedDurable = max(acknowledgedDurable, Int(manifest.height))
                let height = Int(manifest.height)
                let expected = model.metaRoot(at: height, chainID: configuration.chainID, laneCount: configuration.laneCount)
                fileSystem.setFaultsEnabled(false)
                defer { fileSystem.setFaultsEnabled(true) }
                guard height == model.states.count - 1, manifest.metaRoot == expected.hex else {
                    failure = OracleViolation(
                        .snapshot, expected: "height \(model.states.count - 1) MetaRoot \(expected.hex)",
                        found: "snapshot \(path) holds height \(height) MetaRoot \(manifest.metaRoot)")
                    return
                }
                do {
                    _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: path)
                } catch {
                    failure = OracleViolation(.snapshot, expected: "snapshot \(path) verifies right after it was created", found: "\(error)")
                    return
                }
                snapshots.append((path, height))
                snapshotCounter += 1
            } catch {
                crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
                open()
            }
        }

        /// Stops the engine, restores a completed snapshot (maybe crashing inside), and reopens:
        /// WAL replay must bring back the latest durable height.
        func snapshotRestore() {
            let target = snapshots[random.int(in: 0..<snapshots.count)]
            do {
                try engine!.close()
            } catch {
                crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
                open()
                return
            }
            engine = nil
            // A clean close made everything written durable.
            acknowledgedDurable = written
            if random.chance(0.4) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...600)))
            }
            func attempt() throws(SnapshotError) {
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
            do {
                try attempt()
                fileSystem.scheduleCrash(atOperation: nil)
            } catch {
                let refusal = error.kind != .io && error.kind != .locked && error.kind != .engine
                if refusal && !fileSystem.isHalted {
                    // An injected read or write error can look like damage; a refusal that
                    // stands with faults off is a real one.
                    fileSystem.scheduleCrash(atOperation: nil)
                    fileSystem.setFaultsEnabled(false)
                    do {
                        try attempt()
                    } catch where (error.kind == .damaged || error.kind == .walGap) && corruptionAtRestCount(fileSystem) > 0 {
                        // The snapshot or the log it needs was damaged on the media, and the
                        // restore refused, naming it (I4). An operator would take another
                        // snapshot or resync; the seed ends.
                        refused = true
                    } catch {
                        failure = OracleViolation(
                            .snapshot, expected: "snapshot \(target.path) (height \(target.height)) restores", found: "refused: \(error)")
                    }
                    fileSystem.setFaultsEnabled(true)
                } else {
                    crash(fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
                }
            }
            if failure == nil && !refused { open() }
        }

        open()
        for _ in 0..<blocks where failure == nil && !refused {
            if snapshotsOn && random.chance(0.04) { snapshotCreate() }
            if snapshotsOn && !snapshots.isEmpty && failure == nil && !refused && random.chance(0.02) { snapshotRestore() }
            if failure != nil || refused { break }
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
                    failure = OracleViolation(.prefix, expected: "commit at height \(model.states.count - 1)", found: "height \(result.height)")
                    break
                }
                if result.durable { acknowledgedDurable = Int(result.height) }
                acknowledgedDurable = max(acknowledgedDurable, Int(engine!.durableHeight))
                if configuration.wal.fsyncPolicy == .strict && !result.durable {
                    failure = OracleViolation(.durability, expected: "a strict commit returns durable", found: "height \(result.height) returned without durability")
                }
                if random.chance(0.1) {
                    let key = Array("k\(random.int(in: 0..<keySpace))".utf8)
                    let read = try engine!.get(key)
                    if read.value != model.states.last![key] || !read.proof.verify(key: key, value: read.value, root: read.laneRoot) {
                        failure = OracleViolation(
                            .metaRoot, expected: "the model's value of \(String(decoding: key, as: UTF8.self)) with a valid proof",
                            found: "another value or proof")
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
                failure = OracleViolation(.faultFreeOperation, expected: "a clean close with faults off", found: "\(error)")
            }
        }
        engine?.abandon()
        return SeedResult(fileSystem: fileSystem, seed: seed, failure: failure, crashes: crashes, knobs: knobs, endedOnRefusal: refused)
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
        _ engine: Engine, model: Model, durable: Int, written: Int, configuration: EngineConfiguration, tolerateTailLoss: Bool = false
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
        let expected = model.metaRoot(at: height, chainID: configuration.chainID, laneCount: configuration.laneCount)
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
