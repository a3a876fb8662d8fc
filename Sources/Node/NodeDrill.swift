import Engine
import FaultFS
import Foundation
import Logging
import Offsite
import PeerSync

/// What a restore drill found (`rivellum-node snapshot drill`).
public struct DrillReport: Sendable, Equatable {
    public enum Verdict: String, Sendable, Equatable {
        case passed
        /// The snapshot did not verify (a damaged or tampered file, manifest or root).
        case snapshotDamaged = "snapshot_damaged"
        /// The peer is on another chain or history: its roots differ from the snapshot's chain.
        case peerOnAnotherChain = "peer_on_another_chain"
        /// The peer no longer holds the blocks after the snapshot (or none answered): the
        /// snapshot cannot be brought forward from it.
        case cannotCatchUp = "cannot_catch_up"
        /// Brought forward, yet the roots differ from the peer's at the common height.
        case rootsDiffer = "roots_differ"
    }

    public var verdict: Verdict
    public var detail: String
    public var snapshotName: String
    public var snapshotHeight: UInt64?
    /// The height the standby and the peer were compared at.
    public var comparedHeight: UInt64?
    public var restoreSeconds: Double
    public var syncSeconds: Double
    public var blocksReplayed: UInt64
    /// Blocks between the snapshot and the peer's height when the drill started.
    public var gapBlocks: UInt64?
    public var scratchDirectory: String
    public var kept: Bool
}

/// A restore drill on a scratch standby: restore the snapshot (pulled first when it is
/// off-site), verify it, bring it forward from a peer to the peer's height, and compare the
/// MetaRoot and every lane root with the peer's there. Removes the scratch directory unless
/// `keep`. Never touches the node's own data directory.
public enum RestoreDrill {
    public struct Source: Sendable, Equatable {
        /// A snapshot directory, or an off-site URI with the snapshot's name (nil: the newest listed).
        public var path: String?
        public var uri: String?
        public var name: String?

        public init(path: String? = nil, uri: String? = nil, name: String? = nil) {
            precondition((path == nil) != (uri == nil), "a drill restores a directory or an off-site snapshot")
            self.path = path
            self.uri = uri
            self.name = name
        }
    }

    /// `scratch` must not exist or be empty (exit 73 otherwise): it is removed afterwards.
    public static func run(source: Source, peer: String, scratch: String, keep: Bool, logger: Logger) async throws -> DrillReport {
        let fileSystem = PosixFileSystem()
        // Removed afterwards: so it must be the drill's own (absent, or an empty directory).
        if try fileSystem.exists(scratch), !(try fileSystem.listDirectory(scratch)).isEmpty {
            throw SnapshotError(.exists, path: scratch, "the scratch directory is not empty; the drill removes it afterwards, so give a new or empty one")
        }
        try fileSystem.createDirectories(scratch)
        defer { if !keep { try? fileSystem.removeTree(scratch) } }
        let started = ContinuousClock.now
        var report = DrillReport(
            verdict: .passed, detail: "", snapshotName: source.name ?? source.path.map { PathComponents.name(of: $0) } ?? "", restoreSeconds: 0, syncSeconds: 0,
            blocksReplayed: 0, scratchDirectory: scratch, kept: keep)
        let standby = PathComponents.join(scratch, "data")
        let manifest: SnapshotManifest
        do {
            let snapshotPath = try await fetch(source, into: PathComponents.join(scratch, "snapshot"), report: &report)
            manifest = try restore(snapshotPath, into: standby, fileSystem: fileSystem)
        } catch let error as SnapshotError where [.damaged, .hostile, .incomplete].contains(error.kind) {
            return failed(&report, .snapshotDamaged, "\(error)", since: started)
        } catch let error as ObjectStoreError where error.kind == .damaged {
            return failed(&report, .snapshotDamaged, "\(error)", since: started)
        }
        report.snapshotHeight = manifest.height
        report.restoreSeconds = seconds(since: started)
        logger.info("drill: restored and verified", metadata: ["height": "\(manifest.height)", "seconds": "\(report.restoreSeconds)"])
        return try await bringForward(manifest: manifest, standby: standby, peer: peer, report: report, logger: logger)
    }

    private static func fetch(_ source: Source, into target: String, report: inout DrillReport) async throws -> String {
        if let path = source.path { return path }
        let uri = source.uri!
        return try await OffsiteStores.withStore(uri: uri) { store in
            var name = source.name
            if name == nil { name = try await OffsiteSnapshots.list(store: store).first { $0.manifest != nil }?.name }
            guard let name else { throw ObjectStoreError(.notFound, store: uri, key: "snapshots/", operation: "drill", "no snapshot in the store") }
            report.snapshotName = name
            return try await OffsiteSnapshots.pull(store: store, name: name, outPath: target, fileSystem: PosixFileSystem()).path
        }
    }

