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
    private let writes = Atomic<Bool>(false)

    public init() {}

    public var snapshot: Snapshot? { current.withLock { $0 } }

    /// Whether a writer with peers may take new blocks: once it has caught up with them, or once
    /// every peer has answered (or failed) and no quorum can be heard (it cannot be behind
    /// anyone it can hear). Until then `POST /v1/blocks` is 503 `catching_up`.
    public var writesAllowed: Bool { writes.load(ordering: .acquiring) }

    func publish(_ snapshot: Snapshot) { current.withLock { $0 = snapshot } }

    func allowWrites() { writes.store(true, ordering: .releasing) }
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
            "no peer holds height \(next) any more (the oldest any serves is \(oldest)): state sync is needed. Remedy: restore a recent "
                + "snapshot, or resync from an archive peer (node.archive)"
        }
    }
}

/// Drives the `SyncMachine` over HTTP: feeds it ticks (every 100 ms) and the peers' answers,
/// sends what it asks for through the `PeerTransport`, and commits what it hands over through
/// the engine's verified path (`Engine.commit(_:attested:)`, on the commit pool). Holds no sync
/// decision of its own: what an answer means is `SyncExchange`'s, what to do is the machine's.
struct SyncService: Service {
    let engine: Engine
    let configuration: NodeConfiguration
    let transport: any PeerTransport
    let commitPool: NIOThreadPool
    let clock: any WALClock
    let metrics: NodeMetrics
    let board: SyncBoard
    let logger: Logger

    static let tickMilliseconds = 100
    static let requestTimeoutSeconds = 30.0

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.loop() }
    }

    /// Until graceful shutdown (which cancels it) or a stop: one machine step per input.
    private func loop() async throws {
        let roots = engine.stateRoots()
        var machine = SyncMachine(configuration: machineConfiguration, localHeight: roots.height, localMetaRoot: roots.metaRoot)
        let (inputs, continuation) = AsyncStream.makeStream(of: SyncInput.self, bufferingPolicy: .bufferingNewest(1_024))
        logger.info("syncing", metadata: ["peers": "\(configuration.sync.peers.joined(separator: ","))", "height": "\(roots.height)"])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Bounded: one tick per interval until graceful shutdown cancels the group.
                while !Task.isCancelled {
                    continuation.yield(.tick)
                    try? await Task.sleep(for: .milliseconds(Self.tickMilliseconds))
                }
            }
            defer { group.cancelAll() }
            var answered = Set<Int>()
            // Bounded: the stream ends when the task is cancelled; each input is one step.
            for await input in inputs {
                if case .status(let peer, _) = input { answered.insert(peer) }
                var outputs: [SyncOutput] = []
                let roots = engine.stateRoots()
                if case .tick = input, roots.height > machine.localHeight {
                    outputs += machine.handle(.committedLocally(height: roots.height, metaRoot: roots.metaRoot), now: clock.nowNanoseconds())
                }
                outputs += machine.handle(input, now: clock.nowNanoseconds())
                board.publish(snapshot(of: machine))
                if !board.writesAllowed, outputs.contains(where: { if case .caughtUp = $0 { true } else { false } })
                    || (answered.count == configuration.sync.peers.count && machine.targetHeight == nil)
                {
                    if machine.targetHeight == nil { logger.warning("no quorum of peers answers; taking new blocks without catching up") }
                    board.allowWrites()
                }
                try perform(outputs, group: &group, continuation: continuation)
            }
        }
    }

    var machineConfiguration: SyncConfiguration {
        let sync = configuration.sync
        let anchor = Hash32(hex: sync.trustMetaRoot).map {
            ChainLink(height: sync.trustHeight, metaRoot: $0, previousMetaRoot: Hash32(bytes: [UInt8](repeating: 0, count: 32)))
        }
        return SyncConfiguration(
            chainID: configuration.node.chainID, laneCount: configuration.node.laneCount, peerCount: sync.peers.count, quorum: sync.quorum,
            trustAnchor: anchor, follow: sync.follow)
    }

    private func perform(
        _ outputs: [SyncOutput], group: inout ThrowingTaskGroup<Void, any Error>, continuation: AsyncStream<SyncInput>.Continuation
    ) throws {
        for output in outputs {
            switch output {
            case .request(let peer, let request):
                let url = configuration.sync.peers[peer]
                let transport = self.transport
                group.addTask {
                    let wire = SyncExchange.peerRequest(request, baseURL: url, timeoutSeconds: Self.requestTimeoutSeconds)
                    let outcome: Result<PeerResponse, PeerTransportError>
                    do throws(PeerTransportError) {
                        outcome = .success(try await transport.exchange(wire))
                    } catch {
                        outcome = .failure(error)
                    }
                    continuation.yield(SyncExchange.input(peer: peer, request: request, outcome: outcome))
                }
            case .apply(let blocks, let attested):
                let engine = self.engine, commitPool = self.commitPool
                group.addTask {
                    let refused: EngineError?
                    do {
                        _ = try await commitPool.runIfActive { () throws -> CommitResult? in try engine.commit(blocks, attested: attested) }
                        refused = nil
                    } catch let error as EngineError where error.kind == .peerBlockMismatch {
                        refused = error
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
