import Engine
import FaultFS
import PeerSync

/// State sync in a `SyncSwarmRun` (state-sync seeds): the primary takes snapshots that every
/// follower up gets a copy of, and a node runs what its `SyncModePlan` says — the same
/// `StateSyncMachine`, `StateSyncExchange`, `SnapshotServing` and `StateSyncStaging` the node
/// runs, one output at a time, with crashes and power losses at any file-system operation of the
/// download, the checks and the install. Oracles: only a forged snapshot's install is refused
/// (an honest one always installs); before the install nothing is written outside
/// staging; the snapshot installed is one the primary took, at its height and MetaRoot; after
/// any crash the node resumes and converges (I8), and what it made durable stays (I1).
extension SyncSwarmRun {
    // MARK: Snapshots on the peers

    /// After the primary's commit: every `snapshotEveryBlocks` blocks it takes a verified,
    /// catalogued snapshot, and each follower gets a copy in its own catalog (as an operator's
    /// snapshot shipping would, whether the node is up or not), so that several peers offer the
    /// same manifest.
    func takeSnapshotIfDue() {
        let every = setup.snapshotEveryBlocks
        guard every > 0, model.height % every == 0, let engine = nodes[0].engine else { return }
        let path = PathComponents.join(DataDirectoryLayout(dataDirectory: nodes[0].configuration.dataDirectory).defaultSnapshots, "s\(model.height)")
        let manifest: SnapshotManifest
        do {
            manifest = try SnapshotCreator.createVerifiedAndRecorded(engine: engine, fileSystem: nodes[0].fileSystem, outputPath: path, nowSeconds: now / 1_000_000_000)
        } catch {
            failure = OracleViolation(.snapshot, expected: "the primary (no faults) takes snapshot \(path)", found: "\(error)")
            return
        }
        snapshotsTaken += 1
        record(0, "sim.snapshot", "\(path) at \(manifest.height)")
        do {
            try pruneSnapshots(on: 0)
        } catch {
            failure = OracleViolation(.snapshot, expected: "the primary (no faults) prunes its snapshots", found: "\(error)")
            return
        }
        for follower in 1...setup.followers where failure == nil {
            copySnapshot(path, manifest: manifest, to: follower)
        }
    }

