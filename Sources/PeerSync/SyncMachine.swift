import Engine

/// How a node syncs: its chain's identity, its peers and quorum, and the bounds on everything
/// the machine holds and asks for.
public struct SyncConfiguration: Sendable, Equatable {
    public var chainID: String
    public var laneCount: Int
    public var peerCount: Int
    /// Peers that must report the same MetaRoot at a height before it is trusted; 0 means a
    /// majority of the peers.
    public var quorum: Int
    /// A height and its MetaRoot obtained out of band, trusted as if a quorum reported it.
    public var trustAnchor: ChainLink?
    /// Keep applying new blocks after catching up (a standby or read replica).
    public var follow: Bool
    /// The highest height to sync to (`rivellum-node sync --to-height`); nil: the peers' height.
    public var heightMax: UInt64?
    public var linksPerRequest = 512
    public var blocksPerRequest = 128
    public var requestsPerPeerMax = 2
    public var requestsMax = 8
    /// Heights above the local one that votes and buffered blocks may cover.
    public var windowBlocks: UInt64 = 4_096
    public var applyBatchMax = 256
    /// Operation bytes of fetched blocks held before they can be applied.
    public var bufferBytesMax = 64 << 20
    public var backoffInitialNanoseconds: UInt64 = 250_000_000
    public var backoffMaxNanoseconds: UInt64 = 30_000_000_000
    public var faultyNanoseconds: UInt64 = 600_000_000_000
    public var statusRefreshNanoseconds: UInt64 = 1_000_000_000
    public var requestTimeoutNanoseconds: UInt64 = 60_000_000_000

    public init(
        chainID: String, laneCount: Int, peerCount: Int, quorum: Int = 0, trustAnchor: ChainLink? = nil, follow: Bool = false, heightMax: UInt64? = nil
    ) {
        precondition(peerCount >= 1 && peerCount <= 64 && quorum >= 0 && quorum <= peerCount, "1...64 peers and a quorum among them")
        self.heightMax = heightMax
        self.chainID = chainID
        self.laneCount = laneCount
        self.peerCount = peerCount
        self.quorum = quorum
        self.trustAnchor = trustAnchor
        self.follow = follow
    }

    /// The quorum in peers: the configured one, or a majority.
    public var resolvedQuorum: Int { quorum > 0 ? quorum : peerCount / 2 + 1 }

    public var genesisDigest: Hash32 { Engine.genesisDigest(chainID: chainID, laneCount: laneCount) }
}

/// Every sync decision, with no I/O of its own: which peer to ask for what, when to retry, which
/// MetaRoots are attested, which blocks may be applied, which peer lied, and when to stop. The
/// node drives it over HTTP (`SyncService`), the simulator over a simulated network; both feed
/// `handle` the same inputs. Bounded: requests in flight (per peer and in all), the window of
/// heights it keeps votes and blocks for, and every list it returns.
///
/// Trust: a height's MetaRoot is attested when `resolvedQuorum` peers report it in their chain
/// links, or it is the trust anchor's. Blocks are applied only up to the highest height attested
/// without a gap, each with its attested root, and the engine checks every block against it
/// before writing anything. A quorum attesting another root at the local height is a fork.
public struct SyncMachine: Sendable {
    public let configuration: SyncConfiguration
    public private(set) var localHeight: UInt64
    public private(set) var localMetaRoot: Hash32
    public private(set) var peers: [SyncPeer]
    /// votes[height][root]: the peers that reported `root` at `height` (heights from the local
    /// one up to the window).
    private var votes: [UInt64: [Hash32: Set<Int>]] = [:]
    private var buffered: [UInt64: (block: SyncBlock, peer: Int)] = [:]
    private var bufferedBytes = 0
    /// Block ranges in flight by first height: who was asked and when.
    private var blockRequests: [UInt64: (peer: Int, count: Int, sentAt: UInt64)] = [:]
    private var applyInFlight = false
    /// The peer whose turn it is to be asked for the next block range, all else equal.
    private var nextBlocksPeer = 0
    private var reportedCaughtUp = false
    private var stopped: SyncStop?

    public init(configuration: SyncConfiguration, localHeight: UInt64, localMetaRoot: Hash32) {
        self.configuration = configuration
        self.localHeight = localHeight
        self.localMetaRoot = localMetaRoot
        peers = Array(repeating: SyncPeer(), count: configuration.peerCount)
    }

