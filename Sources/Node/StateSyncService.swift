import Engine
import FaultFS
import Logging
import NIOPosix
import PeerSync
import ServiceLifecycle
import Synchronization

/// Why state sync stopped without installing; `NodeRunner` maps it to the exit code.
public struct StateSyncStopped: Error, Sendable, CustomStringConvertible {
    public var stop: StateSyncStop

    public var exitCode: Int32 {
        switch stop {
        case .noQuorumPossible: ExitCodes.config
        case .noAttestedSnapshot: ExitCodes.needsStateSync
        }
    }

    public var description: String {
        switch stop {
        case .noQuorumPossible(let usable, let quorum):
            "state sync: only \(usable) peer(s) are on this chain; sync.quorum needs \(quorum). Remedy: fix sync.peers or sync.quorum"
        case .noAttestedSnapshot(let offered):
            "state sync: the peers offer \(offered) snapshot(s), none with a MetaRoot a quorum of peers (or the trust anchor) vouches for. "
                + "Remedy: restore a snapshot by hand (snapshot pull, snapshot restore), or add peers that keep snapshots (snapshot.interval_hours)"
        }
    }
}

/// What a state sync did, for its caller's report.
public struct StateSyncReport: Sendable, Equatable {
    public var name: String
    public var height: UInt64
    public var metaRoot: Hash32
    public var snapshotBytes: UInt64
    /// Chunk bytes written to staging in this run (what a resumed run did not fetch again is not in it).
    public var bytesDownloaded: UInt64
    public var resumed: Bool
    public var elapsedNanoseconds: UInt64
}

/// How far a state sync has got, for progress lines and events.
public struct StateSyncProgress: Sendable, Equatable {
    public var phase: StateSyncPhase
    public var snapshotBytes: UInt64
    public var bytesDownloaded: UInt64
    public var elapsedNanoseconds: UInt64
}

/// Drives the `StateSyncMachine` over HTTP and the staging area on the file system: ticks
/// (every 100 ms), the peers' answers through `StateSyncExchange`, and every write, check and
/// the install through `StateSyncStaging`, one at a time and in order, on `pool`. Holds no
/// decision of its own. Runs with the engine closed and the data directory locked by the caller.
struct StateSyncService {
    let configuration: NodeConfiguration
    let transport: any PeerTransport
    let pool: NIOThreadPool
    /// Timeouts, backoff and the slow-peer check (monotonic in production).
    let clock: any WALClock
    /// The clock the WAL started at the snapshot is given.
    let walClock: any WALClock
    let metrics: NodeMetrics
    let logger: Logger
    var machineConfiguration: StateSyncConfiguration
    var stallSeconds: Int?
    var onProgress: (@Sendable (StateSyncProgress) -> Void)?

    static let tickMilliseconds = 100
    static let requestTimeoutSeconds = 60.0

    init(
        configuration: NodeConfiguration, transport: any PeerTransport, pool: NIOThreadPool, clock: any WALClock, walClock: any WALClock,
        metrics: NodeMetrics, logger: Logger, heightFloor: UInt64
    ) {
        self.configuration = configuration
        self.transport = transport
        self.pool = pool
        self.clock = clock
        self.walClock = walClock
        self.metrics = metrics
        self.logger = logger
        machineConfiguration = StateSyncConfiguration(sync: SyncService.machineConfiguration(of: configuration))
        machineConfiguration.chunkBytes = UInt64(configuration.sync.chunkKiB) << 10
        machineConfiguration.heightFloor = heightFloor
    }

    private var fileSystem: PosixFileSystem { PosixFileSystem() }
    private var dataDirectory: String { configuration.node.dataDirectory }

    /// Until the snapshot is installed (returns), a stop (`StateSyncStopped`), a stall
    /// (`SyncStalled`), a local I/O failure (`SnapshotError`), or cancellation.
    func run() async throws -> StateSyncReport {
        let fileSystem = self.fileSystem, dataDirectory = self.dataDirectory
        let floor = machineConfiguration.heightFloor, journalClock = walClock, startedAt = clock.nowNanoseconds()
        let walDirectory = configuration.wal.walDirectory
        let resumption = try await pool.runIfActive {
            try StateSyncStaging.resume(fileSystem: fileSystem, dataDirectory: dataDirectory, walDirectory: walDirectory, heightFloor: floor, clock: journalClock)
        }
        var loop = StateSyncLoop(service: self, startedAt: startedAt)
        var machineConfiguration = self.machineConfiguration
        var staged: StateSyncStaged?
        switch resumption {
        case .installed(let download):
            return installFinished(download, startedAt: startedAt)
        case .nothingStaged(let heightFloor):
            machineConfiguration.heightFloor = heightFloor
        case .staged(let staging, let download):
            loop.staging = staging
            staged = StateSyncStaged(download, chunkBytes: machineConfiguration.chunkBytes)
            guard staged != nil else { break }
            loop.resumed = true
            logger.info(
                "state sync resumes from staging",
                metadata: [
                    "snapshot": "\(download.offer.name)", "height": "\(download.offer.height)", "files_verified": "\(download.verifiedPaths.count)",
                    "files": "\(download.manifest.files.count)",
                ])
        }
        let machine = StateSyncMachine(configuration: machineConfiguration, staged: staged)
        return try await loop.run(machine: machine)
    }

