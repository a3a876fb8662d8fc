import Engine
import Logging
import NIOPosix
import PeerSync
import ServiceLifecycle
import Synchronization

/// What `/v1/status` shows of sync: the phase, the target, and each peer's state.
public final class SyncBoard: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var phase: SyncPhase
        public var targetHeight: UInt64?
        public var localHeight: UInt64
        public var peers: [(url: String, state: String, faults: Int)]

        public static func == (lhs: Snapshot, rhs: Snapshot) -> Bool {
            lhs.phase == rhs.phase && lhs.targetHeight == rhs.targetHeight && lhs.localHeight == rhs.localHeight
                && lhs.peers.elementsEqual(rhs.peers) { $0.url == $1.url && $0.state == $1.state && $0.faults == $1.faults }
        }
    }

    private let current = Mutex<Snapshot?>(nil)
    private let currentState = Atomic<Bool>(false)

    public init() {}

    public var snapshot: Snapshot? { current.withLock { $0 } }

    /// Whether the node's state is current (`WriterGate`): every peer has told it its height and
    /// none is ahead of it (an unreachable peer keeps a writer not current: it may hold blocks
    /// this node lost), or, for a follower, it has caught up with the quorum. Until then
    /// `POST /v1/blocks` is 503 `catching_up`, and so is a state read that does not say
    /// `allow_stale=true`. It stays current once it was (a follower's lag is in `/v1/status`).
    public var isCurrent: Bool { currentState.load(ordering: .acquiring) }

    func publish(_ snapshot: Snapshot) { current.withLock { $0 = snapshot } }

    func markCurrent() { currentState.store(true, ordering: .releasing) }
}

/// A tick waiting to be consumed: the ticker raises it (and yields a tick only if it was down),
/// the loop lowers it when it takes the tick.
final class PendingFlag: Sendable {
    private let pending = Atomic<Bool>(false)

    /// Raises the flag; true when it was down (a tick should be sent).
    func raise() -> Bool { !pending.exchange(true, ordering: .acquiringAndReleasing) }

    func lower() { pending.store(false, ordering: .releasing) }
}

/// The first error an apply task met, for the loop to throw once the stream has ended.
final class FailureBox: Sendable {
    private let stored = Mutex<(any Error)?>(nil)

    var error: (any Error)? { stored.withLock { $0 } }

    func record(_ error: any Error) { stored.withLock { if $0 == nil { $0 = error } } }
}

/// Why the sync service stopped the node; `NodeRunner` maps it to the exit code.
public struct SyncStopped: Error, Sendable, CustomStringConvertible {
    public var stop: SyncStop

    public var exitCode: Int32 {
        switch stop {
        case .fork: ExitCodes.dataError
        case .noQuorumPossible: ExitCodes.config
        case .needsStateSync: ExitCodes.needsStateSync
        }
    }

    public var description: String {
        switch stop {
        case .fork(let height, let local, let attested):
            "a fork at height \(height): this node holds MetaRoot \(local.hex), a quorum of peers attests \(attested.hex); nothing was "
                + "overwritten. Remedy: find which chain is right; to take the peers' chain, move the data directory aside and resync"
        case .noQuorumPossible(let usable, let quorum):
            "only \(usable) peer(s) are on this chain (chain id, lanes, genesis); sync.quorum needs \(quorum). Remedy: fix sync.peers or sync.quorum"
        case .needsStateSync(let next, let oldest):
            "too few peers to make a quorum still hold height \(next) (the others serve from \(oldest) on): state sync is needed. Remedy: restore a recent "
                + "snapshot, or resync from an archive peer (node.archive)"
        }
    }
}

/// How far a sync has got, for the one-shot command's progress line and events.
public struct SyncProgress: Sendable, Equatable {
    public var height: UInt64
    public var targetHeight: UInt64?
    public var phase: SyncPhase
    /// Blocks and their wire bytes applied since the sync started.
    public var blocksApplied: UInt64
    public var bytesApplied: UInt64
    public var elapsedNanoseconds: UInt64
}

/// The one-shot sync gave up: its height did not move for `seconds` (no quorum of peers
/// answered, or they never agreed) (exit 69).
public struct SyncStalled: Error, Sendable, CustomStringConvertible {
    public var height: UInt64
    public var seconds: Int

    public var description: String {
        "no progress for \(seconds) s at height \(height): no quorum of peers answered, or they do not agree. Remedy: check that the peers are up, reachable and on one chain (sync.quorum), then run sync again"
    }
}

/// Drives the `SyncMachine` over HTTP: feeds it ticks (every 100 ms) and the peers' answers,
/// sends what it asks for through the `PeerTransport`, and commits what it hands over through
/// the engine's verified path (`Engine.commit(_:attested:)`, on the commit pool). Holds no sync
/// decision of its own: what an answer means is `SyncExchange`'s, what to do is the machine's.
///
/// The daemon runs it until shutdown (`untilCaughtUp == false`); `rivellum-node sync` runs it
/// until the machine reports catching up, or until no quorum was heard for `stallSeconds`.
struct SyncService: Service {
    let engine: Engine
    let configuration: NodeConfiguration
    let transport: any PeerTransport
    let commitPool: NIOThreadPool
    /// Timeouts, backoff and progress rates (monotonic in production).
    let clock: any WALClock
    let metrics: NodeMetrics
    let board: SyncBoard
    let logger: Logger
    var machineConfiguration: SyncConfiguration
    var untilCaughtUp = false
    var stallSeconds: Int?
    /// Called about once a second, and with `true` once caught up.
    var onProgress: (@Sendable (SyncProgress, _ caughtUp: Bool) -> Void)?

