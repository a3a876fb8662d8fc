@_spi(Mutations) import Engine
import FaultFS
import PeerSync

/// One seed of `SyncSwarmWorkload`: the nodes, the network and the model, as named steps
/// (`step`: one tick of simulated time; `recover`, `crash`, `heal`). Every random draw happens
/// in the order the seed fixes, so a seed replays exactly.
final class SyncSwarmRun {
    let workload: SyncSwarmWorkload
    var random: DeterministicRandom
    let clock = ManualClock()
    let network: SimulatedNetwork
    var nodes: [SimulatedNode] = []
    let byzantine: ByzantineMode?
    /// The byzantine node's index as a server (it serves the primary's engine, altered, or
    /// under `ownFork` its own).
    let byzantineIndex: Int
    /// `ownFork`'s file system and engine (no faults): a chain of its own from the same genesis.
    let forkFileSystem: SimulatedFileSystem?
    var forkEngine: Engine?
    let setup: SyncSwarmSetup
    /// A machine's configuration for a node with this many peers, following or not.
    let syncConfiguration: (Int, Bool) -> SyncConfiguration
    let blockGenerator: BlockGenerator
    let crashChance: Double
    let knobs: String

    var model: ChainModel
    /// The model's MetaRoot at every committed height (index = height).
    var roots: [Hash32]
    var crashes = 0
    var failure: OracleViolation?
    var healed = false
    var now: UInt64 = 0
    /// `writerLosesTail`: the primary's last block was lost to rot (once per seed).
    var writerTailLost = false
    /// Shut while the primary, back behind its peers, may not take new blocks.
    var writerGate: WriterGate?
    /// State-sync seeds: snapshots the primary took; the byzantine node's tampered manifests.
    var snapshotsTaken = 0
    /// The liar's newest forged snapshot, and the digest of every one it offered.
    var forgery: SnapshotForgery?
    var forgedDigests: Set<String> = []
    /// Nodes state syncing into a directory that holds no chain, whose install has not begun
    /// (nothing but staging may be written there); those installing; those whose install a
    /// crash interrupted (its roll-forward is probed).
    var emptyUntilInstall: Set<Int> = []
    var installing: Set<Int> = []
    var installInterrupted: Set<Int> = []

    static let stepNanoseconds: UInt64 = 50_000_000
    /// Steps after healing within which every node must have converged (100 simulated seconds).
    static let convergeStepsMax = 2_000

    /// `adjust` changes the drawn setup (a scenario fixes what it names); the rest stays drawn.
    init(_ workload: SyncSwarmWorkload, adjust: (inout SyncSwarmSetup) -> Void = { _ in }) {
        self.workload = workload
        var random = DeterministicRandom(seed: workload.seed ^ 0x5359_4E43)
        var setup = SyncSwarmSetup.drawn(random: &random)
        adjust(&setup)
        self.setup = setup
        byzantine = setup.byzantine
        network = SimulatedNetwork(seed: setup.networkSeed, rates: setup.rates)
        crashChance = setup.crashChance
        let chainID = "sim-sync-\(workload.seed % 5)"
        syncConfiguration = { peerCount, follow in
            var configuration = SyncConfiguration(chainID: chainID, laneCount: setup.laneCount, peerCount: peerCount, follow: follow)
            configuration.blocksPerRequest = setup.blocksPerRequest
            configuration.applyBatchMax = setup.applyBatchMax
            configuration.linksPerRequest = 128
            configuration.backoffInitialNanoseconds = 100_000_000
            configuration.backoffMaxNanoseconds = 2_000_000_000
            configuration.faultyNanoseconds = 5_000_000_000
            configuration.statusRefreshNanoseconds = 300_000_000
            configuration.requestTimeoutNanoseconds = 1_500_000_000
            return configuration
        }
        model = ChainModel(chainID: chainID, laneCount: setup.laneCount)
        roots = [model.metaRoot(at: 0)]
        blockGenerator = BlockGenerator(keySpace: random.int(in: 5...60), operationsPerBlock: 1...6, skewed: true, deleteChance: 0.15, valueBytes: 0...48)
        var plans: [String] = []
        let followers = setup.followers
        for index in 0...(followers + 1) {
            let role: SimulatedNode.Role = index == 0 ? .primary : index <= followers ? .follower : .catcher
            let node = Self.makeNode(index: index, role: role, chainID: chainID, setup: setup, random: &random, controls: workload.controls)
            plans.append("\(role.rawValue)\(index): \(node.plan)")
            nodes.append(node.node)
        }
        byzantineIndex = nodes.count
        forkFileSystem = byzantine == .ownFork ? SimulatedFileSystem(seed: random.next(), plan: .none, traceEventsMax: 0) : nil
        forkFileSystem?.setTraceSink(workload.controls.traceSink)
        forkFileSystem?.setOpaqueLengthPrefixes([nodes[0].configuration.lanesDirectoryPath])
        let honestServers = Array(0...followers)
        for index in 1...followers { nodes[index].peers = [0] }
        for index in 1...(followers + 1) { nodes[index].followsPlan = setup.catcherStart == .stateSync }
        let liar = byzantine == nil && setup.snapshotLie == nil ? [] : [byzantineIndex]
        nodes[followers + 1].peers = setup.byzantineFirst ? liar + honestServers : honestServers + liar
        knobs = "workload=sync blocks=\(workload.blocks) \(setup) plans: \(plans.joined(separator: "; "))"
        self.random = random
    }