    // MARK: Reading

    /// The height a quorum of healthy peers serve, capped by `heightMax`: what catching up aims
    /// at (nil without a quorum).
    public var targetHeight: UInt64? {
        let heights = peers.compactMap(\.lastKnownStatus?.servableHeight).sorted(by: >)
        let quorum = configuration.resolvedQuorum
        return heights.count >= quorum ? min(heights[quorum - 1], ceiling) : nil
    }

    /// The highest height the machine asks for or applies.
    private var ceiling: UInt64 { configuration.heightMax ?? .max }

    /// The end of the window of heights votes and blocks are kept for.
    private var windowEnd: UInt64 { max(min(localHeight + configuration.windowBlocks, ceiling), localHeight) }

    /// The root trusted at `height`, if any.
    public func attestedRoot(at height: UInt64) -> Hash32? {
        if let anchor = configuration.trustAnchor, anchor.height == height { return anchor.metaRoot }
        return votes[height]?.first { $0.value.count >= configuration.resolvedQuorum }?.key
    }

    /// The highest height attested with every height from the local one's next up to it.
    public var attestedThrough: UInt64 {
        var height = localHeight
        // Bounded by the window.
        while height < windowEnd, attestedRoot(at: height + 1) != nil { height += 1 }
        return height
    }

    public func phase(now: UInt64) -> SyncPhase {
        guard let target = targetHeight else {
            // Before every peer has answered once, it is too early to call it stalled.
            return peers.contains(where: \.isFirstAnswerAwaited) ? .catchingUp : .stalled
        }
        if localHeight < target { return peers.contains(where: \.isAskable) ? .catchingUp : .stalled }
        return configuration.follow ? .following : .synced
    }

    // MARK: Stepping

    /// Feeds one input at time `now` (nanoseconds, the driver's clock) and returns what to do.
    public mutating func handle(_ input: SyncInput, now: UInt64) -> [SyncOutput] {
        guard stopped == nil else { return [] }
        var outputs: [SyncOutput] = []
        switch input {
        case .tick:
            expireRequests(now: now)
        case .status(let peer, let result):
            receiveStatus(peer, result, now: now, into: &outputs)
        case .links(let peer, let from, let result):
            // Only the answer to the links request in flight: one that was given up on (the
            // peer lied meanwhile, or it timed out) is not taken.
            guard peers[peer].linksInFlight, peers[peer].linksAskedFrom == from else { break }
            peers[peer].linksInFlight = false
            receiveLinks(peer, from: from, result, now: now, into: &outputs)
        case .blocks(let peer, let from, let result):
            receiveBlocks(peer, from: from, result, now: now, into: &outputs)
        case .applied(let height, let metaRoot):
            applyInFlight = false
            if height > localHeight { advance(to: height, metaRoot: metaRoot) }
        case .applyRefused(let height, let reason):
            refuseApplied(height, reason: reason, now: now, into: &outputs)
        case .committedLocally(let height, let metaRoot):
            // While an apply is out, the engine's height moves by that apply (a writer takes no
            // blocks of its own before it has caught up): it is taken from `.applied`, after
            // the batch is durable, not from a tick that read the engine half-way.
            if !applyInFlight, height > localHeight { advance(to: height, metaRoot: metaRoot) }
        }
        if let stop = checkStops(now: now) {
            stopped = stop
            return outputs + [.stop(stop)]
        }
        plan(now: now, into: &outputs)
        return outputs
    }

    // MARK: Inputs

    /// Consecutive statuses naming another chain before a peer is never used again.
    private mutating func receiveStatus(_ peer: Int, _ result: Result<PeerStatus, PeerFault>, now: UInt64, into outputs: inout [SyncOutput]) {
        // Only the answer to the status request in flight (a duplicate, or one given up on, is not taken).
        guard peers[peer].statusInFlight else { return }
        switch peers[peer].receiveStatus(result, configuration: configuration, now: now) {
        case .taken: break
        case .penalize(let fault): punish(peer, fault, now: now, into: &outputs)
        case .otherChain(let why): outputs.append(.peerFaulty(peer: peer, why: why))
        }
    }