    static let tickMilliseconds = 100
    static let requestTimeoutSeconds = 30.0

    init(
        engine: Engine, configuration: NodeConfiguration, transport: any PeerTransport, commitPool: NIOThreadPool, clock: any WALClock,
        metrics: NodeMetrics, board: SyncBoard, logger: Logger
    ) {
        self.engine = engine
        self.configuration = configuration
        self.transport = transport
        self.commitPool = commitPool
        self.clock = clock
        self.metrics = metrics
        self.board = board
        self.logger = logger
        machineConfiguration = Self.machineConfiguration(of: configuration)
    }

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.loop() }
    }

    /// Until graceful shutdown (which cancels it), a stop, an engine failure, or (one-shot)
    /// caught up: one machine step per input. Answers are never dropped (the stream is
    /// unbounded, and the machine bounds how many requests are out); ticks are coalesced, one
    /// waiting at most.
    private func loop() async throws {
        let roots = engine.stateRoots()
        var machine = SyncMachine(configuration: machineConfiguration, localHeight: roots.height, localMetaRoot: roots.metaRoot)
        let (inputs, continuation) = AsyncStream.makeStream(of: SyncInput.self, bufferingPolicy: .unbounded)
        let tickPending = PendingFlag()
        let engineFailure = FailureBox()
        var progress = ProgressCounter(startedAt: clock.nowNanoseconds(), stallNanoseconds: stallSeconds.map { UInt64($0) * 1_000_000_000 })
        logger.info("syncing", metadata: ["peers": "\(configuration.sync.peers.joined(separator: ","))", "height": "\(roots.height)"])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Bounded: one tick per interval until the group is cancelled.
                while !Task.isCancelled {
                    if tickPending.raise() { continuation.yield(.tick) }
                    try? await Task.sleep(for: .milliseconds(Self.tickMilliseconds))
                }
            }
            defer { group.cancelAll() }
            var gate = WriterGate(peerCount: configuration.sync.peers.count, follow: machineConfiguration.follow)
            // Bounded: the stream ends when the task is cancelled or an apply failed; each input is one step.
            for await input in inputs {
                let now = clock.nowNanoseconds()
                var outputs: [SyncOutput] = []
                if case .tick = input {
                    tickPending.lower()
                    let roots = engine.stateRoots()
                    if !machineConfiguration.follow, roots.height > machine.localHeight {
                        outputs += machine.handle(.committedLocally(height: roots.height, metaRoot: roots.metaRoot), now: now)
                    }
                }
                outputs += machine.handle(input, now: now)
                board.publish(snapshot(of: machine))
                if !board.isCurrent, gate.opens(after: input, outputs: outputs, localHeight: machine.localHeight) {
                    logger.info(
                        gate.wasBehind ? "caught up with the peers; the node is current" : "no peer is ahead of this node; the node is current",
                        metadata: ["height": "\(machine.localHeight)"])
                    board.markCurrent()
                }
                try perform(outputs, group: &group, continuation: continuation, engineFailure: engineFailure)
                if try report(input, outputs, machine: machine, progress: &progress, now: now) { break }
            }
        }
        if let failure = engineFailure.error { throw failure }
    }

    /// Counts what was applied, tells `onProgress`, and decides whether a one-shot sync is over:
    /// true once caught up; throws `SyncStalled` once no quorum was heard for the stall bound.
    private func report(_ input: SyncInput, _ outputs: [SyncOutput], machine: SyncMachine, progress: inout ProgressCounter, now: UInt64) throws -> Bool {
        for case .apply(let blocks, _) in outputs { progress.handedOver(blocks) }
        if case .applied(let height, _) = input { progress.applied(through: height) }
        let caughtUp = outputs.contains { if case .caughtUp = $0 { true } else { false } }
        let phase = machine.phase(now: now)
        // At most one report a second, and the last one.
        if caughtUp || progress.isDueForReport(now: now) {
            onProgress?(progress.snapshot(height: machine.localHeight, target: machine.targetHeight, phase: phase, now: now), caughtUp)
        }
        guard untilCaughtUp else { return false }
        if caughtUp { return true }
        if progress.hasStalled(height: machine.localHeight, now: now) {
            throw SyncStalled(height: machine.localHeight, seconds: stallSeconds ?? 0)
        }
        return false
    }

    static func machineConfiguration(of configuration: NodeConfiguration) -> SyncConfiguration {
        let sync = configuration.sync
        let anchor = Hash32(hex: sync.trustMetaRoot).map {
            ChainLink(height: sync.trustHeight, metaRoot: $0, previousMetaRoot: Hash32(bytes: [UInt8](repeating: 0, count: 32)))
        }
        return SyncConfiguration(
            chainID: configuration.node.chainID, laneCount: configuration.node.laneCount, peerCount: sync.peers.count, quorum: sync.quorum,
            trustAnchor: anchor, follow: sync.follow)
    }

    private func perform(
        _ outputs: [SyncOutput], group: inout ThrowingDiscardingTaskGroup<any Error>, continuation: AsyncStream<SyncInput>.Continuation,
        engineFailure: FailureBox
    ) throws {
        for output in outputs {
            switch output {
            case .request(let peer, let request):
                let url = configuration.sync.peers[peer]
                let transport = self.transport
                group.addTask {
                    let wire = SyncExchange.peerRequest(request, baseURL: url, timeoutSeconds: Self.requestTimeoutSeconds)
                    continuation.yield(SyncExchange.input(peer: peer, request: request, outcome: await transport.outcome(of: wire)))
                }
            case .apply(let blocks, let attested):
                let engine = self.engine, commitPool = self.commitPool
                group.addTask {
                    var refused: EngineError?
                    do {
                        _ = try await commitPool.runIfActive { () throws -> CommitResult? in try engine.commit(blocks, attested: attested) }
                    } catch let error as EngineError where error.kind == .peerBlockMismatch {
                        refused = error
                    } catch {
                        // The engine failed (or the pool stopped): sync ends, and the node with it.
                        engineFailure.record(error)
                        continuation.finish()
                        return
                    }
                    let roots = engine.stateRoots()
                    continuation.yield(.applied(height: roots.height, metaRoot: roots.metaRoot))
                    if let refused { continuation.yield(.applyRefused(height: refused.height ?? roots.height + 1, reason: refused.message)) }
                }
            case .peerFaulty(let peer, let why):
                metrics.countPeerFault(peer: configuration.sync.peers[peer])
                logger.warning("peer answered falsely; left alone for a while", metadata: ["peer": "\(configuration.sync.peers[peer])", "why": "\(why)"])
            case .caughtUp(let height):
                logger.info("caught up with the peers", metadata: ["height": "\(height)"])
            case .stop(let stop):
                let stopped = SyncStopped(stop: stop)
                logger.critical("sync stopped the node", metadata: ["reason": "\(stopped)"])
                throw stopped
            }
        }
    }

    private func snapshot(of machine: SyncMachine) -> SyncBoard.Snapshot {
        let now = clock.nowNanoseconds()
        let peers = machine.peers.enumerated().map { index, peer -> (url: String, state: String, faults: Int) in
            let state: String
            switch peer.state {
            case .unknown: state = "unknown"
            case .healthy: state = "healthy"
            case .backingOff: state = "backing_off"
            case .faulty: state = "faulty"
            case .otherChain: state = "other_chain"
            }
            return (configuration.sync.peers[index], state, peer.faults)
        }
        return SyncBoard.Snapshot(phase: machine.phase(now: now), targetHeight: machine.targetHeight, localHeight: machine.localHeight, peers: peers)
    }
}