    private static func makeNode(
        index: Int, role: SimulatedNode.Role, chainID: String, setup: SyncSwarmSetup, random: inout DeterministicRandom, controls: SeedControls
    ) -> (node: SimulatedNode, plan: FaultPlan) {
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = chainID
        configuration.laneCount = setup.laneCount
        configuration.wal.fsyncPolicy = .strict
        configuration.wal.segmentSizeBytes = UInt64(random.int(in: setup.segmentSizeBytes))
        configuration.flushEveryBlocks = UInt64(random.int(in: setup.flushEveryBlocks))
        configuration.walRetentionHours = 0
        // Every node keeps every block (unless a scenario says otherwise): a height a peer has
        // retired is one it cannot vouch for, and the catcher's quorum (a majority of its peers)
        // must be able to vouch for each.
        configuration.archive = setup.archive
        configuration.wal.mutations = controls.mutations
        let plan =
            role == .primary || !setup.fileSystemFaults
            ? FaultPlan.none
            : swarmPlan(random: &random, families: SyncSwarmWorkload.families, excluding: controls.excludedFamilies, rateMin: 0.001, rateMax: 0.01)
        let fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(controls.traceSink)
        fileSystem.suppress(faults: controls.suppressedFaults, crashPoints: controls.suppressedCrashPoints)
        fileSystem.setOpaqueLengthPrefixes([configuration.lanesDirectoryPath])
        let node = SimulatedNode(index: index, role: role, fileSystem: fileSystem, configuration: configuration, started: role != .catcher)
        return (node, plan)
    }

    var result: SeedResult {
        var result = SeedResult(
            seed: workload.seed, violation: failure, traceHash: 0, fileSystemOperations: 0, crashes: crashes, knobs: knobs)
        for fileSystem in [forkFileSystem].compactMap({ $0 }) {
            result.traceHash = result.traceHash &* 31 &+ fileSystem.traceHash
            result.fileSystemOperations += fileSystem.operationCount
        }
        for node in nodes {
            result.traceHash = result.traceHash &* 31 &+ node.fileSystem.traceHash
            result.fileSystemOperations += node.fileSystem.operationCount
            result.faultsDrawn += node.fileSystem.faultsDrawn
            result.crashPointsArmed += node.fileSystem.crashPointsArmed
            for (family, count) in node.fileSystem.injectedFaultCounts { result.faults[family, default: 0] += count }
        }
        return result
    }

    var syncNodes: [Int] { Array(nodes.indices.dropFirst()) }

    // MARK: The run

    func execute() {
        recover(0)
        if let forkFileSystem {
            do {
                forkEngine = try Engine(fileSystem: forkFileSystem, configuration: nodes[0].configuration, clock: clock, executor: SeededLaneExecutor(seed: random.next()))
            } catch {
                failure = OracleViolation(.faultFreeOperation, expected: "the forked chain's engine (no faults) opens", found: "\(error)")
            }
        }
        // Bounded: the primary commits a block with chance 0.7 per step; 4 steps a block at most.
        var steps = 0
        while failure == nil && model.height < workload.blocks && steps < workload.blocks * 4 {
            step(commitChance: 0.7)
            steps += 1
        }
        guard failure == nil else { return closeAll() }
        heal()
        // Bounded: convergeStepsMax steps.
        for _ in 0..<Self.convergeStepsMax where failure == nil && !converged { step(commitChance: 0) }
        if failure == nil && converged && setup.snapshotEveryBlocks > 0 { offsiteRound() }
        if failure == nil && !converged {
            let heights = syncNodes.map { "\(nodes[$0].role.rawValue)\($0)=\(nodes[$0].engine.map { String($0.stateRoots().height) } ?? "down")" }
            failure = OracleViolation(
                .syncConvergence, expected: "every node at height \(model.height) within \(Self.convergeStepsMax) steps of healing",
                found: heights.joined(separator: " "))
        }
        closeAll()
    }