    private mutating func receiveLinks(
        _ peer: Int, from: UInt64, _ result: Result<[ChainLink], PeerFault>, now: UInt64, into outputs: inout [SyncOutput]
    ) {
        let links: [ChainLink]
        switch result {
        case .failure(let fault): return punish(peer, fault, now: now, into: &outputs)
        case .success(let answer): links = answer
        }
        let consecutive = links.indices.allSatisfy { links[$0].height == from + UInt64($0) }
        let chained = zip(links, links.dropFirst()).allSatisfy { $0.metaRoot == $1.previousMetaRoot }
        guard consecutive, chained, links.count <= configuration.linksPerRequest else {
            return punish(peer, .misbehaved("chain links that do not run on from \(from)"), now: now, into: &outputs)
        }
        guard !links.isEmpty else { return punishEmpty(peer, from: from, what: "links", now: now, into: &outputs) }
        // Bounded by the answer (at most linksPerRequest).
        for link in links where link.height >= localHeight && link.height <= windowEnd {
            if let earlier = votes[link.height]?.first(where: { $0.value.contains(peer) })?.key, earlier != link.metaRoot {
                return punish(peer, .misbehaved("two MetaRoots for height \(link.height)"), now: now, into: &outputs)
            }
            votes[link.height, default: [:]][link.metaRoot, default: []].insert(peer)
        }
        peers[peer].linkedThrough = max(peers[peer].linkedThrough, links.last!.height)
    }

    private mutating func receiveBlocks(
        _ peer: Int, from: UInt64, _ result: Result<[SyncBlock], PeerFault>, now: UInt64, into outputs: inout [SyncOutput]
    ) {
        guard let request = blockRequests[from], request.peer == peer else { return }
        blockRequests[from] = nil
        peers[peer].blocksInFlight -= 1
        let blocks: [SyncBlock]
        switch result {
        case .failure(let fault):
            // The range is asked for again, from whoever is free.
            Probe.syncRangeRefetched.hit()
            return punish(peer, fault, now: now, into: &outputs)
        case .success(let answer): blocks = answer
        }
        guard blocks.count <= request.count, blocks.indices.allSatisfy({ blocks[$0].height == from + UInt64($0) }) else {
            return punish(peer, .misbehaved("blocks that are not the \(request.count) asked for from \(from)"), now: now, into: &outputs)
        }
        guard !blocks.isEmpty else { return punishEmpty(peer, from: from, what: "blocks", now: now, into: &outputs) }
        if let lie = blocks.first(where: { block in attestedRoot(at: block.height).map { $0 != block.metaRoot } ?? false }) {
            Probe.syncForkedBlockRefused.hit()
            return punish(peer, .misbehaved("block \(lie.height) has a MetaRoot the quorum does not attest"), now: now, into: &outputs)
        }
        for block in blocks where block.height > localHeight && buffered[block.height] == nil {
            buffered[block.height] = (block, peer)
            bufferedBytes += Self.operationBytes(block)
        }
    }

    private mutating func advance(to height: UInt64, metaRoot: Hash32) {
        assert(height > localHeight, "the local height only moves forward")
        localHeight = height
        localMetaRoot = metaRoot
        // Bounded by the window: drop what is now below the local height.
        dropBuffered { $0.key <= height }
        votes = votes.filter { $0.key >= height }
    }

    private mutating func dropBuffered(where drop: ((key: UInt64, value: (block: SyncBlock, peer: Int))) -> Bool) {
        for entry in buffered where drop(entry) {
            buffered[entry.key] = nil
            bufferedBytes -= Self.operationBytes(entry.value.block)
        }
        assert(bufferedBytes >= 0 && (!buffered.isEmpty || bufferedBytes == 0), "the buffer's byte count")
    }

    static func operationBytes(_ block: SyncBlock) -> Int {
        block.lanes.reduce(0) { total, lane in lane.operations.reduce(total) { $0 + LaneBlockRecord.encodedBytes(of: $1) } }
    }

    private mutating func refuseApplied(_ height: UInt64, reason: String, now: UInt64, into outputs: inout [SyncOutput]) {
        applyInFlight = false
        guard let entry = buffered[height] else { return }
        Probe.syncBlockRefusedByEngine.hit()
        Probe.syncRangeRefetched.hit()
        let liar = entry.peer
        dropBuffered { $0.value.peer == liar }
        punish(liar, .misbehaved("block \(height) refused: \(reason)"), now: now, into: &outputs)
    }

