import Engine
import FaultFS
import SimRunner
import Testing

/// The simulator proves it catches bugs: each deliberate bug (EngineMutation, compiled only into
/// debug builds) is found within a stated budget of seeds, while the same seeds pass without it
/// (the sweeps in CI).
@Suite("Mutations are caught")
struct MutationTests {
    /// The first seed in 1...budget whose run fails with `mutation` switched on.
    static func firstFailingSeed(budget: UInt64, _ run: (UInt64) -> SeedResult) -> UInt64? {
        for seed in 1...budget where run(seed).failure != nil { return seed }
        return nil
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var mutation: EngineMutation
        var workload: WorkloadKind
        var budget: UInt64
        var testDescription: String { "\(mutation.rawValue) within \(budget) \(workload) seeds" }
    }

    static let swarmCases: [Case] = [
        Case(mutation: .skipSegmentRollDirectorySync, workload: .wal, budget: 30),
        Case(mutation: .acknowledgeBeforeSync, workload: .wal, budget: 60),
        Case(mutation: .skipRecoverySync, workload: .wal, budget: 60),
        Case(mutation: .flushLanesBeforeLogSync, workload: .engine, budget: 40),
        // A peer's altered block taken on its word: the sync workload's I8 (first caught at seed 13).
        Case(mutation: .skipPeerBlockRootCheck, workload: .sync, budget: 40),
    ]

    @Test(arguments: swarmCases)
    func swarmWorkloadCatchesTheMutation(_ testCase: Case) {
        let found = Self.firstFailingSeed(budget: testCase.budget) { seed in
            testCase.workload.run(seed: seed, controls: SeedControls(mutations: [testCase.mutation]))
        }
        #expect(found != nil, "\(testCase.mutation.rawValue) survived \(testCase.budget) seeds")
    }

    static func scenario(_ name: String) throws -> Scenario {
        let path = scenariosDirectory + "/" + name + ".toml"
        return try Scenario.load(path: path, text: String(decoding: try PosixFileSystem().readFile(path), as: UTF8.self))
    }

    /// Gap 3 of the simulator's blind spots: a snapshot that vanishes after create reported it
    /// made (its rename never made durable) used to pass as an I/O error at restore. The check
    /// of every catalogued snapshot after recovery (I6) catches it; without the check the same
    /// run converges.
    @Test func aSnapshotThatVanishesAfterCreateIsCaughtByTheCataloguedSnapshotCheck() throws {
        let scenario = try Self.scenario("power-loss-after-snapshot")
        let mutation = EngineMutation.skipSnapshotRenameDirectorySync
        let asWritten = ScenarioRunner(scenario: scenario).run()
        #expect(asWritten.failure == nil, "passes as written: \(asWritten.failure ?? "")")
        let caught = ScenarioRunner(scenario: scenario, mutations: [mutation]).run()
        #expect(caught.failure?.contains("reported made") == true, "\(caught.failure ?? "not caught") — \(caught.summary)")
        let unchecked = ScenarioRunner(scenario: scenario, mutations: [mutation], checksOff: [.cataloguedSnapshots]).run()
        #expect(unchecked.failure == nil, "without the check the vanished snapshot goes unseen: \(unchecked.failure ?? "")")
    }

    /// Gap 5: a lane directory put back on its own from another chain's snapshot. Start must
    /// refuse it naming the lane (the lane's applied root against the commit record at its
    /// height); trusting lane directories, as start did before, refuses only on the MetaRoot and
    /// names no lane — the scenario catches that. A lane from an older snapshot of this chain
    /// converges either way (the log brings it forward).
    @Test func aLaneOfAnotherChainIsRefusedNamingTheLane() throws {
        let foreign = try Self.scenario("lane-from-other-chain")
        let older = try Self.scenario("lane-from-older-snapshot")
        for scenario in [foreign, older] {
            let asWritten = ScenarioRunner(scenario: scenario).run()
            #expect(asWritten.failure == nil, "\(scenario.name) passes as written: \(asWritten.failure ?? "")")
        }
        let trusting = ScenarioRunner(scenario: foreign, mutations: [.trustLaneDirectories]).run()
        #expect(trusting.failure != nil, "trusting lane directories was not caught: \(trusting.summary)")
        let olderTrusting = ScenarioRunner(scenario: older, mutations: [.trustLaneDirectories]).run()
        #expect(olderTrusting.failure == nil, "\(olderTrusting.failure ?? "")")
    }

    @Test func midLogDamageTreatedAsTornTailFailsTheBitRotScenario() throws {
        let scenario = try Self.scenario("bit-rot-mid-log")
        #expect(ScenarioRunner(scenario: scenario).run().failure == nil, "passes as written")
        let mutated = ScenarioRunner(scenario: scenario, mutations: [.midLogDamageAsTornTail]).run()
        #expect(mutated.failure != nil, "the mutation was not caught: \(mutated.summary)")
    }
}