    /// One step of simulated time: the primary maybe commits, the catcher maybe starts, a crash
    /// is maybe armed, every machine ticks, the network delivers what is due; then I8.
    func step(commitChance: Double) {
        now += Self.stepNanoseconds
        clock.advance(byNanoseconds: Self.stepNanoseconds)
        if isWriterTailDue && followersHoldTheTip { loseWriterTail() }
        if !isWriterTailDue && writerGate == nil && model.height < workload.blocks && random.chance(commitChance) { commitOnPrimary() }
        let catcher = nodes.count - 1
        if !nodes[catcher].started && (catcherMayStartNow() || healed) { startCatcher(catcher) }
        if !healed && crashChance > 0 && random.chance(crashChance) { armCrash() }
        if failure == nil && nodes[0].machine != nil { drive(0, .tick) }
        for node in syncNodes where failure == nil && nodes[node].started && !nodes[node].isStopped {
            if nodes[node].followsPlan {
                if !nodes[node].isUp { startByPlan(node) }
                if nodes[node].stateSync != nil { driveStateSync(node, .tick) }
                if nodes[node].engine != nil && failure == nil { drive(node, .tick) }
                continue
            }
            if nodes[node].engine == nil { recover(node) }
            if nodes[node].engine != nil { drive(node, .tick) }
        }
        deliverDue()
        if failure == nil { checkI8() }
    }

    /// A third of the blocks are in; without an archive, every peer has also retired height 1
    /// (so a resync from genesis has nowhere to go, which is the case being built).
    private func catcherMayStartNow() -> Bool {
        guard model.height * 3 >= workload.blocks else { return false }
        if setup.archive { return true }
        if setup.catcherStart == .stateSync && snapshotsTaken == 0 { return false }
        return nodes.dropLast().allSatisfy { node in
            guard let engine = node.engine, let oldest = try? engine.oldestServableHeight() else { return false }
            return oldest > 1
        }
    }

    private func commitOnPrimary() {
        guard let engine = nodes[0].engine else { return }
        let operations = blockGenerator.block(using: &random)
        if let forkEngine {
            let forked = blockGenerator.block(using: &random) + [BlockOperation(key: Array("fork".utf8), value: Array("\(model.height)".utf8))]
            do {
                _ = try forkEngine.commit(forked)
            } catch {
                failure = OracleViolation(.faultFreeOperation, expected: "the forked chain (no faults) commits", found: "\(error)")
            }
        }
        do {
            let committed = try engine.commit(operations)
            model.apply(operations)
            roots.append(model.metaRoot(at: model.height))
            if committed.metaRoot != roots.last! || Int(committed.height) != model.height {
                failure = OracleViolation(.metaRoot, expected: "the primary's block \(model.height) with the model's MetaRoot", found: "\(committed.metaRoot.hex) at \(committed.height)")
            }
            reportLocalCommit()
            takeSnapshotIfDue()
            takeForgedSnapshotIfDue()
        } catch {
            failure = OracleViolation(.faultFreeOperation, expected: "the primary (no faults) commits", found: "\(error)")
        }
    }

    private func armCrash() {
        let candidates = syncNodes.filter { nodes[$0].started && !nodes[$0].isStopped && nodes[$0].isUp }
        guard !candidates.isEmpty else { return }
        let node = candidates[random.int(in: 0...(candidates.count - 1))]
        let fileSystem = nodes[node].fileSystem
        fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...400)))
    }

    /// Every node that did not stop is at the primary's height and root.
    var converged: Bool {
        nodes.indices.allSatisfy { node in
            if nodes[node].isStopped { return true }
            guard let engine = nodes[node].engine else { return false }
            let roots = engine.stateRoots()
            return Int(roots.height) == model.height && roots.metaRoot == self.roots[model.height]
        }
    }

    /// The network heals, every fault stops, no crash is armed: only the byzantine node still lies.
    func heal() {
        healed = true
        network.heal()
        for node in nodes {
            node.fileSystem.setFaultsEnabled(false)
            node.fileSystem.scheduleCrash(atOperation: nil)
        }
        record(0, "sim.heal", "at primary height \(model.height)")
    }

    private func closeAll() {
        try? forkEngine?.close()
        forkEngine = nil
        for index in nodes.indices { closeEngine(index) }
    }

    /// Closes the node's engine (abandoning it if the close fails); its machine goes with it.
    func closeEngine(_ node: Int) {
        if let engine = nodes[node].engine {
            do {
                try engine.close()
            } catch {
                engine.abandon()
            }
        }
        nodes[node].engine = nil
        nodes[node].machine = nil
    }

    /// Sends a request of the node's to the server in its peer slot, recorded in the trace.
    func send(_ node: Int, slot: Int, _ request: SimulatedRequest) {
        let server = nodes[node].peers[slot]
        let note = network.send(client: node, incarnation: nodes[node].incarnation, slot: slot, server: server, request: request, now: now)
        record(node, "net.send", "\(slot)->\(server) \(request) \(note)")
    }

    func record(_ node: Int, _ name: String, _ detail: String) {
        nodes[node].fileSystem.recordEvent(name, detail: "\(nodes[node].role.rawValue)\(node): \(detail)")
    }
}