    /// A stop between the install's restore journal and its end: the restore is finished now.
    private func installFinished(_ download: StagedDownload, startedAt: UInt64) -> StateSyncReport {
        let offer = download.offer
        logger.notice(
            "state sync finished the install a stop interrupted; block sync continues from its height",
            metadata: ["snapshot": "\(offer.name)", "height": "\(offer.height)", "meta_root": "\(offer.metaRoot.hex)"])
        return StateSyncReport(
            name: offer.name, height: offer.height, metaRoot: offer.metaRoot, snapshotBytes: download.manifest.totalBytes, bytesDownloaded: 0,
            resumed: true, elapsedNanoseconds: elapsedNanoseconds(clock.nowNanoseconds(), since: startedAt))
    }
}

/// Stopped by SIGTERM or SIGINT before it installed (the next run resumes from staging).
public struct StateSyncInterrupted: Error, Sendable {}

/// Runs a `StateSyncService` as a service, so that SIGTERM and SIGINT stop it gracefully
/// (staging keeps what was written) through the same service lifecycle as the daemon.
final class StateSyncRun: Service, Sendable {
    let service: StateSyncService
    private let outcome = Mutex<StateSyncReport?>(nil)

    init(service: StateSyncService) {
        self.service = service
    }

    var report: StateSyncReport? { outcome.withLock { $0 } }

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            let report = try await self.service.run()
            self.outcome.withLock { $0 = report }
        }
    }
}

/// The state-sync loop's own state: the staging area once chosen, bytes written, progress.
struct StateSyncLoop {
    let service: StateSyncService
    let startedAt: UInt64
    var staging: StateSyncStaging?
    var resumed = false
    var bytesDownloaded: UInt64 = 0
    var lastProgressAt: UInt64
    var reportedAt: UInt64 = 0
    var report: StateSyncReport?

    init(service: StateSyncService, startedAt: UInt64) {
        self.service = service
        self.startedAt = startedAt
        lastProgressAt = startedAt
    }

