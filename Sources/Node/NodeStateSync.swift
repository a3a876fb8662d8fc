import Engine
import FaultFS
import Logging
import NIOPosix
import PeerSync
import ServiceLifecycle

/// What `sync` and `run` tell their caller about the choice between blocks and state sync.
public enum SyncModeEvent: Sendable, Equatable {
    /// The step taken next, and why.
    case chose(SyncModePlan.Step, reason: String)
    case stateSyncProgress(StateSyncProgress)
    case stateSynced(StateSyncReport)
}

extension NodeRunner {
    /// Runs the plan's steps until block sync is the one to run: state sync (with the engine
    /// closed) as the plan says, and returns once block sync is next; throws `NodeExit` when the
    /// plan stops. `plan` carries what happened to the next decision.
    static func runStateSyncSteps(
        _ step: SyncModePlan.Step, plan: inout SyncModePlan, configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock,
        logger: Logger, stallSeconds: Int?, onEvent: @escaping @Sendable (SyncModeEvent) -> Void
    ) async throws {
        var step = step
        // Bounded by the plan: at most `stateSyncRoundsMax` state syncs.
        while true {
            switch step {
            case .blockSync:
                return
            case .stop(let reason):
                throw stopExit(reason)
            case .stateSync:
                do {
                    let report = try await stateSync(
                        configuration: configuration, clock: clock, intervalClock: intervalClock, logger: logger, stallSeconds: stallSeconds, onEvent: onEvent)
                    onEvent(.stateSynced(report))
                    step = plan.stateSyncInstalled()
                } catch let stopped as StateSyncStopped {
                    step = plan.stateSyncStopped(stopped.stop)
                    if step == .blockSync {
                        onEvent(.chose(.blockSync, reason: "no peer offers a snapshot a quorum vouches for: blocks from genesis"))
                    }
                } catch let stalled as SyncStalled {
                    step = plan.stateSyncStalled(seconds: stalled.seconds)
                    if step == .blockSync {
                        onEvent(.chose(.blockSync, reason: "state sync made no progress for \(stalled.seconds) s: blocks from genesis"))
                    }
                }
            }
        }
    }

    static func stopExit(_ reason: SyncModePlan.StopReason) -> NodeExit {
        switch reason {
        case .stateSync(let stop):
            let stopped = StateSyncStopped(stop: stop)
            return NodeExit(stopped.exitCode, "rivellum-node: \(stopped)")
        case .stateSyncStalled(let seconds):
            return NodeExit(
                ExitCodes.unavailable,
                "rivellum-node: state sync made no progress for \(seconds) s: no quorum of peers answered, or none serves the chosen snapshot. "
                    + "Remedy: check that the peers are up and reachable, then run again (the download resumes)")
        case .needsStateSync:
            return NodeExit(
                ExitCodes.needsStateSync,
                "rivellum-node: too few peers to make a quorum still hold the next block, and state sync may not run (sync.mode = \"blocks\") "
                    + "or did not bring the node within their retention. Remedy: sync.mode = \"auto\", restore a recent snapshot, or add an archive peer")
        }
    }

    /// The reason given for the first step, for the event and the log.
    static func firstReason(_ step: SyncModePlan.Step, plan: SyncModePlan) -> String {
        switch (step, plan.mode) {
        case (.stateSync, .snapshot): "state sync forced (mode snapshot)"
        case (.stateSync, _): "the data directory is empty: state sync from the peers' snapshots"
        case (.blockSync, .blocks): "blocks forced (mode blocks)"
        case (.blockSync, _): "the data directory holds a chain: blocks from its height"
        case (.stop, _): "stopped"
        }
    }

    /// One state sync with the engine closed: locks the data directory (creating it), then (the
    /// service) finishes a restore a crash interrupted, fetches, verifies and installs a snapshot. Throws
    /// `StateSyncStopped` or `SyncStalled` (the plan decides), or `NodeExit` (69 locked, 74 I/O).
    static func stateSync(
        configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock, logger: Logger, stallSeconds: Int?,
        onEvent: @escaping @Sendable (SyncModeEvent) -> Void
    ) async throws -> StateSyncReport {
        let fileSystem = PosixFileSystem()
        let dataDirectory = configuration.node.dataDirectory
        let heightFloor = try localHeight(configuration)
        let lock: any FileLock
        do {
            try fileSystem.createDirectories(dataDirectory)
        } catch {
            throw NodeExit(ExitCodes.ioError, "rivellum-node: cannot create the data directory: \(error)")
        }
        do throws(SnapshotError) {
            lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: dataDirectory)
        } catch {
            throw NodeExit(error.kind == .locked ? ExitCodes.unavailable : ExitCodes.ioError, "rivellum-node: \(error)")
        }
        defer { try? lock.unlock() }
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        defer { Task { try? await pool.shutdownGracefully() } }
        do {
            return try await HTTPPeerTransport.withTransport { transport in
                var service = StateSyncService(
                    configuration: configuration, transport: transport, pool: pool, clock: intervalClock, walClock: clock, metrics: NodeMetrics(),
                    logger: logger, heightFloor: heightFloor)
                service.stallSeconds = stallSeconds
                service.onProgress = { onEvent(.stateSyncProgress($0)) }
                let run = StateSyncRun(service: service)
                let group = ServiceGroup(
                    configuration: .init(
                        services: [.init(service: run, successTerminationBehavior: .gracefullyShutdownGroup)],
                        gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
                try await group.run()
                guard let report = run.report else { throw StateSyncInterrupted() }
                return report
            }
        } catch let error as SnapshotError {
            throw NodeExit(error.kind == .locked ? ExitCodes.unavailable : ExitCodes.ioError, "rivellum-node: state sync: \(error)")
        }
    }

    /// The height a stopped node's data directory recovers to (0 when it has no genesis): state
    /// sync only takes a snapshot above it. Read before the lock is taken (the read takes it).
    static func localHeight(_ configuration: NodeConfiguration) throws -> UInt64 {
        do {
            return try StateSyncStaging.localHeight(
                fileSystem: PosixFileSystem(), dataDirectory: configuration.node.dataDirectory, walDirectory: configuration.wal.walDirectory)
        } catch {
            throw NodeExit(NodeExit.exitCode(for: error), "rivellum-node: state sync: \(error)")
        }
    }

    /// Block sync runs: a staging area of a state sync the node already stands at or above
    /// (a crash between the install and its removal) is removed.
    static func discardInstalledStaging(configuration: NodeConfiguration, localHeight: UInt64, logger: Logger) {
        do {
            guard
                let offer = try StateSyncStaging.discardIfInstalled(
                    fileSystem: PosixFileSystem(), dataDirectory: configuration.node.dataDirectory, localHeight: localHeight)
            else { return }
            logger.info("removed the staging of a state sync already installed", metadata: ["height": "\(offer.height)"])
        } catch {
            logger.warning("cannot remove the staging of an installed state sync", metadata: ["error": "\(error)"])
        }
    }
}
