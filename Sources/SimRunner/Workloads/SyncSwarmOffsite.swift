import Engine
import FaultFS
import OffsiteCore

/// The off-site round of a state-sync seed, once every node converged: the primary pushes its
/// catalogued snapshots to a `SimulatedObjectStore` that loses and cuts short uploads, fails
/// calls, and rots objects at rest; the store may be pruned; then each pushed snapshot is
/// pulled onto another machine. Oracles:
/// - a push that reported success had none of its uploads lost or cut short (each was read
///   back), and one that failed failed because of something the store did;
/// - a pull either gives a snapshot that verifies fully, with the manifest pushed and the
///   primary's MetaRoot at its height, or refuses as damaged — only when the store damaged an
///   object (or the manifest) that snapshot needs — leaving nothing behind; a pruned snapshot
///   is not found, a kept one still pulls.
extension SyncSwarmRun {
    private static let offsiteSeedSalt: UInt64 = 0x4F46_4653

    func offsiteRound() {
        var random = DeterministicRandom(seed: workload.seed ^ Self.offsiteSeedSalt)
        let rates = SimulatedObjectStore.Rates(
            lostUpload: random.chance(0.5) ? 0.05 : 0, partialUpload: random.chance(0.5) ? 0.05 : 0,
            putUnavailable: random.chance(0.3) ? 0.03 : 0, getUnavailable: random.chance(0.3) ? 0.03 : 0)
        let store = SimulatedObjectStore(seed: random.next(), rates: rates)
        record(0, "offsite.start", "\(rates)")
        guard let catalog = try? SnapshotCatalog.load(fileSystem: nodes[0].fileSystem, dataDirectory: nodes[0].configuration.dataDirectory) else {
            failure = OracleViolation(.snapshot, expected: "the primary's catalog (no faults) reads", found: "it does not")
            return
        }
        var pushed: [(name: String, path: String, digest: String)] = []
        for entry in catalog.snapshots where failure == nil {
            let name = PathComponents.name(of: entry.path)
            if let digest = push(entry.path, name: name, to: store, rates: rates) { pushed.append((name, entry.path, digest)) }
        }
        guard failure == nil else { return }
        store.setRates(SimulatedObjectStore.Rates())
        if random.chance(0.5) { record(0, "offsite.rot", "\(store.rot(count: random.int(in: 1...3), prefix: "")) object(s)") }
        var pruned: Set<String> = []
        if random.chance(0.4), pushed.count > 1 {
            switch runToCompletion({ try await OffsiteSnapshots.prune(store: store, keep: 1, nowSeconds: 1_000_000) }) {
            case .success(let report):
                pruned = Set(report.removed)
                record(0, "offsite.prune", "kept \(report.kept) removed \(report.removed)")
            case .failure(let error):
                failure = OracleViolation(.snapshot, expected: "a prune of a store with no faults succeeds", found: "\(error)")
            }
        }
        for snapshot in pushed where failure == nil { pull(snapshot, from: store, pruned: pruned.contains(snapshot.name)) }
    }

    /// Pushes one snapshot; on a failure the store caused, pushes it again with its faults off.
    /// Returns the pushed manifest's digest.
    private func push(_ path: String, name: String, to store: SimulatedObjectStore, rates: SimulatedObjectStore.Rates) -> String? {
        let fileSystem = nodes[0].fileSystem
        let nowSeconds = now / 1_000_000_000
        let first = runToCompletion { try await OffsiteSnapshots.push(snapshotPath: path, name: name, store: store, fileSystem: fileSystem, nowSeconds: nowSeconds) }
        let injected = store.takeInjected()
        let lostNeeded = injected.damagedUploads.filter { !$0.hasSuffix("/PUSHING") }
        switch first {
        case .success(let report):
            guard lostNeeded.isEmpty else {
                failure = OracleViolation(.snapshot, expected: "a push whose upload was lost or cut short fails", found: "\(name) reported pushed; damaged: \(lostNeeded.sorted())")
                return nil
            }
            if report.filesAlreadyStored > 0 { Probe.offsiteObjectShared.hit() }
            record(0, "offsite.pushed", "\(name): \(report.filesUploaded) uploaded, \(report.filesAlreadyStored) already stored")
            return report.manifestSHA256
        case .failure(let error):
            guard !lostNeeded.isEmpty || injected.unavailable > 0 else {
                failure = OracleViolation(.snapshot, expected: "a push fails only for what the store did", found: "\(name): \(error)")
                return nil
            }
            if !lostNeeded.isEmpty { Probe.offsiteUploadDamageCaught.hit() }
            // Named by kind: the message names objects by SHA-256 (RocksDB's random session ids).
            record(0, "offsite.push_failed", "\(name): \((error as? ObjectStoreError)?.kind.rawValue ?? "local")")
        }
        store.setRates(SimulatedObjectStore.Rates())
        defer { store.setRates(rates) }
        switch runToCompletion({ try await OffsiteSnapshots.push(snapshotPath: path, name: name, store: store, fileSystem: fileSystem, nowSeconds: nowSeconds) }) {
        case .success(let report):
            return report.manifestSHA256
        case .failure(let error):
            failure = OracleViolation(.snapshot, expected: "a push again with the store's faults off succeeds", found: "\(name): \(error)")
            return nil
        }
    }