    /// Unreachable: back off, doubling. Misbehaved: faulty for `faultyNanoseconds`.
    private mutating func punish(_ peer: Int, _ fault: PeerFault, now: UInt64, into outputs: inout [SyncOutput]) {
        guard peers[peer].penalize(fault, configuration: configuration, now: now), case .misbehaved(let why) = fault else { return }
        // A peer that lied once does not vote: its reports are withdrawn, and once it is
        // healthy again its links are asked for from the local height on.
        for height in votes.keys {
            for root in votes[height]!.keys { votes[height]![root]!.remove(peer) }
        }
        peers[peer].linkedThrough = 0
        peers[peer].linksInFlight = false
        // Its answers in flight are not waited for (nor taken: the request is gone).
        for (from, request) in blockRequests where request.peer == peer {
            blockRequests[from] = nil
            peers[peer].blocksInFlight -= 1
        }
        outputs.append(.peerFaulty(peer: peer, why: why))
    }

    /// An empty answer from a peer whose last status said it serves `from` is a lie; otherwise
    /// it is a peer that has not got there yet (back off).
    private mutating func punishEmpty(_ peer: Int, from: UInt64, what: String, now: UInt64, into outputs: inout [SyncOutput]) {
        let claimed = peers[peer].status.map { $0.servableHeight >= from && ($0.oldestServableHeight ?? .max) <= from } ?? false
        punish(peer, claimed ? .misbehaved("no \(what) from \(from), though it serves that height") : .unreachable("no \(what) from \(from)"), now: now, into: &outputs)
    }

    /// Forgets requests a driver never answered (bounded time), backing their peers off.
    private mutating func expireRequests(now: UInt64) {
        var ignored: [SyncOutput] = []
        for peer in peers.indices where peers[peer].hasExpired(now: now, timeout: configuration.requestTimeoutNanoseconds) {
            peers[peer].statusInFlight = false
            peers[peer].linksInFlight = false
            punish(peer, .unreachable("a status or links request timed out"), now: now, into: &ignored)
        }
        for (from, request) in blockRequests where elapsedNanoseconds(now, since: request.sentAt) >= configuration.requestTimeoutNanoseconds {
            Probe.syncRangeRefetched.hit()
            blockRequests[from] = nil
            peers[request.peer].blocksInFlight -= 1
            punish(request.peer, .unreachable("blocks from \(from) timed out"), now: now, into: &ignored)
        }
    }

    // MARK: Decisions

    private func checkStops(now: UInt64) -> SyncStop? {
        let quorum = configuration.resolvedQuorum
        let usable = peers.filter { !$0.isOtherChain }.count
        if usable < quorum { return .noQuorumPossible(usable: usable, quorum: quorum) }
        if localHeight > 0, let attested = attestedRoot(at: localHeight), attested != localMetaRoot {
            return .fork(height: localHeight, local: localMetaRoot, attested: attested)
        }
        return retentionStop(usable: usable, quorum: quorum)
    }

    /// Peers that have committed the next height but no longer hold it (by their last known
    /// status: retention only moves up) can never vouch for it or serve it. When the peers left
    /// cannot make a quorum (or, with a trust anchor at that height, there is no peer left to
    /// serve it), no quorum can ever attest it: state sync is needed. A peer not heard from, or
    /// behind, may still hold it later and is counted as able to. `oldestServable` is the lowest
    /// height those peers still serve.
    private func retentionStop(usable: Int, quorum: Int) -> SyncStop? {
        let next = localHeight + 1
        let retired = peers.compactMap { peer -> UInt64? in
            guard !peer.isOtherChain, let status = peer.lastKnownStatus, status.servableHeight >= next else { return nil }
            guard let oldest = status.oldestServableHeight else { return status.servableHeight + 1 }
            return oldest > next ? oldest : nil
        }
        let needed = configuration.trustAnchor?.height == next ? 1 : quorum
        guard !retired.isEmpty, usable - retired.count < needed else { return nil }
        return .needsStateSync(nextHeight: next, oldestServable: retired.min()!)
    }

    /// Asks for what is missing, within the bounds, and hands over what may be applied.
    private mutating func plan(now: UInt64, into outputs: inout [SyncOutput]) {
        for peer in peers.indices {
            if peers[peer].askStatusIfDue(now: now, refresh: configuration.statusRefreshNanoseconds) { outputs.append(.request(peer: peer, .status)) }
        }
        requestLinks(now: now, into: &outputs)
        // A writer fetches while it is behind the quorum's height (which can rise after it first
        // caught up, as late statuses come in: its gate stays shut while a peer is ahead); its
        // own commits move it after that, and links keep checking them against the peers (a
        // second writer is a fork).
        if configuration.follow || !reportedCaughtUp || targetHeight.map({ localHeight < $0 }) == true {
            requestBlocks(now: now, into: &outputs)
            emitApply(into: &outputs)
        }
        if let target = targetHeight, localHeight >= target, !reportedCaughtUp, isLocalHeightConfirmed(target: target) {
            reportedCaughtUp = true
            outputs.append(.caughtUp(height: localHeight))
        }
    }

