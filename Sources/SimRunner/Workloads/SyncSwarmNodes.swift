import Engine
import FaultFS
import PeerSync

/// What the nodes of a `SyncSwarmRun` do: their machines take inputs and their outputs are
/// carried out (requests onto the network, blocks into the engine), servers answer, nodes crash
/// and recover, and I8 is checked.
extension SyncSwarmRun {
    /// Feeds `input` to the node's machine and carries out everything that follows from it (an
    /// apply's result is fed back in turn). Bounded: the machine bounds what it hands over.
    func drive(_ node: Int, _ input: SyncInput) {
        var queue = [input]
        var steps = 0
        while !queue.isEmpty, failure == nil, nodes[node].engine != nil, var machine = nodes[node].machine {
            steps += 1
            precondition(steps <= 10_000, "a machine's outputs run out")
            let input = queue.removeFirst()
            let outputs = machine.handle(input, now: now)
            nodes[node].machine = machine
            if node == 0 { checkWriterGate(input, outputs, localHeight: machine.localHeight) }
            for output in outputs where failure == nil && nodes[node].engine != nil { queue += perform(node, output) }
        }
    }

    /// Carries out one output; returns what the machine must be told next.
    private func perform(_ node: Int, _ output: SyncOutput) -> [SyncInput] {
        switch output {
        case .request(let slot, let request):
            send(node, slot: slot, .blocks(request))
            return []
        case .apply(let blocks, let attested):
            return apply(node, blocks, attested: attested)
        case .peerFaulty(let slot, let why):
            record(node, "sync.peer_faulty", "\(nodes[node].peers[slot]): \(why)")
            return []
        case .caughtUp(let height):
            record(node, "sync.caught_up", "\(height)")
            return []
        case .stop(let stop):
            if blockSyncStopped(node, stop) { return [] }
            guard setup.mayStop(nodes[node].role, stop) else {
                failure = OracleViolation(
                    .syncConvergence, expected: "an honest node never stops syncing", found: "\(nodes[node].role.rawValue)\(node) stopped: \(stop)")
                return []
            }
            stopNode(node, stop)
            return []
        }
    }

    private func apply(_ node: Int, _ blocks: [SyncBlock], attested: [UInt64: Hash32]) -> [SyncInput] {
        guard let engine = nodes[node].engine else { return [] }
        record(node, "sync.apply", "\(blocks.first!.height)...\(blocks.last!.height)")
        do {
            let committed = try engine.commit(blocks, attested: attested)
            let after = engine.stateRoots()
            if committed?.durable == false {
                failure = OracleViolation(.durability, expected: "a strict commit of peer blocks returns durable", found: "not durable at \(after.height)")
            }
            nodes[node].durableHeight = after.height
            checkApplied(node, blocks, through: after.height)
            return [.applied(height: after.height, metaRoot: after.metaRoot)]
        } catch where error.kind == .peerBlockMismatch && !nodes[node].fileSystem.isHalted {
            let after = engine.stateRoots()
            nodes[node].durableHeight = after.height
            checkApplied(node, blocks, through: after.height)
            record(node, "sync.apply_refused", "\(error.message)")
            return [.applied(height: after.height, metaRoot: after.metaRoot), .applyRefused(height: error.height ?? after.height + 1, reason: error.message)]
        } catch {
            // The blocks before the failing one may have been made durable: they must survive.
            nodes[node].durableHeight = max(nodes[node].durableHeight, engine.durableHeight)
            record(node, "sim.engine_failed", "\(error)")
            crash(node)
            return []
        }
    }

    /// I8 for every block an apply took (not only the tip: a wrong block a later one overwrites
    /// leaves the tip right): each applied height's block is the primary's.
    private func checkApplied(_ node: Int, _ blocks: [SyncBlock], through height: UInt64) {
        for block in blocks where block.height <= height && failure == nil {
            guard Int(block.height) <= model.height, block.metaRoot == roots[Int(block.height)] else {
                failure = OracleViolation(
                    .syncConvergence, expected: "\(nodes[node].role.rawValue)\(node) applies only the primary's block \(block.height)",
                    found: "a block with MetaRoot \(block.metaRoot.hex)")
                return
            }
        }
    }