    /// Pulls one pushed snapshot onto the catcher's machine and checks what came back.
    private func pull(_ snapshot: (name: String, path: String, digest: String), from store: SimulatedObjectStore, pruned: Bool) {
        let fileSystem = nodes[nodes.count - 1].fileSystem
        let outPath = "/pulled/\(snapshot.name)"
        let result = runToCompletion { try await OffsiteSnapshots.pull(store: store, name: snapshot.name, outPath: outPath, fileSystem: fileSystem) }
        let damaged = store.everDamaged.intersection(neededKeys(snapshot))
        switch result {
        case .success(let report):
            let manifestDamaged = damaged.contains("snapshots/\(snapshot.name)/\(SnapshotManifest.fileName)")
            checkPulled(snapshot, report: report, outPath: outPath, pruned: pruned, manifestDamaged: manifestDamaged)
        case .failure(let error as ObjectStoreError) where error.kind == .notFound && pruned:
            record(0, "offsite.pull_not_found", "\(snapshot.name) (pruned)")
        case .failure(let error) where Self.refusesDamage(error) && !damaged.isEmpty:
            Probe.offsitePullRefusedDamage.hit()
            record(0, "offsite.pull_refused", "\(snapshot.name): \(damaged.count) damaged key(s)")
            let left = [outPath, outPath + ".partial"].filter { (try? fileSystem.exists($0)) != false }
            if !left.isEmpty { failure = OracleViolation(.snapshot, expected: "a refused pull leaves nothing", found: "\(left)") }
        case .failure(let error):
            failure = OracleViolation(
                .snapshot, expected: "\(snapshot.name) pulls (pruned \(pruned), damaged by the store: \(damaged.sorted()))", found: "\(error)")
        }
    }

    /// A pull refused as damaged: an object that is not what the manifest says (the store), or
    /// a snapshot that does not verify (a manifest damaged into another that still decodes —
    /// not reached while `SimulatedObjectStore.rot` damages a manifest at its first byte; kept
    /// so that the oracle stays right for any damage).
    private static func refusesDamage(_ error: any Error) -> Bool {
        if let error = error as? ObjectStoreError { return error.kind == .damaged }
        if let error = error as? SnapshotError { return error.refusesTheSnapshot }
        return false
    }

    private func checkPulled(_ snapshot: (name: String, path: String, digest: String), report: OffsiteSnapshots.PullReport, outPath: String, pruned: Bool, manifestDamaged: Bool) {
        let fileSystem = nodes[nodes.count - 1].fileSystem
        let bytes = try? SnapshotVerifier.readManifestAndBytes(fileSystem: fileSystem, path: outPath).bytes
        let verified = (try? SnapshotVerifier.verify(fileSystem: fileSystem, path: outPath)) != nil
        let rootRight = Int(report.height) <= model.height && report.metaRoot == roots[Int(report.height)].hex
        // A manifest the store damaged could still decode and describe the same snapshot (a bit
        // of its creation time): verified and at the right root, it would be a good copy all the
        // same. (Rot damages a manifest at its first byte, so that it never decodes, today.)
        let asPushed = bytes.map(SnapshotOffers.digest) == snapshot.digest || manifestDamaged
        guard !pruned, verified, rootRight, asPushed else {
            failure = OracleViolation(
                .snapshot, expected: "\(snapshot.name) pulls as pushed: verified, the primary's root at \(report.height), not pruned",
                found: "pruned \(pruned), verified \(verified), root right \(rootRight), as pushed \(asPushed)")
            return
        }
        record(0, "offsite.pulled", "\(snapshot.name) at \(report.height)")
    }

    /// The keys a pull of the snapshot reads: its manifest and every file's object.
    private func neededKeys(_ snapshot: (name: String, path: String, digest: String)) -> Set<String> {
        let manifest = try? SnapshotVerifier.readManifestAndBytes(fileSystem: nodes[0].fileSystem, path: snapshot.path).manifest
        return Set((manifest?.files ?? []).map { "objects/" + $0.sha256 } + ["snapshots/\(snapshot.name)/\(SnapshotManifest.fileName)"])
    }
}