    /// Whether the quorum has vouched for the local chain before it counts as caught up: genesis
    /// needs nothing; a node at the target needs the attested root at its height to be its own
    /// (a fork is caught by `checkStops` first); a node above the target is ahead of a quorum,
    /// which cannot vouch for heights it does not hold (later links keep checking).
    private func isLocalHeightConfirmed(target: UInt64) -> Bool {
        localHeight == 0 || localHeight > target || attestedRoot(at: localHeight) == localMetaRoot
    }

    private var requestsInFlight: Int { blockRequests.count + peers.filter(\.linksInFlight).count }

    private mutating func requestLinks(now: UInt64, into outputs: inout [SyncOutput]) {
        for peer in peers.indices where requestsInFlight < configuration.requestsMax {
            guard let status = peers[peer].status, peers[peer].isAskable, !peers[peer].linksInFlight else { continue }
            // Links only for heights it still holds (below its retention it has none).
            let from = max(max(1, localHeight), peers[peer].linkedThrough + 1, status.oldestServableHeight ?? 1)
            guard status.oldestServableHeight != nil, from <= min(status.servableHeight, windowEnd) else { continue }
            let count = Int(min(UInt64(configuration.linksPerRequest), min(status.servableHeight, windowEnd) - from + 1))
            peers[peer].linksInFlight = true
            peers[peer].linksAskedFrom = from
            peers[peer].linksSentAt = now
            outputs.append(.request(peer: peer, .links(from: from, count: count)))
        }
    }

    private mutating func requestBlocks(now: UInt64, into outputs: inout [SyncOutput]) {
        let through = attestedThrough
        var from = localHeight + 1
        // Bounded by the attested window, one range per round; nothing past the buffer's bound.
        while from <= through && requestsInFlight < configuration.requestsMax
            && (bufferedBytes < configuration.bufferBytesMax || from == localHeight + 1)
        {
            if buffered[from] != nil {
                from += 1
                continue
            }
            if let inFlight = blockRequests[from] {
                from += UInt64(inFlight.count)
                continue
            }
            var count = Int(min(UInt64(configuration.blocksPerRequest), through - from + 1))
            if let next = blockRequests.keys.filter({ $0 > from }).min() { count = min(count, Int(next - from)) }
            let candidates = peers.indices.filter { peer in
                peers[peer].isAskable && peers[peer].blocksInFlight < configuration.requestsPerPeerMax
                    && (peers[peer].status?.servableHeight ?? 0) >= from && (peers[peer].status?.oldestServableHeight ?? .max) <= from
            }
            // The least busy, then the next in turn after the last one asked: ranges spread over
            // every peer (a lying or slow one is met, and found out, early), deterministically.
            let peerCount = peers.count
            let first = nextBlocksPeer
            let turn = { (peer: Int) in (peer - first + peerCount) % peerCount }
            guard let peer = candidates.min(by: { (peers[$0].blocksInFlight, turn($0)) < (peers[$1].blocksInFlight, turn($1)) }) else { return }
            nextBlocksPeer = (peer + 1) % peerCount
            blockRequests[from] = (peer, count, now)
            peers[peer].blocksInFlight += 1
            outputs.append(.request(peer: peer, .blocks(from: from, count: count)))
            from += UInt64(count)
        }
    }

    private mutating func emitApply(into outputs: inout [SyncOutput]) {
        guard !applyInFlight else { return }
        var blocks: [SyncBlock] = []
        var attested: [UInt64: Hash32] = [:]
        var height = localHeight + 1
        // Bounded by applyBatchMax.
        while blocks.count < configuration.applyBatchMax, let entry = buffered[height], let root = attestedRoot(at: height) {
            blocks.append(entry.block)
            attested[height] = root
            height += 1
        }
        guard !blocks.isEmpty else { return }
        applyInFlight = true
        outputs.append(.apply(blocks, attested: attested))
    }
}