    /// Delivers what the network has due: requests reach their servers (who answer), answers
    /// reach their clients (unless the client crashed since it asked).
    func deliverDue() {
        for message in network.due(now: now) where failure == nil {
            switch message.payload {
            case .request:
                guard let outcome = serve(message) else {
                    record(message.client, "net.unanswered", "\(message.server) \(message.request)")
                    continue
                }
                let note = network.answer(message, with: outcome, now: now)
                record(message.client, "net.serve", "\(message.server) \(message.request) \(Self.describe(outcome, of: message.request)) \(note)")
            case .answer(let outcome):
                guard nodes[message.client].isUp, nodes[message.client].incarnation == message.incarnation else {
                    record(message.client, "net.stale_answer", "\(message.server) \(message.request)")
                    continue
                }
                record(message.client, "net.deliver", "\(message.server) \(message.request) \(Self.describe(outcome, of: message.request))")
                switch message.request {
                case .blocks(let request): drive(message.client, SyncExchange.input(peer: message.slot, request: request, outcome: outcome))
                case .state(let request): driveStateSync(message.client, StateSyncExchange.input(peer: message.slot, request: request, outcome: outcome))
                }
            }
        }
    }

    /// The server's answer: the byzantine node alters the primary's; a crashed node cannot be
    /// reached; a crash point hit while serving crashes the server; an answer larger than the
    /// request allows is refused as the HTTP transport refuses it. nil: never answered.
    private func serve(_ message: SimulatedNetwork.Message) -> Result<PeerResponse, PeerTransportError>? {
        let wire = message.request.wire(server: message.server)
        if message.server == byzantineIndex { return byzantineAnswer(message.request).map { bounded($0, wire) } }
        guard let engine = nodes[message.server].engine else { return .failure(PeerTransportError(.unreachable, request: wire, "down")) }
        let response: PeerResponse
        switch message.request {
        case .blocks(let request): response = SyncServing.respond(to: request, from: engine)
        case .state(let request): response = SnapshotServing.respond(to: request, engine: engine, fileSystem: nodes[message.server].fileSystem)
        }
        if nodes[message.server].fileSystem.isHalted {
            crash(message.server)
            return .failure(PeerTransportError(.unreachable, request: wire, "crashed while answering"))
        }
        return bounded(.success(response), wire)
    }

    /// The byzantine node serves the primary's answers (its own under `ownFork`), lying about
    /// blocks as `byzantine` says and about snapshots as `snapshotLie` says.
    private func byzantineAnswer(_ request: SimulatedRequest) -> Result<PeerResponse, PeerTransportError>? {
        let sourceIsFork = byzantine == .ownFork
        guard let engine = sourceIsFork ? forkEngine : nodes[0].engine else {
            return .failure(PeerTransportError(.unreachable, request: request.wire(server: byzantineIndex), "down"))
        }
        switch request {
        case .blocks(let request):
            let honest = SyncServing.respond(to: request, from: engine)
            guard let mode = byzantine else { return .success(honest) }
            return mode.alter(request, honest, random: &random)
        case .state(let request):
            let fileSystem = sourceIsFork ? forkFileSystem! : nodes[0].fileSystem
            let honest = SnapshotServing.respond(to: request, engine: engine, fileSystem: fileSystem)
            guard let lie = setup.snapshotLie else { return .success(honest) }
            return lyingAnswer(request, lie: lie, honest: honest)
        }
    }

    /// What the HTTP transport does with an answer past the request's `responseBytesMax`.
    private func bounded(_ outcome: Result<PeerResponse, PeerTransportError>, _ wire: PeerRequest) -> Result<PeerResponse, PeerTransportError> {
        guard case .success(let response) = outcome, response.body.count > wire.responseBytesMax else { return outcome }
        return .failure(PeerTransportError(.responseTooLarge, request: wire, "\(response.body.count) bytes, more than \(wire.responseBytesMax)"))
    }

    /// An answer as the trace records it. A block answer names its bytes' hash; a state-sync
    /// answer only its size: snapshot files hold RocksDB's session ids, which RocksDB draws at
    /// random whatever the seed (same length, other bytes), so their hashes would differ from
    /// run to run while nothing the run does depends on them.
    static func describe(_ outcome: Result<PeerResponse, PeerTransportError>, of request: SimulatedRequest) -> String {
        switch (outcome, request) {
        case (.success(let response), .blocks): "\(response.status) \(response.body.count)B \(StateHashing.sha256(response.body).hex.prefix(12))"
        case (.success(let response), .state): "\(response.status) \(response.body.count)B"
        case (.failure(let error), _): error.kind.rawValue
        }
    }