    mutating func run(machine: StateSyncMachine) async throws -> StateSyncReport {
        var machine = machine
        let (inputs, continuation) = AsyncStream.makeStream(of: StateSyncInput.self, bufferingPolicy: .unbounded)
        let tickPending = PendingFlag()
        service.logger.info("state sync starts", metadata: ["peers": "\(service.configuration.sync.peers.joined(separator: ","))"])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Bounded: one tick per interval until the group is cancelled.
                while !Task.isCancelled {
                    if tickPending.raise() { continuation.yield(.tick) }
                    try? await Task.sleep(for: .milliseconds(StateSyncService.tickMilliseconds))
                }
            }
            defer { group.cancelAll() }
            continuation.yield(.tick)
            // Bounded: each input is one step; the loop ends at install, a stop or a failure.
            for await input in inputs {
                let now = service.clock.nowNanoseconds()
                if case .tick = input { tickPending.lower() }
                let phaseBefore = machine.phase
                let outputs = machine.handle(input, now: now)
                if machine.phase != phaseBefore { lastProgressAt = now }
                try await perform(outputs, machine: machine, group: &group, continuation: continuation, now: now)
                // Local work (staging writes, checks, the install) is progress, however long it took.
                if outputs.contains(where: Self.isLocalWork) { lastProgressAt = service.clock.nowNanoseconds() }
                if report != nil { break }
                try checkStall(machine: machine, now: now)
            }
        }
        guard let report else { throw CancellationError() }
        return report
    }

    static func isLocalWork(_ output: StateSyncOutput) -> Bool {
        switch output {
        case .stage, .writeChunk, .checkFile, .discardFile, .install: true
        default: false
        }
    }

    private mutating func perform(
        _ outputs: [StateSyncOutput], machine: StateSyncMachine, group: inout ThrowingDiscardingTaskGroup<any Error>,
        continuation: AsyncStream<StateSyncInput>.Continuation, now: UInt64
    ) async throws {
        for output in outputs {
            switch output {
            case .request(let peer, let request):
                send(request, to: peer, group: &group, continuation: continuation)
            case .stage(let offer, let manifestBytes):
                try await stage(offer, manifestBytes: manifestBytes, sources: machine)
            case .writeChunk(let path, let offset, let bytes):
                let staging = try requireStaging()
                try await onPool { try staging.writeChunk(path: path, offset: offset, bytes: bytes) }
                bytesDownloaded += UInt64(bytes.count)
            case .checkFile(let path):
                let staging = try requireStaging()
                let intact = try await onPool { try staging.checkFile(path: path) }
                if !intact { service.logger.warning("a staged file does not hash to its manifest's SHA-256; fetched again", metadata: ["path": "\(path)"]) }
                continuation.yield(.fileChecked(path: path, intact: intact))
            case .discardFile(let path):
                let staging = try requireStaging()
                try await onPool { try staging.discardFile(path: path) }
            case .install:
                continuation.yield(try await install())
            case .peerFaulty(let peer, let why):
                let url = service.configuration.sync.peers[peer]
                service.metrics.countPeerFault(peer: url)
                service.logger.warning("peer answered falsely; left alone for a while", metadata: ["peer": "\(url)", "why": "\(why)"])
            case .stateSynced(let height, let metaRoot):
                finish(height: height, metaRoot: metaRoot, now: now)
            case .stop(let stop):
                let stopped = StateSyncStopped(stop: stop)
                service.logger.error("state sync stopped", metadata: ["reason": "\(stopped)"])
                throw stopped
            }
        }
        reportProgress(machine: machine, now: now)
    }

    private func send(
        _ request: StateSyncRequest, to peer: Int, group: inout ThrowingDiscardingTaskGroup<any Error>, continuation: AsyncStream<StateSyncInput>.Continuation
    ) {
        let url = service.configuration.sync.peers[peer]
        let transport = service.transport
        group.addTask {
            let wire = StateSyncExchange.peerRequest(request, baseURL: url, timeoutSeconds: StateSyncService.requestTimeoutSeconds)
            continuation.yield(StateSyncExchange.input(peer: peer, request: request, outcome: await transport.outcome(of: wire)))
        }
    }

    private mutating func stage(_ offer: SnapshotOffer, manifestBytes: [UInt8], sources machine: StateSyncMachine) async throws {
        let fileSystem = PosixFileSystem(), dataDirectory = service.configuration.node.dataDirectory
        staging = try await onPool {
            try StateSyncStaging.begin(fileSystem: fileSystem, dataDirectory: dataDirectory, offer: offer, manifestBytes: manifestBytes)
        }
        service.logger.notice(
            "state sync chose a snapshot",
            metadata: ["snapshot": "\(offer.name)", "height": "\(offer.height)", "meta_root": "\(offer.metaRoot.hex)", "size_bytes": "\(offer.sizeBytes)"])
    }

    /// Verifies the staged snapshot fully and restores it; a refusal discards staging and tells
    /// the machine (which refuses the snapshot's digest and chooses another).
    private func install() async throws -> StateSyncInput {
        let staging = try requireStaging()
        let walDirectory = service.configuration.wal.walDirectory, walClock = service.walClock
        let id = "state-sync-\(staging.offer.height)-\(walClock.nowNanoseconds() / 1_000_000_000)"
        service.logger.info("state sync: every file staged and verified; verifying the snapshot and installing it", metadata: ["height": "\(staging.offer.height)"])
        do {
            let plan = try await onPool { try staging.install(walDirectory: walDirectory, id: id, clock: walClock) }
            return .installed(height: plan.manifest.height, metaRoot: staging.offer.metaRoot)
        } catch let error as SnapshotError where error.refusesTheSnapshot {
            service.logger.error("the staged snapshot failed verification; it is discarded", metadata: ["error": "\(error)"])
            let fileSystem = staging.fileSystem, dataDirectory = staging.dataDirectory
            try await onPool { try StateSyncStaging.discard(fileSystem: fileSystem, dataDirectory: dataDirectory) }
            return .installRefused(reason: error.description)
        }
    }

    private mutating func finish(height: UInt64, metaRoot: Hash32, now: UInt64) {
        let snapshotBytes = staging?.manifest.totalBytes ?? 0
        report = StateSyncReport(
            name: staging?.offer.name ?? "", height: height, metaRoot: metaRoot, snapshotBytes: snapshotBytes, bytesDownloaded: bytesDownloaded,
            resumed: resumed, elapsedNanoseconds: elapsedNanoseconds(now, since: startedAt))
        service.logger.notice(
            "state sync installed the snapshot; block sync continues from its height",
            metadata: ["height": "\(height)", "meta_root": "\(metaRoot.hex)", "bytes_downloaded": "\(bytesDownloaded)"])
    }

    private func requireStaging() throws -> StateSyncStaging {
        guard let staging else { preconditionFailure("the machine stages a snapshot before it writes, checks or installs one") }
        return staging
    }

    private func onPool<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await service.pool.runIfActive(work)
    }

    private mutating func reportProgress(machine: StateSyncMachine, now: UInt64) {
        guard let onProgress = service.onProgress, elapsedNanoseconds(now, since: reportedAt) >= ProgressCounter.reportIntervalNanoseconds || report != nil
        else { return }
        reportedAt = now
        onProgress(
            StateSyncProgress(
                phase: machine.phase, snapshotBytes: machine.chosen?.sizeBytes ?? 0, bytesDownloaded: bytesDownloaded,
                elapsedNanoseconds: elapsedNanoseconds(now, since: startedAt)))
    }

    /// No chunk written and no phase change for the stall bound: give up (exit 69).
    private func checkStall(machine: StateSyncMachine, now: UInt64) throws {
        guard let seconds = service.stallSeconds, elapsedNanoseconds(now, since: lastProgressAt) >= UInt64(seconds) * 1_000_000_000 else { return }
        throw SyncStalled(height: 0, seconds: seconds)
    }
}