/// What a sync has applied (blocks and wire bytes) and since when it has been stalled; bounded
/// by the window of blocks handed over and not yet applied.
struct ProgressCounter {
    let startedAt: UInt64
    let stallNanoseconds: UInt64?
    private var pendingBytes: [UInt64: Int] = [:]
    private var blocks: UInt64 = 0
    private var bytes: UInt64 = 0
    private var progressHeight: UInt64 = 0
    private var progressAt: UInt64?
    private var reportedAt: UInt64 = 0

    static let reportIntervalNanoseconds: UInt64 = 1_000_000_000

    init(startedAt: UInt64, stallNanoseconds: UInt64?) {
        self.startedAt = startedAt
        self.stallNanoseconds = stallNanoseconds
    }

    mutating func handedOver(_ handed: [SyncBlock]) {
        for block in handed { pendingBytes[block.height] = block.encodedBytes }
    }

    mutating func applied(through height: UInt64) {
        for (pending, size) in pendingBytes where pending <= height {
            blocks += 1
            bytes += UInt64(size)
            pendingBytes[pending] = nil
        }
    }

    mutating func isDueForReport(now: UInt64) -> Bool {
        guard elapsedNanoseconds(now, since: reportedAt) >= Self.reportIntervalNanoseconds else { return false }
        reportedAt = now
        return true
    }

    /// True once the height has not moved for the stall bound (no quorum heard, or peers that
    /// answer but never agree: either way no progress).
    mutating func hasStalled(height: UInt64, now: UInt64) -> Bool {
        guard let bound = stallNanoseconds else { return false }
        if height != progressHeight || progressAt == nil {
            progressHeight = height
            progressAt = now
        }
        return elapsedNanoseconds(now, since: progressAt ?? now) >= bound
    }

    func snapshot(height: UInt64, target: UInt64?, phase: SyncPhase, now: UInt64) -> SyncProgress {
        SyncProgress(height: height, targetHeight: target, phase: phase, blocksApplied: blocks, bytesApplied: bytes, elapsedNanoseconds: elapsedNanoseconds(now, since: startedAt))
    }
}

