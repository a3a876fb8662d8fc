import Engine
import FaultFS
import Foundation
@testable import SimRunner
import Testing

/// The repository's `scenarios/` directory, found from this file's path.
let scenariosDirectory: String = {
    var components = PathComponents.split(#filePath)
    components.removeLast(3)  // Tests/SimRunnerTests/ScenarioTests.swift
    return "/" + components.joined(separator: "/") + "/scenarios"
}()

@Suite("Scenario suite")
struct ScenarioTests {
    static let names: [String] = (try? PosixFileSystem().listDirectory(scenariosDirectory).filter { $0.hasSuffix(".toml") }) ?? []

    @Test func theSuiteIsThere() {
        #expect(Self.names.count >= 10, "found \(Self.names) in \(scenariosDirectory)")
    }

    @Test(arguments: names)
    func scenarioEndsAsItSays(name: String) throws {
        let path = scenariosDirectory + "/" + name
        let text = String(decoding: try PosixFileSystem().readFile(path), as: UTF8.self)
        let scenario = try Scenario.load(path: path, text: text)
        let outcome = ScenarioRunner(scenario: scenario).run()
        #expect(outcome.failure == nil, "\(scenario.name): \(outcome.failure ?? "") — \(outcome.summary)")
    }

    /// The suite through the real binary, one scenario after another in its own process: the
    /// probe counters are process-wide, and in-process tests run in parallel, so only here is
    /// every `expect_probes` check exact (a probe another test hit cannot pass for this one).
    @Test func theBinaryRunsTheSuiteWithEveryProbeCheckExact() throws {
        let printed = try SimBinary.finish(try SimBinary.start(["scenarios", scenariosDirectory]), expecting: 0)
        #expect(printed.contains("scenarios: \(Self.names.count) passed, 0 failed"), "\(printed)")
    }

    /// Every capsule kept in `scenarios/regressions/` (a seed that once failed, kept after its
    /// fix) replays through the real binary and passes.
    @Test func theBinaryReplaysEveryRegressionCapsuleAndEachPasses() throws {
        let capsules = try PosixFileSystem().listDirectory(scenariosDirectory + "/regressions").filter { $0.hasSuffix(".json") }
        #expect(capsules.count >= 3, "\(capsules)")
        let printed = try SimBinary.finish(try SimBinary.start(["regressions", scenariosDirectory + "/regressions"]), expecting: 0)
        #expect(printed.contains("regressions: \(capsules.count) passed, 0 failed"), "\(printed)")
    }

    @Test func unknownKeysAndMissingExpectationsAreRejected() {
        let typo = #expect(throws: ScenarioError.self) {
            try Scenario.load(path: "typo.toml", text: "name = \"x\"\ndescription = \"y\"\nfault = \"torn_tail\"\nexpect = \"converges\"\nlanez = 3\n")
        }
        #expect(typo?.description.contains("lanez") == true)
        #expect(throws: ScenarioError.self) {
            try Scenario.load(path: "refuse.toml", text: "name = \"x\"\ndescription = \"y\"\nfault = \"torn_tail\"\nexpect = \"refuses\"\n")
        }
        #expect(throws: ScenarioError.self) {
            try Scenario.load(path: "fault.toml", text: "name = \"x\"\ndescription = \"y\"\nfault = \"no_such_fault\"\nexpect = \"converges\"\n")
        }
    }

    /// Keys that do not apply to the fault, and unknown probe names, are refused by name.
    @Test func syncKeysAreCheckedAgainstTheFault() {
        let head = "name = \"x\"\ndescription = \"y\"\nexpect = \"converges\"\n"
        let refused: [(text: String, naming: String)] = [
            ("fault = \"torn_tail\"\nfollowers = 2\n", "followers"),
            ("fault = \"peer_stalls\"\nfollowers = 4\n", "followers"),
            ("fault = \"peer_stalls\"\nfsync_policy = \"balanced\"\n", "fsync_policy"),
            ("fault = \"peer_stalls\"\nsegment_size_bytes = 4096\n", "segment_size_bytes"),
            ("fault = \"peer_stalls\"\nlanes = 5\n", "lanes"),
            ("fault = \"peer_stalls\"\nexpect_probes = [\"sync.no_such_probe\"]\n", "sync.no_such_probe"),
            ("fault = \"peer_staals\"\n", "peer_stalls"),
        ]
        for (text, naming) in refused {
            let error = #expect(throws: ScenarioError.self, "\(text)") { try Scenario.load(path: "x.toml", text: head + text) }
            #expect(error?.description.contains(naming) == true, "\(error?.description ?? "") should name \(naming)")
        }
        let accepted = try? Scenario.load(
            path: "x.toml", text: head + "fault = \"peer_stalls\"\nfollowers = 3\nlanes = 2\nexpect_probes = [\"sync.peer_backed_off\"]\n")
        #expect(accepted?.fault == .sync(.peerStalls) && accepted?.followers == 3 && accepted?.expectProbes == ["sync.peer_backed_off"])
    }

    /// A probe counts as hit only if its count grew during the run.
    @Test func aProbeThatDidNotGrowIsMissed() {
        let before: [Probe: UInt64] = [.syncPeerFaulty: 3, .syncPeerBackedOff: 1]
        let after: [Probe: UInt64] = [.syncPeerFaulty: 3, .syncPeerBackedOff: 2, .syncRangeRefetched: 1]
        let expected = ["sync.peer_faulty", "sync.peer_backed_off", "sync.range_refetched", "sync.forked_block_refused"]
        #expect(ScenarioRunner.missedProbes(expected, before: before, after: after) == ["sync.peer_faulty", "sync.forked_block_refused"])
    }

    /// A sync scenario whose expectation is wrong fails: a fork expected to converge, a clean
    /// catch-up expected to stop, a stop of another kind than the one named.
    @Test func aWrongSyncExpectationIsReported() throws {
        let head = "name = \"wrong\"\ndescription = \"d\"\nseed = 1\n"
        for text in [
            "fault = \"local_fork\"\nexpect = \"converges\"\n",
            "fault = \"peer_stalls\"\nexpect = \"refuses\"\nexpect_error = \"fork\"\n",
            "fault = \"local_fork\"\nexpect = \"refuses\"\nexpect_error = \"needs_state_sync\"\n",
        ] {
            let scenario = try Scenario.load(path: "wrong.toml", text: head + text)
            #expect(ScenarioRunner(scenario: scenario).run().failure != nil, "\(text)")
        }
    }

    /// A scenario whose expectation is wrong must fail: the runner's checks can fail.
    @Test func aWrongExpectationIsReported() throws {
        var scenario = try Scenario.load(
            path: "wrong.toml",
            text: "name = \"wrong\"\ndescription = \"d\"\nfault = \"bit_rot_mid_log\"\nexpect = \"converges\"\nblocks = 60\n")
        #expect(ScenarioRunner(scenario: scenario).run().failure != nil)
        scenario = try Scenario.load(
            path: "wrong.toml",
            text: "name = \"wrong\"\ndescription = \"d\"\nfault = \"clean_restart\"\nexpect = \"refuses\"\nexpect_error = \"mid_log\"\n")
        #expect(ScenarioRunner(scenario: scenario).run().failure != nil)
    }
}