    // MARK: Crashes and recovery

    func crash(_ node: Int) {
        precondition(nodes[node].role != .primary, "the primary has no faults")
        let fileSystem = nodes[node].fileSystem
        let kind: CrashKind = fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash
        crashMachine(fileSystem, engine: &nodes[node].engine, kind)
        nodes[node].machine = nil
        forgetStateSync(node)
        crashes += 1
        if let engineHeight = Optional(nodes[node].durableHeight), Int(engineHeight) < model.height { nodes[node].resumingAfterCrash = true }
        record(node, "sim.crash", "\(kind)")
    }

    /// Opens the node's engine (maybe crashing inside recovery), checks it (I1, I8), and starts
    /// a new machine at its height. Bounded: 8 attempts with faults, 4 more with faults off.
    func recover(_ node: Int) {
        let fileSystem = nodes[node].fileSystem
        for attempt in 1...12 where failure == nil {
            if attempt > 8 { fileSystem.setFaultsEnabled(false) }
            if attempt <= 8 && !healed && crashChance > 0 && nodes[node].role != .primary && random.chance(0.2) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...200)))
            }
            do {
                let engine = try Engine(fileSystem: fileSystem, configuration: nodes[node].configuration, clock: clock, executor: SeededLaneExecutor(seed: random.next()))
                fileSystem.scheduleCrash(atOperation: nil)
                fileSystem.setFaultsEnabled(!healed && nodes[node].role != .primary)
                adopt(node, engine)
                return
            } catch where !error.isRefusal && nodes[node].role != .primary {
                crashMachine(fileSystem, engine: &nodes[node].engine, random.chance(0.5) ? .powerLoss : .processCrash)
                crashes += 1
            } catch {
                failure = OracleViolation(.recovery, expected: "\(nodes[node].role.rawValue)\(node) recovers (no corruption at rest here)", found: "\(error)")
            }
        }
        if failure == nil {
            failure = OracleViolation(.recovery, expected: "recovery with faults off succeeds", found: "\(nodes[node].role.rawValue)\(node) still fails")
        }
    }

    private func adopt(_ node: Int, _ engine: Engine) {
        let recovered = engine.stateRoots()
        nodes[node].engine = engine
        nodes[node].incarnation += 1
        record(node, "sim.recovered", "height \(recovered.height)")
        if recovered.height < nodes[node].durableHeight {
            failure = OracleViolation(
                .durability, expected: "\(nodes[node].role.rawValue)\(node) at height \(nodes[node].durableHeight) or above (applied durably)",
                found: "recovered height \(recovered.height)")
            return
        }
        nodes[node].durableHeight = recovered.height
        if !nodes[node].peers.isEmpty {
            nodes[node].machine = SyncMachine(
                configuration: syncConfiguration(nodes[node].peers.count, nodes[node].role != .primary), localHeight: recovered.height,
                localMetaRoot: recovered.metaRoot)
        }
    }

    /// I8 after a step: every live node's height is one the primary committed, with its MetaRoot.
    func checkI8() {
        for node in syncNodes {
            guard let engine = nodes[node].engine else { continue }
            let current = engine.stateRoots()
            if let tip = nodes[node].ownTip {
                guard current.height == tip.height && current.metaRoot == tip.metaRoot else {
                    failure = OracleViolation(
                        .syncConvergence, expected: "\(nodes[node].role.rawValue)\(node)'s own chain (a fork) is never overwritten: \(tip.metaRoot.hex) at \(tip.height)",
                        found: "\(current.metaRoot.hex) at \(current.height)")
                    return
                }
                continue
            }
            guard Int(current.height) <= model.height, current.metaRoot == roots[Int(current.height)] else {
                failure = OracleViolation(
                    .syncConvergence, expected: "\(nodes[node].role.rawValue)\(node)'s MetaRoot at \(current.height) is the primary's",
                    found: Int(current.height) <= model.height ? current.metaRoot.hex : "a height the primary never committed")
                return
            }
            if nodes[node].resumingAfterCrash && Int(current.height) == model.height {
                nodes[node].resumingAfterCrash = false
                Probe.syncResumedAfterCrash.hit()
            }
        }
    }
}
