import Engine
import FaultFS
import Hummingbird
import Logging
import PeerSync
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Why the node stopped with a non-zero exit code. `exitCode` follows sysexits.
public struct NodeExit: Error, CustomStringConvertible {
    public var exitCode: Int32
    public var message: String

    public init(_ exitCode: Int32, _ message: String) {
        self.exitCode = exitCode
        self.message = message
    }

    public var description: String { message }

    /// The exit code for an engine error: 69 when another node holds the directory, 65 when
    /// the engine refuses damaged state, 78 for a genesis that disagrees with the config, 74 for
    /// I/O and other operating errors.
    public static func exitCode(for error: EngineError) -> Int32 {
        if error.kind == .locked { return ExitCodes.unavailable }
        if error.kind == .genesisMismatch { return ExitCodes.config }
        if error.isRefusal { return ExitCodes.dataError }
        if error.kind == .notInitialised { return ExitCodes.unavailable }
        return ExitCodes.ioError
    }
}

/// The node's documented exit codes (sysexits style).
public enum ExitCodes {
    public static let success: Int32 = 0
    /// A torn tail only (`wal verify`): recovery would drop it.
    public static let tornTailOnly: Int32 = 1
    public static let usage: Int32 = 64
    public static let dataError: Int32 = 65
    /// The data directory does not exist or was never initialised.
    public static let noInput: Int32 = 66
    public static let unavailable: Int32 = 69
    /// The target of a create already exists.
    public static let cantCreate: Int32 = 73
    public static let ioError: Int32 = 74
    public static let config: Int32 = 78
    /// `rivellum-node sync` was stopped (SIGTERM/SIGINT) before it caught up; run it again to resume.
    public static let interrupted: Int32 = 75
    /// Peer sync: too few peers to make a quorum still hold the next height; state sync (a snapshot) is needed.
    public static let needsStateSync: Int32 = 79
    /// The off-site store refused: credentials, permissions, a missing bucket.
    public static let noPermission: Int32 = 77
}

/// Runs the daemon: opens (recovering) the engine, serves the API, ticks the WAL, and shuts
/// down gracefully on SIGTERM or SIGINT: stop accepting, finish in-flight requests, then close
/// the engine (sync, flush lanes, release the lock).
public enum NodeRunner {
    /// `<data_dir>/node.api`: the running node's API address (`HOST:PORT`), for offline tools.
    public static let apiAddressFileName = "node.api"

    /// - Parameters:
    ///   - clock: the engine's WAL clock and the snapshots' (the system clock in production).
    ///   - intervalClock: peer sync's timeouts and backoff (monotonic in production).
    ///
    /// With peers, `sync.mode` (`SyncModePlan`) decides first: an empty data directory (auto)
    /// is state-synced from the peers' snapshots before the API starts; a node whose next block
    /// no quorum of peers still holds stops its services, state-syncs, and starts them again.
    public static func run(
        configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock = MonotonicClock(), logger: Logger
    ) async throws {
        try await confirmGenesis(configuration: configuration, logger: logger)
        guard !configuration.sync.peers.isEmpty else {
            return try await runDaemon(configuration: configuration, clock: clock, intervalClock: intervalClock, logger: logger)
        }
        let syncLogger = Logger(label: "rivellum_sync")
        let onEvent: @Sendable (SyncModeEvent) -> Void = { event in logModeEvent(event, logger: syncLogger) }
        var plan = SyncModePlan(mode: configuration.sync.mode, dataDirectoryEmpty: !hasGenesis(configuration))
        var step = plan.first()
        onEvent(.chose(step, reason: firstReason(step, plan: plan)))
        // Bounded by the plan: each round runs a state sync, and it allows a bounded number.
        while true {
            do {
                try await runStateSyncSteps(
                    step, plan: &plan, configuration: configuration, clock: clock, intervalClock: intervalClock, logger: syncLogger,
                    stallSeconds: Self.daemonStateSyncStallSeconds, onEvent: onEvent)
            } catch is StateSyncInterrupted {
                logger.info("stopped during state sync; the next start resumes the download")
                return
            }
            do {
                return try await runDaemon(configuration: configuration, clock: clock, intervalClock: intervalClock, logger: logger)
            } catch let exit as NodeExit where exit.exitCode == ExitCodes.needsStateSync {
                step = plan.blockSyncEnded(.needsStateSync)
                if case .stop = step { throw exit }
                onEvent(.chose(step, reason: "the peers no longer hold the next block: the node stops its services and state-syncs"))
            }
        }
    }

    /// How long the daemon's state sync may make no progress before it gives up (auto mode
    /// into an empty directory then starts with blocks, serving its API meanwhile).
    static let daemonStateSyncStallSeconds = 30