    /// Copies the snapshot to a follower with its faults off; a crash point reached meanwhile
    /// crashes it (the copy is then not catalogued, and never offered).
    private func copySnapshot(_ path: String, manifest: SnapshotManifest, to follower: Int) {
        let fileSystem = nodes[follower].fileSystem
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(!healed) }
        do {
            try copyTree(path, from: nodes[0].fileSystem, to: fileSystem)
            try SnapshotCatalog.record(
                fileSystem: fileSystem, dataDirectory: nodes[follower].configuration.dataDirectory, path: path, manifest: manifest,
                verifiedAt: now / 1_000_000_000)
            try pruneSnapshots(on: follower)
        } catch where fileSystem.isHalted {
            crash(follower)
        } catch {
            failure = OracleViolation(.snapshot, expected: "snapshot \(path) copies to follower\(follower) (faults off)", found: "\(error)")
        }
    }

    /// Keeps the newest `snapshotsKept` snapshots, as an operator's `snapshot prune --keep`
    /// does: the log before the oldest kept one may then be retired, so peers' logs are pruned
    /// and a node far enough behind needs state sync.
    private func pruneSnapshots(on node: Int) throws(SnapshotError) {
        let fileSystem = nodes[node].fileSystem, dataDirectory = nodes[node].configuration.dataDirectory
        let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        let decision = SnapshotPruner.decide(catalog: catalog, keep: Self.snapshotsKept, olderThanSeconds: nil, nowSeconds: now / 1_000_000_000, force: false)
        try SnapshotPruner.apply(decision, fileSystem: fileSystem, dataDirectory: dataDirectory)
    }

    static let snapshotsKept = 3

    // MARK: Starting as the plan says

    /// Starts (or, after a crash, restarts) a node the way `rivellum-node sync` does: a fresh
    /// plan from whether its data directory holds a chain; state sync or an engine as it says.
    func startByPlan(_ node: Int) {
        let empty = !holdsChain(node)
        var plan = SyncModePlan(mode: .auto, dataDirectoryEmpty: empty)
        let step = plan.first()
        nodes[node].plan = plan
        record(node, "sim.plan", "\(step) (empty \(empty))")
        follow(node, step)
    }

    /// A state sync in a directory that holds no chain is watched until its install begins.
    private func markEmptyUntilInstall(_ node: Int) {
        if holdsChain(node) { emptyUntilInstall.remove(node) } else { emptyUntilInstall.insert(node) }
    }

    private func holdsChain(_ node: Int) -> Bool {
        let genesis = DataDirectoryLayout(dataDirectory: nodes[node].configuration.dataDirectory).genesis
        return (try? nodes[node].fileSystem.exists(genesis)) ?? false
    }

    /// Carries out the plan's next step.
    func follow(_ node: Int, _ step: SyncModePlan.Step) {
        switch step {
        case .stateSync:
            nodes[node].syncingState = true
            markEmptyUntilInstall(node)
            beginStateSync(node)
        case .blockSync:
            nodes[node].syncingState = false
            recover(node)
            guard failure == nil, let engine = nodes[node].engine else { return }
            if engine.stateRoots().height > 0 { probeRollForward(node) }
            if let offer = try? StateSyncStaging.discardIfInstalled(
                fileSystem: nodes[node].fileSystem, dataDirectory: nodes[node].configuration.dataDirectory, localHeight: engine.stateRoots().height)
            {
                record(node, "sim.staging_removed", "of the installed snapshot at \(offer.height)")
            }
        case .stop(let reason):
            nodes[node].syncingState = false
            nodes[node].planStop = reason
            record(node, "sync.stopped", "\(reason)")
            if !mayStop(node, reason) {
                failure = OracleViolation(.syncConvergence, expected: "an honest node never stops syncing", found: "\(nodes[node].role.rawValue)\(node) stopped: \(reason)")
            }
        }
    }

    /// A follower whose plan ran out of state syncs still behind every peer's retention stops
    /// as documented (exit 79); no other plan stops in a state-sync seed, where the peers keep
    /// snapshots a quorum vouches for.
    private func mayStop(_ node: Int, _ reason: SyncModePlan.StopReason) -> Bool {
        guard nodes[node].role == .follower, case .needsStateSync = reason else { return setup.catcherMayStop && nodes[node].role == .catcher }
        return true
    }

    /// A block sync stopped: the plan says whether state sync runs next (the engine is closed first).
    func blockSyncStopped(_ node: Int, _ stop: SyncStop) -> Bool {
        guard var plan = nodes[node].plan, case .needsStateSync = stop, nodes[node].engine != nil else { return false }
        let step = plan.blockSyncEnded(.needsStateSync)
        nodes[node].plan = plan
        closeEngine(node)
        record(node, "sync.needs_state_sync", "\(stop) -> \(step)")
        follow(node, step)
        return true
    }

    /// Locks the data directory, finishes an interrupted restore, and resumes what staging holds
    /// (`StateSyncStaging.resume`) in a new machine. A crash point reached here crashes the node.
    private func beginStateSync(_ node: Int) {
        let fileSystem = nodes[node].fileSystem, dataDirectory = nodes[node].configuration.dataDirectory
        do {
            let floor = try heightFloor(node)
            let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: dataDirectory)
            nodes[node].stateSyncLock = lock
            let resumption = try StateSyncStaging.resume(fileSystem: fileSystem, dataDirectory: dataDirectory, walDirectory: nil, heightFloor: floor, clock: clock)
            var configuration = StateSyncConfiguration(sync: syncConfiguration(nodes[node].peers.count, true))
            configuration.chunkBytes = setup.stateSyncChunkBytes
            configuration.heightFloor = floor
            configuration.chunkGraceNanoseconds = 1_000_000_000
            configuration.chunksPerPeerMax = 4
            var staged: StateSyncStaged?
            switch resumption {
            case .installed(let download):
                record(node, "sim.state_sync", "floor \(floor), the interrupted install of \(download.offer.name) finished")
                markEmptyUntilInstall(node)
                stateSynced(node, height: download.offer.height, metaRoot: download.offer.metaRoot)
                return
            case .nothingStaged(let heightFloor):
                configuration.heightFloor = heightFloor
            case .staged(let staging, let download):
                nodes[node].staging = staging
                staged = StateSyncStaged(download, chunkBytes: configuration.chunkBytes)
            }
            // Finishing an interrupted restore is the install's own work, not a write before it.
            markEmptyUntilInstall(node)
            nodes[node].stateSync = StateSyncMachine(configuration: configuration, staged: staged)
            nodes[node].incarnation += 1
            record(node, "sim.state_sync", "floor \(floor), staged \(staged.map { "\($0.offer.name): \($0.verifiedFiles.count) verified" } ?? "nothing")")
        } catch {
            localStepFailed(node, "starting state sync", error)
        }
    }

    private func heightFloor(_ node: Int) throws -> UInt64 {
        try StateSyncStaging.localHeight(fileSystem: nodes[node].fileSystem, dataDirectory: nodes[node].configuration.dataDirectory, walDirectory: nil)
    }

    /// A local step failed: an injected fault or a crash point crashes the node (it restarts by
    /// its plan); anything else is a violation.
    private func localStepFailed(_ node: Int, _ doing: String, _ error: any Error) {
        let injected = nodes[node].fileSystem.isHalted || (error as? SnapshotError)?.kind == .io || (error as? EngineError)?.kind == .storage
        guard injected else {
            failure = OracleViolation(.syncConvergence, expected: "\(doing) fails only by I/O", found: "\(nodes[node].role.rawValue)\(node): \(error)")
            return
        }
        record(node, "sim.engine_failed", "\(doing): \(error)")
        crash(node)
    }

    // MARK: Driving the machine

    /// Feeds `input` to the node's state-sync machine and carries out what follows, as
    /// `StateSyncService` does. Bounded: the machine bounds what it hands over.
    func driveStateSync(_ node: Int, _ input: StateSyncInput) {
        var queue = [input]
        var steps = 0
        while !queue.isEmpty, failure == nil, var machine = nodes[node].stateSync {
            steps += 1
            precondition(steps <= 10_000, "a state-sync machine's outputs run out")
            let outputs = machine.handle(queue.removeFirst(), now: now)
            nodes[node].stateSync = machine
            for output in outputs where failure == nil && nodes[node].stateSync != nil { queue += performStateSync(node, output) }
        }
    }

    private func performStateSync(_ node: Int, _ output: StateSyncOutput) -> [StateSyncInput] {
        switch output {
        case .request(let slot, let request):
            send(node, slot: slot, .state(request))
        case .peerFaulty(let slot, let why):
            record(node, "sync.peer_faulty", "\(nodes[node].peers[slot]): \(why)")
        case .stateSynced(let height, let metaRoot):
            stateSynced(node, height: height, metaRoot: metaRoot)
        case .stop(let stop):
            record(node, "state_sync.stopped", "\(stop)")
            endStateSync(node)
            guard var plan = nodes[node].plan else { return [] }
            let step = plan.stateSyncStopped(stop)
            nodes[node].plan = plan
            follow(node, step)
        default:
            return localWork(node, output)
        }
        return []
    }

    /// Staging writes, checks and the install, on the node's file system.
    private func localWork(_ node: Int, _ output: StateSyncOutput) -> [StateSyncInput] {
        let fileSystem = nodes[node].fileSystem, dataDirectory = nodes[node].configuration.dataDirectory
        do {
            switch output {
            case .stage(let offer, let manifestBytes):
                checkNothingOutsideStaging(node)
                nodes[node].staging = try StateSyncStaging.begin(fileSystem: fileSystem, dataDirectory: dataDirectory, offer: offer, manifestBytes: manifestBytes)
                record(node, "state_sync.staged", "\(offer.name) at \(offer.height)")
            case .writeChunk(let path, let offset, let bytes):
                try requireStaging(node).writeChunk(path: path, offset: offset, bytes: bytes)
            case .checkFile(let path):
                return [.fileChecked(path: path, intact: try requireStaging(node).checkFile(path: path))]
            case .discardFile(let path):
                try requireStaging(node).discardFile(path: path)
            case .install(let offer):
                checkNothingOutsideStaging(node)
                emptyUntilInstall.remove(node)
                installing.insert(node)
                let answer = try install(node, offer)
                installing.remove(node)
                return [answer]
            default:
                preconditionFailure("only local work reaches here")
            }
        } catch {
            localStepFailed(node, "state sync's \(Self.brief(output))", error)
        }
        return []
    }

    /// A local step as the trace names it (never the bytes or digests, which hold RocksDB's
    /// random session ids).
    static func brief(_ output: StateSyncOutput) -> String {
        switch output {
        case .stage(let offer, _): "staging \(offer.name) at \(offer.height)"
        case .writeChunk(let path, let offset, let bytes): "write of \(path) at \(offset) (\(bytes.count) bytes)"
        case .checkFile(let path): "check of \(path)"
        case .discardFile(let path): "discard of \(path)"
        case .install(let offer): "install of \(offer.name) at \(offer.height)"
        default: "step"
        }
    }

    private func install(_ node: Int, _ offer: SnapshotOffer) throws(SnapshotError) -> StateSyncInput {
        let staging = requireStaging(node)
        do {
            let plan = try staging.install(walDirectory: nil, id: "state-sync-\(offer.height)-\(now / 1_000_000_000)", clock: clock)
            return .installed(height: plan.manifest.height, metaRoot: offer.metaRoot)
        } catch where error.refusesTheSnapshot && !nodes[node].fileSystem.isHalted {
            // Named by kind and path: RocksDB's message may quote checksums of random session ids.
            let reason = "\(error.kind.rawValue) at \(error.path)"
            record(node, "state_sync.install_refused", "\(offer.name): \(reason)")
            // The full verification refuses before it writes anything outside staging.
            markEmptyUntilInstall(node)
            if !forgedDigests.contains(offer.manifestSHA256) {
                failure = OracleViolation(.snapshot, expected: "the primary's snapshot \(offer.name) installs", found: "\(error)")
            }
            try StateSyncStaging.discard(fileSystem: staging.fileSystem, dataDirectory: staging.dataDirectory)
            return .installRefused(reason: reason)
        }
    }

    private func requireStaging(_ node: Int) -> StateSyncStaging {
        guard let staging = nodes[node].staging else { preconditionFailure("the machine stages a snapshot before it writes, checks or installs") }
        return staging
    }

    /// I8 for state sync: the snapshot installed is the primary's at its height; block sync
    /// follows from there, and the height is durable (I1).
    private func stateSynced(_ node: Int, height: UInt64, metaRoot: Hash32) {
        record(node, "state_sync.installed", "\(height) \(metaRoot.hex)")
        guard Int(height) <= model.height, metaRoot == roots[Int(height)] else {
            failure = OracleViolation(
                .syncConvergence, expected: "\(nodes[node].role.rawValue)\(node) installs only a snapshot of the primary's chain",
                found: "MetaRoot \(metaRoot.hex) at \(height)")
            return
        }
        endStateSync(node)
        nodes[node].durableHeight = max(nodes[node].durableHeight, height)
        probeRollForward(node)
        guard var plan = nodes[node].plan else { return }
        let step = plan.stateSyncInstalled()
        nodes[node].plan = plan
        follow(node, step)
    }

    /// The machine and staging handle go; the lock is released (the engine takes it next).
    private func endStateSync(_ node: Int) {
        nodes[node].stateSync = nil
        nodes[node].staging = nil
        try? nodes[node].stateSyncLock?.unlock()
        nodes[node].stateSyncLock = nil
    }

    /// A node whose install a crash interrupted stands at a snapshot's height again.
    private func probeRollForward(_ node: Int) {
        if installInterrupted.remove(node) != nil { Probe.stateSyncInstallRolledForward.hit() }
    }

    /// A crash while state syncing: the machine and its handles die with the process.
    func forgetStateSync(_ node: Int) {
        if installing.remove(node) != nil { installInterrupted.insert(node) }
        nodes[node].stateSync = nil
        nodes[node].staging = nil
        nodes[node].stateSyncLock = nil
    }

    /// Before the install nothing outside `state-sync/` is written: a state sync that began in
    /// a directory holding no chain (and whose install has not begun since) leaves it holding only
    /// staging, the lock file, and the snapshots an operator copied in.
    private func checkNothingOutsideStaging(_ node: Int) {
        guard emptyUntilInstall.contains(node) else { return }
        let dataDirectory = nodes[node].configuration.dataDirectory
        let allowed: Set<String> = [
            StateSyncStaging.folderName, DataDirectoryLayout.lockFileName, DataDirectoryLayout.snapshotsFolderName, SnapshotCatalog.fileName,
        ]
        let entries = (try? nodes[node].fileSystem.listDirectory(dataDirectory)) ?? []
        let outside = entries.filter { !allowed.contains($0) }
        if !outside.isEmpty {
            failure = OracleViolation(
                .snapshot, expected: "\(nodes[node].role.rawValue)\(node) writes nothing outside staging before the install",
                found: "\(outside.sorted().joined(separator: ", ")) in \(dataDirectory)")
        }
    }
}
