import Engine
import FaultFS
import Logging
import NIOPosix
import PeerSync
import ServiceLifecycle
import Synchronization

/// How `rivellum-node sync` ended, when it did not fail, with its last progress.
public enum SyncOutcome: Sendable, Equatable {
    /// The node reached the peers' height (or `--to-height`).
    case caughtUp(SyncProgress)
    /// SIGTERM or SIGINT came first; what was applied is durable, and the next run resumes.
    case interrupted(height: UInt64, SyncProgress?)
}

/// The one-shot sync's last progress report, and whether it was the caught-up one.
final class LastProgressBox: Sendable {
    private let stored = Mutex<(progress: SyncProgress?, caughtUp: Bool)>((nil, false))

    var value: (progress: SyncProgress?, caughtUp: Bool) { stored.withLock { $0 } }

    func record(_ progress: SyncProgress, caughtUp: Bool) { stored.withLock { $0 = (progress, caughtUp) } }
}

extension NodeRunner {
    /// `rivellum-node sync`: brings a stopped node's data directory up to its peers, then
    /// returns. `sync.mode` (`SyncModePlan`) decides between blocks and state sync, and
    /// `onEvent` hears which was chosen and why: an empty directory (auto) is state-synced from
    /// the peers' snapshots first; a node whose next block no quorum of peers still holds is
    /// state-synced when block sync stops for it. Block sync then opens (recovering) the
    /// engine, syncs until caught up with the peers (or `heightMax`), and closes it. Everything
    /// applied is durable when it returns, under the configured fsync policy's meaning (one
    /// sync per applied batch). Throws `NodeExit`: 65 a fork, 69 stalled for `stallSeconds` or
    /// the directory is in use, 78 configuration (no quorum possible, a genesis the peers
    /// contradict), 79 state sync needed and not possible.
    public static func syncOnce(
        configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock = MonotonicClock(), logger: Logger, heightMax: UInt64?,
        stallSeconds: Int,
        onProgress: @escaping @Sendable (SyncProgress) -> Void, onEvent: @escaping @Sendable (SyncModeEvent) -> Void = { _ in }
    ) async throws -> SyncOutcome {
        precondition(!configuration.sync.peers.isEmpty, "a one-shot sync has peers")
        try await confirmGenesis(configuration: configuration, logger: logger)
        var plan = SyncModePlan(mode: configuration.sync.mode, dataDirectoryEmpty: !hasGenesis(configuration))
        var step = plan.first()
        onEvent(.chose(step, reason: firstReason(step, plan: plan)))
        // Bounded by the plan: each round runs a state sync, and it allows a bounded number.
        while true {
            do {
                try await runStateSyncSteps(
                    step, plan: &plan, configuration: configuration, clock: clock, intervalClock: intervalClock, logger: logger, stallSeconds: stallSeconds,
                    onEvent: onEvent)
            } catch is StateSyncInterrupted {
                // Staging keeps what was downloaded; the next run resumes it.
                return .interrupted(height: (try? localHeight(configuration)) ?? 0, nil)
            }
            do {
                return try await blockSyncOnce(
                    configuration: configuration, clock: clock, intervalClock: intervalClock, logger: logger, heightMax: heightMax, stallSeconds: stallSeconds,
                    onProgress: onProgress)
            } catch let exit as NodeExit where exit.exitCode == ExitCodes.needsStateSync {
                step = plan.blockSyncEnded(.needsStateSync)
                if case .stop = step { throw exit }
                onEvent(.chose(step, reason: "the peers no longer hold the next block: state sync"))
            }
        }
    }

    /// Whether the data directory holds a genesis (a chain); a missing one counts as empty.
    static func hasGenesis(_ configuration: NodeConfiguration) -> Bool {
        (try? PosixFileSystem().exists(configuration.layout.genesis)) ?? false
    }