    static func logModeEvent(_ event: SyncModeEvent, logger: Logger) {
        switch event {
        case .chose(let step, let reason):
            logger.notice("sync mode chosen", metadata: ["next": "\(step == .stateSync ? "state_sync" : "blocks")", "reason": "\(reason)"])
        case .stateSyncProgress(let progress):
            logger.info(
                "state sync", metadata: ["phase": "\(progress.phase.rawValue)", "bytes_downloaded": "\(progress.bytesDownloaded)", "snapshot_bytes": "\(progress.snapshotBytes)"])
        case .stateSynced(let report):
            logger.notice("state synced", metadata: ["height": "\(report.height)", "snapshot": "\(report.name)", "bytes_downloaded": "\(report.bytesDownloaded)"])
        }
    }

    /// The daemon proper: opens (recovering) the engine and runs its services until shutdown.
    static func runDaemon(
        configuration: NodeConfiguration, clock: any WALClock, intervalClock: any WALClock, logger: Logger
    ) async throws {
        let walLogger = Logger(label: "rivellum_wal")
        let metrics = NodeMetrics()
        let engine = try openEngine(configuration: configuration, clock: clock, metrics: metrics, logger: logger, walLogger: walLogger)
        let commitPool = NIOThreadPool(numberOfThreads: min(64, configuration.api.maxInflightCommits))
        commitPool.start()
        let fatal = FatalEngineError()
        let engineService = EngineService(engine: engine, configuration: configuration, logger: walLogger, fatal: fatal)
        let snapshots = NodeSnapshots(engine: engine, configuration: configuration, metrics: metrics, logger: Logger(label: "rivellum_snapshot"), clock: clock)
        let board = SyncBoard()
        let api = NodeAPI(
            engine: engine, configuration: configuration, metrics: metrics, logger: Logger(label: "rivellum_api"),
            commitPool: commitPool, snapshots: snapshots, syncBoard: configuration.sync.peers.isEmpty ? nil : board
        ) { error in
            if fatal.record(error) { logger.critical("the engine failed; stopping so that a restart recovers", metadata: ["error": "\(error)"]) }
        }
        OpenFileLimit.raise(toFit: configuration.api.maxConnections, logger: logger)
        // Shut down in reverse order: the API first (in-flight requests finish), then sync, then the engine.
        let before: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: engineService, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: SnapshotScheduleService(snapshots: snapshots, intervalHours: configuration.snapshot.intervalHours),
                  successTerminationBehavior: .ignore, failureTerminationBehavior: .ignore),
        ]
        let application = ServiceGroupConfiguration.ServiceConfiguration(
            service: makeApplication(api: api, configuration: configuration, metrics: metrics, logger: logger),
            successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        func runGroup(_ services: [ServiceGroupConfiguration.ServiceConfiguration]) async throws {
            let group = ServiceGroup(
                configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
            try await group.run()
        }
        var runError: (any Error)?
        do {
            if configuration.sync.peers.isEmpty {
                try await runGroup(before + [application])
            } else {
                try await HTTPPeerTransport.withTransport { transport in
                    let sync = SyncService(
                        engine: engine, configuration: configuration, transport: transport, commitPool: commitPool, clock: intervalClock, metrics: metrics,
                        board: board, logger: Logger(label: "rivellum_sync"))
                    try await runGroup(
                        before + [.init(service: sync, successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup), application])
                }
            }
        } catch {
            runError = error
        }
        try? await commitPool.shutdownGracefully()
        try? PosixFileSystem().removeFile(PathComponents.join(configuration.node.dataDirectory, NodeRunner.apiAddressFileName))
        try finish(engine: engine, fatal: fatal, runError: runError, configuration: configuration)
        logger.info("stopped cleanly", metadata: ["height": "\(engine.stateRoots().height)"])
    }

    /// Opens the engine (recovery runs here) and logs and records what recovery did; a refusal
    /// or an I/O failure is a `NodeExit` with the error's exit code.
    static func openEngine(
        configuration: NodeConfiguration, clock: any WALClock, metrics: NodeMetrics, logger: Logger, walLogger: Logger
    ) throws -> Engine {
        logger.info(
            "opening data directory",
            metadata: [
                "data_dir": "\(configuration.node.dataDirectory)", "wal_dir": "\(configuration.walDirectory)",
                "chain_id": "\(configuration.node.chainID)", "lanes": "\(configuration.node.laneCount)",
                "wal_fsync_policy": "\(configuration.wal.fsyncPolicy.rawValue)",
            ])
        let engine: Engine
        do {
            engine = try Engine(fileSystem: PosixFileSystem(), configuration: configuration.engineConfiguration, clock: clock, walObserver: metrics)
        } catch {
            logger.critical("cannot open the data directory", metadata: ["error": "\(error)", "remedy": "\(error.remedy)"])
            throw NodeExit(NodeExit.exitCode(for: error), "rivellum-node: \(error)")
        }
        let report = engine.recoveryReport
        metrics.recordRecovery(report)
        discardInstalledStaging(configuration: configuration, localHeight: engine.stateRoots().height, logger: logger)
        walLogger.info(
            "recovered",
            metadata: [
                "height": "\(report.height)", "meta_root": "\(report.metaRoot.hex)",
                "records_replayed": "\(report.lanes.reduce(0) { $0 + $1.recordsReplayed })",
                "uncommitted_blocks_dropped": "\(report.uncommittedBlocksDropped)",
                "torn_tails_dropped": "\(report.wal.filter { $0.droppedTornTail != nil }.count)",
                "duration_ms": "\(report.durationNanoseconds / 1_000_000)",
            ])
        return engine
    }

    /// The HTTP server: the API's routes behind the connection guard; once it listens, the
    /// address is written to `<data_dir>/node.api` for the offline tools.
    static func makeApplication(
        api: NodeAPI, configuration: NodeConfiguration, metrics: NodeMetrics, logger: Logger
    ) -> some Service {
        let listen = "\(configuration.api.listenHost):\(configuration.api.listenPort)"
        return Application(
            router: api.router(),
            server: GuardedHTTP1Channel.builder(api: configuration.api, connections: api.connections, metrics: metrics),
            configuration: .init(
                address: .hostname(configuration.api.listenHost, port: configuration.api.listenPort), serverName: "rivellum-node",
                // A deep accept queue, so that a burst of connections waits for accept instead of
                // retrying SYNs for seconds (the kernel caps it at net.core.somaxconn).
                backlog: min(max(configuration.api.maxConnections, 256), 4_096)),
            onServerRunning: { channel in
                // Where offline tools find the running node (`snapshot create` asks it to snapshot).
                let address = channel.localAddress.flatMap { $0.port.map { port in "\(configuration.api.listenHost):\(port)" } } ?? listen
                try? PosixFileSystem().writeFileAtomically(
                    PathComponents.join(configuration.node.dataDirectory, NodeRunner.apiAddressFileName), bytes: Array((address + "\n").utf8))
                logger.info("listening", metadata: ["listen": "\(address)"])
            },
            logger: Logger(label: "rivellum_api"))
    }

    /// Closes the engine (again: idempotent, in case its service never ran) and turns what went
    /// wrong into the exit: an engine failure or a failed close is 74, a taken address 69.
    static func finish(engine: Engine, fatal: FatalEngineError, runError: (any Error)?, configuration: NodeConfiguration) throws {
        var closeError: EngineError?
        do {
            try engine.close()
        } catch {
            closeError = error
        }
        if let failure = fatal.error {
            throw NodeExit(ExitCodes.ioError, "rivellum-node: the engine failed: \(failure)")
        }
        if let closeError {
            throw NodeExit(ExitCodes.ioError, "rivellum-node: closing the engine failed: \(closeError)")
        }
        if let runError {
            if let stopped = runError as? SyncStopped { throw NodeExit(stopped.exitCode, "rivellum-node: \(stopped)") }
            if let stalled = runError as? SyncStalled { throw NodeExit(ExitCodes.unavailable, "rivellum-node sync: \(stalled)") }
            if isAddressInUse(runError) {
                let listen = "\(configuration.api.listenHost):\(configuration.api.listenPort)"
                throw NodeExit(ExitCodes.unavailable, "rivellum-node: cannot listen on \(listen): address already in use")
            }
            throw NodeExit(ExitCodes.ioError, "rivellum-node: \(runError)")
        }
    }
}