    /// Verifies the snapshot fully and restores it into the empty standby directory.
    private static func restore(_ snapshotPath: String, into standby: String, fileSystem: PosixFileSystem) throws -> SnapshotManifest {
        try fileSystem.createDirectories(standby)
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: standby)
        defer { try? lock.unlock() }
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: snapshotPath, dataDirectory: standby, resetWAL: false, id: "drill")
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: true, clock: SystemClock())
        return plan.manifest
    }

    /// Syncs the standby from the peer up to the peer's height, then compares roots there.
    private static func bringForward(manifest: SnapshotManifest, standby: String, peer: String, report: DrillReport, logger: Logger) async throws -> DrillReport {
        var report = report
        let started = ContinuousClock.now
        let target: PeerStatus
        switch await peerStatus(peer) {
        case .success(let status): target = status
        case .failure(let why): return failed(&report, .cannotCatchUp, "the peer \(peer) did not answer its status: \(why)", since: started, sync: true)
        }
        guard target.chainID == manifest.chainID, target.laneCount == manifest.laneCount else {
            return failed(&report, .peerOnAnotherChain, "the peer is on chain \(target.chainID) with \(target.laneCount) lanes; the snapshot is of \(manifest.chainID) with \(manifest.laneCount)", since: started, sync: true)
        }
        report.gapBlocks = target.servableHeight > manifest.height ? target.servableHeight - manifest.height : 0
        let height = max(target.servableHeight, manifest.height)
        var configuration = NodeConfiguration.defaults
        configuration.node.dataDirectory = standby
        configuration.node.chainID = manifest.chainID
        configuration.node.laneCount = manifest.laneCount
        configuration.wal.fsyncPolicy = .devFast
        configuration.sync.peers = [peer]
        configuration.sync.quorum = 1
        configuration.sync.mode = .blocks
        if height > manifest.height {
            do {
                _ = try await NodeRunner.syncOnce(
                    configuration: configuration, clock: SystemClock(), logger: logger, heightMax: height, stallSeconds: 120, onProgress: { _ in })
            } catch let exit as NodeExit {
                let verdict: DrillReport.Verdict = exit.exitCode == ExitCodes.dataError || exit.exitCode == ExitCodes.config ? .peerOnAnotherChain : .cannotCatchUp
                return failed(&report, verdict, exit.message, since: started, sync: true)
            }
        }
        report.syncSeconds = seconds(since: started)
        report.blocksReplayed = height - manifest.height
        report.comparedHeight = height
        return try await compare(configuration: configuration, height: height, peer: peer, report: report)
    }

    private static func compare(configuration: NodeConfiguration, height: UInt64, peer: String, report: DrillReport) async throws -> DrillReport {
        var report = report
        let engine = try Engine(fileSystem: PosixFileSystem(), configuration: configuration.engineConfiguration, clock: SystemClock())
        let mine = engine.stateRoots()
        try engine.close()
        guard mine.height == height else { return failed(&report, .cannotCatchUp, "the standby reached height \(mine.height), not \(height)", since: .now) }
        guard height > 0 else { return report }
        switch await peerBlock(peer, height: height) {
        case .failure(let why):
            return failed(&report, .cannotCatchUp, "the peer did not give its block \(height): \(why)", since: .now)
        case .success(let theirs):
            if theirs.metaRoot != mine.metaRoot || theirs.laneRoots != mine.laneRoots {
                let lanes = zip(theirs.laneRoots, mine.laneRoots).enumerated().filter { $0.element.0 != $0.element.1 }.map { "lane \($0.offset)" }
                return failed(
                    &report, .rootsDiffer,
                    "at height \(height) the standby's MetaRoot is \(mine.metaRoot.hex), the peer's \(theirs.metaRoot.hex); differing: \(lanes.isEmpty ? "the MetaRoot" : lanes.joined(separator: ", "))",
                    since: .now)
            }
            report.detail = "MetaRoot \(mine.metaRoot.hex) and all \(mine.laneRoots.count) lane roots equal the peer's at height \(height)"
            return report
        }
    }

    private static func failed(_ report: inout DrillReport, _ verdict: DrillReport.Verdict, _ detail: String, since: ContinuousClock.Instant, sync: Bool = false) -> DrillReport {
        report.verdict = verdict
        report.detail = detail
        if sync { report.syncSeconds = seconds(since: since) } else if report.restoreSeconds == 0 { report.restoreSeconds = seconds(since: since) }
        return report
    }

    private static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    private static func peerStatus(_ peer: String) async -> Result<PeerStatus, PeerFault> {
        await HTTPPeerTransport.withTransport { transport in
            let outcome = await transport.outcome(of: SyncExchange.peerRequest(.status, baseURL: peer, timeoutSeconds: 10))
            guard case .status(_, let result) = SyncExchange.input(peer: 0, request: .status, outcome: outcome) else { return .failure(.unreachable("no status")) }
            return result
        }
    }

    private static func peerBlock(_ peer: String, height: UInt64) async -> Result<SyncBlock, PeerFault> {
        await HTTPPeerTransport.withTransport { transport in
            let request = SyncRequest.blocks(from: height, count: 1)
            let outcome = await transport.outcome(of: SyncExchange.peerRequest(request, baseURL: peer, timeoutSeconds: 30))
            guard case .blocks(_, _, let result) = SyncExchange.input(peer: 0, request: request, outcome: outcome) else { return .failure(.unreachable("no blocks")) }
            return result.flatMap { blocks in
                guard let block = blocks.first, block.height == height else { return .failure(.misbehaved("not block \(height)")) }
                return .success(block)
            }
        }
    }
}