    /// Block sync of `syncOnce`: open, sync until caught up (or stopped), close.
    static func blockSyncOnce(
        configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock, logger: Logger, heightMax: UInt64?, stallSeconds: Int,
        onProgress: @escaping @Sendable (SyncProgress) -> Void
    ) async throws -> SyncOutcome {
        let metrics = NodeMetrics()
        let engine = try openEngine(configuration: configuration, clock: clock, metrics: metrics, logger: logger, walLogger: Logger(label: "rivellum_wal"))
        if let heightMax, heightMax < engine.stateRoots().height {
            try? engine.close()
            throw NodeExit(ExitCodes.usage, "rivellum-node sync: the node is already at height \(engine.stateRoots().height), above --to-height \(heightMax)")
        }
        let commitPool = NIOThreadPool(numberOfThreads: 1)
        commitPool.start()
        let last = LastProgressBox()
        var runError: (any Error)?
        do {
            try await HTTPPeerTransport.withTransport { transport in
                var sync = SyncService(
                    engine: engine, configuration: configuration, transport: transport, commitPool: commitPool, clock: intervalClock, metrics: metrics,
                    board: SyncBoard(), logger: logger)
                sync.machineConfiguration.heightMax = heightMax
                sync.untilCaughtUp = true
                sync.stallSeconds = stallSeconds
                // The caught-up report is the outcome's, not a progress event.
                sync.onProgress = { progress, caughtUp in
                    last.record(progress, caughtUp: caughtUp)
                    if !caughtUp { onProgress(progress) }
                }
                let group = ServiceGroup(
                    configuration: .init(
                        services: [.init(service: sync, successTerminationBehavior: .gracefullyShutdownGroup)],
                        gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
                try await group.run()
            }
        } catch {
            runError = error
        }
        try? await commitPool.shutdownGracefully()
        let height = engine.stateRoots().height
        try finish(engine: engine, fatal: FatalEngineError(), runError: runError, configuration: configuration)
        let final = last.value
        if final.caughtUp, let progress = final.progress { return .caughtUp(progress) }
        return .interrupted(height: height, final.progress.map { Self.brought($0, upTo: height) })
    }

    /// The last progress report (up to a second old) brought up to the height the engine ended
    /// at: every height above the report's is one more block applied (their wire bytes are not
    /// known here and are left out of `bytesApplied`).
    static func brought(_ progress: SyncProgress, upTo height: UInt64) -> SyncProgress {
        var progress = progress
        if height > progress.height {
            progress.blocksApplied += height - progress.height
            progress.height = height
        }
        return progress
    }

    /// Before a node with peers writes the genesis of an empty data directory: asks every peer's
    /// status (5 s each, at once) and refuses, writing nothing, when a quorum of them are on
    /// another chain (`GenesisAgreement`). An initialised directory is left to recovery.
    static func confirmGenesis(configuration: NodeConfiguration, logger: Logger) async throws {
        let fileSystem = PosixFileSystem()
        let layout = DataDirectoryLayout(dataDirectory: configuration.node.dataDirectory, walDirectory: configuration.walDirectory)
        guard !configuration.sync.peers.isEmpty, !((try? fileSystem.exists(layout.genesis)) ?? true) else { return }
        let peers = configuration.sync.peers
        let statuses = await HTTPPeerTransport.withTransport { transport in
            await withTaskGroup(of: PeerStatus?.self) { group in
                for url in peers {
                    group.addTask {
                        let wire = SyncExchange.peerRequest(.status, baseURL: url, timeoutSeconds: 5)
                        let outcome = await transport.outcome(of: wire)
                        guard case .status(_, .success(let status)) = SyncExchange.input(peer: 0, request: .status, outcome: outcome) else { return nil }
                        return status
                    }
                }
                // Bounded: one result per peer.
                var statuses: [PeerStatus] = []
                for await status in group { if let status { statuses.append(status) } }
                return statuses
            }
        }
        let decision = GenesisAgreement.decide(configuration: SyncService.machineConfiguration(of: configuration), statuses: statuses)
        logger.info("a new data directory: the peers' genesis", metadata: ["answered": "\(statuses.count)", "decision": "\(decision)"])
        if case .disagrees(let chainID, let lanes, let count) = decision {
            throw NodeExit(
                ExitCodes.config,
                "rivellum-node: \(count) of \(peers.count) peers are on chain \(chainID) with \(lanes) lanes, but node.chain_id is "
                    + "\(configuration.node.chainID) with node.lanes = \(configuration.node.laneCount); nothing was written. Remedy: set "
                    + "node.chain_id and node.lanes to the peers' (or fix sync.peers)")
        }
    }
}
