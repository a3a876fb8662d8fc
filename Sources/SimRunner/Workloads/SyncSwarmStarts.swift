import Engine
import FaultFS
import PeerSync

/// How the late node of a `SyncSwarmRun` starts (from genesis, from a restored snapshot, or
/// with a chain of its own) and how it stops when a scenario expects it to.
extension SyncSwarmRun {
    /// Starts the catcher the way the setup says; it syncs from the next step on.
    func startCatcher(_ catcher: Int) {
        nodes[catcher].started = true
        switch setup.catcherStart {
        case .genesis:
            record(catcher, "sim.start", "catching up from genesis at primary height \(model.height)")
        case .snapshot:
            restoreSnapshot(on: catcher)
        case .stateSync:
            record(catcher, "sim.start", "an empty data directory, no archive peer, \(snapshotsTaken) snapshot(s) taken, at primary height \(model.height)")
            startByPlan(catcher)
        }
        if failure == nil && setup.catcherOwnBlocks > 0 { commitOwnBlocks(on: catcher) }
    }

    /// Hardware failure as the operator recovers from it: the primary's snapshot is copied to
    /// the new machine and restored into its empty data directory (crashing inside the restore
    /// in some seeds, then restoring again), and the node syncs the blocks after it.
    private func restoreSnapshot(on catcher: Int) {
        guard let source = nodes[0].engine else { return }
        let fileSystem = nodes[catcher].fileSystem
        let path = "/snapshots/s\(model.height)"
        let manifest: SnapshotManifest
        do {
            manifest = try SnapshotCreator.create(engine: source, fileSystem: nodes[0].fileSystem, outputPath: path, nowSeconds: now / 1_000_000_000)
            fileSystem.setFaultsEnabled(false)
            try copyTree(path, from: nodes[0].fileSystem, to: fileSystem)
            fileSystem.setFaultsEnabled(!healed)
        } catch {
            failure = OracleViolation(.snapshot, expected: "the primary's snapshot (no faults) is taken and copied", found: "\(error)")
            return
        }
        record(catcher, "sim.start", "restoring the primary's snapshot at height \(manifest.height)")
        // Bounded: 8 attempts with faults and crash points, 4 more with faults off.
        for attempt in 1...12 {
            if attempt > 8 { fileSystem.setFaultsEnabled(false) }
            if attempt <= 8 && !healed && random.chance(0.3) {
                fileSystem.scheduleCrash(atOperation: fileSystem.operationCount + UInt64(random.int(in: 1...300)))
            }
            do {
                try restore(path, on: catcher, id: "r\(attempt)")
                fileSystem.scheduleCrash(atOperation: nil)
                fileSystem.setFaultsEnabled(!healed)
                nodes[catcher].durableHeight = manifest.height
                return
            } catch where attempt < 12 && (error.kind == .io || fileSystem.isHalted) {
                var none: Engine?
                crashMachine(fileSystem, engine: &none, fileSystem.isHalted && random.chance(0.7) ? .powerLoss : .processCrash)
                crashes += 1
                record(catcher, "sim.crash", "restoring: \(error)")
            } catch {
                failure = OracleViolation(.snapshot, expected: "snapshot \(path) (height \(manifest.height)) restores on new hardware", found: "\(error)")
                return
            }
        }
    }

    /// One restore as the operator runs it after a crash: lock, finish an interrupted one, plan, restore.
    private func restore(_ path: String, on catcher: Int, id: String) throws(SnapshotError) {
        let fileSystem = nodes[catcher].fileSystem
        let dataDirectory = nodes[catcher].configuration.dataDirectory
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: dataDirectory)
        defer { try? lock.unlock() }
        try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: dataDirectory, clock: clock)
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: path, dataDirectory: dataDirectory, resetWAL: false, id: id)
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: true, clock: clock)
    }

    /// Copies a directory tree between two machines' file systems, every file and directory synced.
    func copyTree(_ root: String, from source: SimulatedFileSystem, to target: SimulatedFileSystem) throws(FileSystemError) {
        try target.createDirectories(root)
        for entry in try source.walkTree(root) {
            let path = PathComponents.join(root, entry.path)
            if entry.status.kind == .directory {
                try target.createDirectories(path)
            } else {
                try target.writeFileAtomically(path, bytes: try source.readFile(path))
            }
        }
        try target.syncDirectory(PathComponents.parent(of: root))
    }

    /// The catcher commits blocks of its own first (a writer that forked the chain, faults off):
    /// the quorum attests other roots at its height, so it must stop on the fork and keep its
    /// chain as it is.
    private func commitOwnBlocks(on catcher: Int) {
        let fileSystem = nodes[catcher].fileSystem
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(!healed) }
        recover(catcher)
        guard failure == nil, let engine = nodes[catcher].engine else { return }
        do {
            for index in 0..<setup.catcherOwnBlocks {
                _ = try engine.commit(blockGenerator.block(using: &random) + [BlockOperation(key: Array("own".utf8), value: Array("\(index)".utf8))])
            }
        } catch {
            failure = OracleViolation(.faultFreeOperation, expected: "the catcher's own blocks (faults off) commit", found: "\(error)")
            return
        }
        let tip = engine.stateRoots()
        nodes[catcher].ownTip = (tip.height, tip.metaRoot)
        nodes[catcher].durableHeight = tip.height
        nodes[catcher].machine = SyncMachine(
            configuration: syncConfiguration(nodes[catcher].peers.count, true), localHeight: tip.height, localMetaRoot: tip.metaRoot)
        record(catcher, "sim.start", "syncing with \(tip.height) blocks of its own at primary height \(model.height)")
    }

    /// The catcher stopped as its setup expects: its chain must be as it was (nothing was
    /// overwritten); it is closed and left alone.
    func stopNode(_ node: Int, _ stop: SyncStop) {
        nodes[node].stop = stop
        record(node, "sync.stopped", "\(stop)")
        guard let engine = nodes[node].engine else { return }
        let roots = engine.stateRoots()
        let expected = nodes[node].ownTip ?? (nodes[node].durableHeight, roots.metaRoot)
        if roots.height != expected.height || roots.metaRoot != expected.metaRoot {
            failure = OracleViolation(
                .syncConvergence, expected: "\(nodes[node].role.rawValue)\(node) stops with its chain as it was (\(expected.height))",
                found: "\(roots.metaRoot.hex) at \(roots.height)")
        }
        closeEngine(node)
    }
}