@Suite("Shrinking")
struct ShrinkTests {
    /// Injected faults of a run (crash points not counted).
    static func faultsApplied(_ result: SeedResult) -> UInt64 {
        result.faults.filter { $0.key != "crash_point" }.values.reduce(0, +)
    }

    @Test func aFailingSeedShrinksToAShorterCapsuleWithFewerFaultsThatStillFails() throws {
        let start = Capsule(workload: .wal, seed: 16, length: 300, mutations: [EngineMutation.acknowledgeBeforeSync.rawValue])
        let original = start.run()
        let shrunk = try #require(Shrinker.shrink(start))
        #expect(shrunk.length < start.length)
        #expect(!shrunk.suppressedFaults.isEmpty, "single faults were left out")
        #expect(shrunk.faultsKept < Self.faultsApplied(original))
        let replayed = shrunk.run()
        #expect(replayed.failure != nil, "the capsule reproduces the failure")
        #expect(shrunk.failure == replayed.failure, "the capsule records the failure it reproduces")
        #expect(Self.faultsApplied(replayed) == shrunk.faultsKept)
        let decoded = try Capsule.decode(try shrunk.encoded())
        #expect(decoded == shrunk)
        #expect(decoded.run().traceHash == replayed.traceHash, "replaying a capsule is deterministic")
    }

    /// An engine failure shrinks too, crash points included: the capsule reaches no more crash
    /// points than the original run, and still fails.
    @Test func anEngineFailureShrinksItsCrashPoints() throws {
        let mutation = EngineMutation.flushLanesBeforeLogSync.rawValue
        let seed = try #require(MutationTests.firstFailingSeed(budget: 40) { Capsule(workload: .engine, seed: $0, length: 120, mutations: [mutation]).run() })
        let start = Capsule(workload: .engine, seed: seed, length: 120, mutations: [mutation])
        let original = start.run()
        // Engine runs take about a second in a debug build: a smaller budget than the CLI's.
        let shrunk = try #require(Shrinker.shrink(start, runsMax: 40))
        #expect(shrunk.run().failure != nil)
        #expect(shrunk.crashPointsKept <= original.faults["crash_point"] ?? 0)
        #expect(shrunk.faultsKept < Self.faultsApplied(original))
        #expect(shrunk.length < start.length)
    }

    /// Capsules written before single faults could be left out still decode and replay.
    @Test func anOlderCapsuleWithoutSuppressionsDecodes() throws {
        let text = #"{"workload":"wal","seed":16,"length":40,"excluded_families":[],"mutations":[],"failure":"x"}"#
        let capsule = try Capsule.decode(text)
        #expect(capsule.suppressedFaults.isEmpty && capsule.suppressedCrashPoints.isEmpty)
        #expect(capsule.run().traceHash == Capsule(workload: .wal, seed: 16, length: 40).run().traceHash)
    }

    @Test func aPassingSeedDoesNotShrink() {
        let start = Capsule(workload: .wal, seed: 22, length: 50)
        #expect(Shrinker.shrink(start) == nil)
    }
}

@Suite("Exhaustive crash mode")
struct ExhaustiveTests {
    /// A 200-record workload crashed at every operation, under five persisted-subset variants,
    /// with a crash inside recovery after each: a prefix holding every acknowledged record.
    @Test(arguments: FsyncPolicy.allCases)
    func everyCrashPointAndPersistenceVariantRecovers(policy: FsyncPolicy) {
        let report = ExhaustiveCrashRunner(records: 200, policy: policy).run()
        #expect(report.operations > 200)
        #expect(report.failures.isEmpty, "\(report.failures.prefix(3))")
    }

    @Test func itCatchesAcknowledgingBeforeTheSync() {
        var runner = ExhaustiveCrashRunner(records: 30, policy: .strict)
        runner.mutations = [.acknowledgeBeforeSync]
        #expect(!runner.run().failures.isEmpty)
        runner = ExhaustiveCrashRunner(records: 30, policy: .strict)
        runner.mutations = [.skipSegmentRollDirectorySync]
        #expect(!runner.run().failures.isEmpty)
    }
}

/// I7: a seed fully determines a run — RocksDB inside the engine included.
@Suite("Determinism")
struct DeterminismTests {
    @Test(arguments: [UInt64(3), 98, 112])
    func sameSeedSameTraceHash(seed: UInt64) {
        #expect(WALSwarmWorkload(seed: seed).run().traceHash == WALSwarmWorkload(seed: seed).run().traceHash)
        let first = EngineSwarmWorkload(seed: seed, length: 60).run()
        let second = EngineSwarmWorkload(seed: seed, length: 60).run()
        #expect(first.failure == nil)
        #expect(first.traceHash == second.traceHash, "engine seed \(seed)")
        #expect(first.fileSystemOperations == second.fileSystemOperations)
        #expect(EngineSwarmWorkload(seed: seed + 1, length: 60).run().traceHash != first.traceHash)
    }
}