/// Whether binding the listener failed because the address is taken: decided by the errno of
/// NIO's `IOError` (the service group passes the server's error through as it is).
func isAddressInUse(_ error: any Error) -> Bool {
    (error as? IOError)?.errnoCode == EADDRINUSE
}

/// Keeps the engine going while the node runs: under `balanced`, syncs every
/// `wal_sync_interval_ms` (the window is bounded even when no commit arrives); stops the node
/// when the engine fails; on graceful shutdown, closes the engine (checkpoint: WAL synced, lanes
/// flushed) after the API has stopped.
struct EngineService: Service {
    let engine: Engine
    let configuration: NodeConfiguration
    let logger: Logger
    let fatal: FatalEngineError

    func run() async throws {
        let interval = Duration.milliseconds(Int64(min(configuration.wal.syncIntervalMilliseconds, 1_000)))
        try await cancelWhenGracefulShutdown {
            // Bounded: one round per interval until graceful shutdown (which cancels the sleep)
            // or a failure.
            while !Task.isCancelled {
                if let failure = fatal.error { throw failure }
                do {
                    try engine.tick()
                } catch let error as EngineError {
                    fatal.record(error)
                    throw error
                }
                try? await Task.sleep(for: interval)
            }
        }
        logger.info("closing the engine: syncing the WAL and flushing lanes")
        try engine.close()
    }
}

/// The first engine failure seen while serving; once set, the node stops.
final class FatalEngineError: Sendable {
    private let stored = Mutex<EngineError?>(nil)

    var error: EngineError? { stored.withLock { $0 } }

    /// Records `error` if it is the first; returns whether it was.
    @discardableResult
    func record(_ error: EngineError) -> Bool {
        stored.withLock { current in
            guard current == nil else { return false }
            current = error
            return true
        }
    }
}
