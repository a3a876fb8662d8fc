import Engine
import FaultFS
import PeerSync

/// Runs a sync `Scenario`: one `SyncSwarmWorkload` seed with the setup its fault fixes, checked
/// by the workload's own oracle (I8 after every step, I1 on every recovery, convergence after
/// healing), then against the expectation: `converges` — no node stopped; `refuses` — the
/// catching-up node stopped for the reason `expect_error` names, its chain untouched.
struct SyncScenarioRunner {
    let scenario: Scenario
    let fault: SyncScenarioFault
    let mutations: Set<EngineMutation>

    func run() -> ScenarioOutcome {
        let workload = SyncSwarmWorkload(
            seed: UInt64(scenario.seed ?? 1), length: scenario.blocks ?? WorkloadKind.sync.defaultLength,
            controls: SeedControls(mutations: mutations))
        let followers = scenario.followers
        let lanes = scenario.lanes
        let run = SyncSwarmRun(workload) { setup in
            fault.adjust(&setup, followers: followers)
            if let lanes { setup.laneCount = lanes }
        }
        run.execute()
        let operations = run.result.fileSystemOperations
        let stops = run.nodes.compactMap { node in node.stop.map { (node, "\($0)") } ?? node.planStop.map { (node, "\($0)") } }
        let summary =
            stops.isEmpty
            ? "converged: \(run.nodes.count) nodes at height \(run.model.height), \(run.crashes) crashes"
            : stops.map { "\($0.0.role.rawValue)\($0.0.index) stopped: \($0.1)" }.joined(separator: "; ")
        if let violation = run.failure {
            return ScenarioOutcome(scenario: scenario.name, failure: violation.description, summary: summary, fileSystemOperations: operations)
        }
        return ScenarioOutcome(scenario: scenario.name, failure: judge(stops.map(\.1), catcher: run.nodes.last?.stop), summary: summary, fileSystemOperations: operations)
    }

    /// `converges`: no node stopped. `refuses`: the catching-up node stopped for the reason
    /// `expect_error` names (other nodes' stops were already judged by the workload's oracle).
    private func judge(_ stops: [String], catcher: SyncStop?) -> String? {
        switch scenario.expect {
        case .converges:
            return stops.isEmpty ? nil : "expected every node to converge, but \(stops.joined(separator: ", "))"
        case .refuses:
            guard let stop = catcher else { return "expected the catching-up node to stop (\(scenario.expectError ?? "")), but it converged" }
            return stop.kindName == scenario.expectError ? nil : "stopped with \(stop.kindName), expected \(scenario.expectError ?? "")"
        }
    }
}
