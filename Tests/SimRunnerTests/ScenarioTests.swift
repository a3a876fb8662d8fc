import Engine
import FaultFS
import SimRunner
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
