import Engine

/// The bounds of a state sync, on top of the peers and trust of its `SyncConfiguration`.
public struct StateSyncConfiguration: Sendable, Equatable {
    public var sync: SyncConfiguration
    /// Bytes asked for per chunk (the server answers at most 4 MiB).
    public var chunkBytes: UInt64 = 4 << 20
    public var chunksPerPeerMax = 2
    public var chunksMax = 8
    /// A chunk that takes longer than its size at this speed (plus `chunkGraceNanoseconds`) was
    /// served by a slow peer: it is dropped and asked of another.
    public var minimumBytesPerSecond: UInt64 = 256 << 10
    public var chunkGraceNanoseconds: UInt64 = 2_000_000_000
    /// The most snapshot heights examined, newest first.
    public var candidatesMax = 4
    /// Only snapshots above this height are taken (the node's own height: state sync never
    /// rolls a node back).
    public var heightFloor: UInt64 = 0
    /// The most files a state-synced manifest may list, and the most chunks it may make: what
    /// the download keeps per chunk stays within memory.
    public static let filesMax = 100_000
    public static let chunksMax: UInt64 = 4_000_000

    public init(sync: SyncConfiguration) {
        self.sync = sync
    }

    /// How long one chunk of `bytes` may take before its peer counts as slow.
    func chunkDeadlineNanoseconds(bytes: UInt64) -> UInt64 {
        chunkGraceNanoseconds + bytes * 1_000_000_000 / max(minimumBytesPerSecond, 1)
    }
}

/// Every state-sync decision, with no I/O of its own (as `SyncMachine` is for blocks): which
/// snapshot to take, which peer to ask for which chunk, when a peer is slow, lying or gone,
/// what to write to staging and when to install. The driver carries out the outputs and feeds
/// back what happened; the simulator drives the same machine.
///
/// Trust: a snapshot is taken only if its MetaRoot at its height is the trust anchor's, or a
/// quorum of peers vouches for it (by offering a snapshot with that root at that height, or by
/// their chain link there). Its manifest must hash to the offered digest and match the offer;
/// each file must hash to the manifest's SHA-256 before it counts; the driver's install then
/// recomputes every lane root and the MetaRoot before anything outside staging is written.
public struct StateSyncMachine: Sendable {
    public let configuration: StateSyncConfiguration
    public private(set) var peers: [SyncPeer]
    public private(set) var phase: StateSyncPhase = .choosing
    /// Per peer: its last offers (nil until it answered).
    private var offers: [[SnapshotOffer]?]
    private var offersInFlight: [UInt64?]
    /// votes[height][root]: peers whose chain link at `height` is `root`.
    private var linkVotes: [UInt64: [Hash32: Set<Int>]] = [:]
    /// Per peer: heights asked for a link, and the one in flight with its send time.
    private var linksAsked: [Set<UInt64>]
    private var linkInFlight: [(height: UInt64, sentAt: UInt64)?]
    /// Manifest digests found bad (a manifest or snapshot that failed its checks).
    private var refusedDigests: Set<String> = []
    private var download: StateSyncDownload?
    private var stopped: StateSyncStop?

    public init(configuration: StateSyncConfiguration, staged: StateSyncStaged? = nil) {
        self.configuration = configuration
        let count = configuration.sync.peerCount
        peers = Array(repeating: SyncPeer(), count: count)
        offers = Array(repeating: nil, count: count)
        offersInFlight = Array(repeating: nil, count: count)
        linksAsked = Array(repeating: [], count: count)
        linkInFlight = Array(repeating: nil, count: count)
        if let staged {
            download = StateSyncDownload(resuming: staged, chunkBytes: configuration.chunkBytes)
            phase = .downloading
            if !staged.verifiedFiles.isEmpty || staged.stagedChunks.values.contains(where: { !$0.isEmpty }) { Probe.stateSyncResumed.hit() }
        }
    }

    private var sync: SyncConfiguration { configuration.sync }

    /// The snapshot being fetched, once chosen.
    public var chosen: SnapshotOffer? { download?.offer }

    // MARK: Stepping

    public mutating func handle(_ input: StateSyncInput, now: UInt64) -> [StateSyncOutput] {
        guard stopped == nil, phase != .installed else { return [] }
        var outputs: [StateSyncOutput] = []
        switch input {
        case .tick:
            expire(now: now, into: &outputs)
        case .status(let peer, let result):
            guard peers[peer].statusInFlight else { break }
            switch peers[peer].receiveStatus(result, configuration: sync, now: now) {
            case .taken: break
            case .penalize(let fault): punish(peer, fault, now: now, into: &outputs)
            case .otherChain(let why):
                download?.forget(peer: peer)
                outputs.append(.peerFaulty(peer: peer, why: why))
            }
        case .offers(let peer, let result):
            guard offersInFlight[peer] != nil else { break }
            offersInFlight[peer] = nil
            receiveOffers(peer, result, now: now, into: &outputs)
        case .link(let peer, let height, let result):
            guard linkInFlight[peer]?.height == height else { break }
            linkInFlight[peer] = nil
            receiveLink(peer, height: height, result, now: now, into: &outputs)
        case .manifest(let peer, let name, let result):
            receiveManifest(peer, name: name, result, now: now, into: &outputs)
        case .chunk(let peer, let path, let offset, let result):
            receiveChunk(peer, path: path, offset: offset, result, now: now, into: &outputs)
        case .fileChecked(let path, let intact):
            fileChecked(path, intact: intact, now: now, into: &outputs)
        case .installed(let height, let metaRoot):
            installed(height: height, metaRoot: metaRoot, now: now, into: &outputs)
        case .installRefused(let reason):
            installRefused(reason, now: now, into: &outputs)
        }
        // Installing (or installed), the driver has the snapshot: nothing is asked or decided
        // until it answers.
        guard phase != .installing && phase != .installed else { return outputs }
        if let stop = checkStops() {
            stopped = stop
            return outputs + [.stop(stop)]
        }
        plan(now: now, into: &outputs)
        return outputs
    }

    // MARK: Answers

    private mutating func receiveOffers(_ peer: Int, _ result: Result<[SnapshotOffer], PeerFault>, now: UInt64, into outputs: inout [StateSyncOutput]) {
        switch result {
        case .failure(let fault):
            // Asked again once it is back: until then it may still offer the snapshot to take.
            punish(peer, fault, now: now, into: &outputs)
        case .success(let list):
            guard list.count <= SnapshotOffers.offersMax else {
                return punish(peer, .misbehaved("\(list.count) snapshots offered (at most \(SnapshotOffers.offersMax))"), now: now, into: &outputs)
            }
            offers[peer] = list
        }
    }

    private mutating func receiveLink(_ peer: Int, height: UInt64, _ result: Result<ChainLink, PeerFault>, now: UInt64, into outputs: inout [StateSyncOutput]) {
        switch result {
        case .failure(let fault):
            // Not an answer: asked again once the peer is back (it may still vouch).
            linksAsked[peer].remove(height)
            punish(peer, fault, now: now, into: &outputs)
        case .success(let link) where link.height == height:
            linkVotes[height, default: [:]][link.metaRoot, default: []].insert(peer)
        case .success(let link):
            punish(peer, .misbehaved("a link for height \(link.height), asked for \(height)"), now: now, into: &outputs)
        }
    }

    private mutating func receiveManifest(
        _ peer: Int, name: String, _ result: Result<FetchedManifest, PeerFault>, now: UInt64, into outputs: inout [StateSyncOutput]
    ) {
        guard var download, download.manifestAskedOf?.peer == peer, name == offerName(download.offer, at: peer), download.manifest == nil else { return }
        download.manifestAskedOf = nil
        switch result {
        case .failure(let fault):
            if case .misbehaved = fault { Probe.stateSyncManifestRefused.hit() }
            self.download = download
            punish(peer, fault, now: now, into: &outputs)
        case .success(let fetched):
            if let problem = Self.manifestProblem(fetched, offer: download.offer, configuration: sync, chunkBytes: configuration.chunkBytes) {
                Probe.stateSyncManifestRefused.hit()
                self.download = download
                return punish(peer, .misbehaved(problem), now: now, into: &outputs)
            }
            download.accept(fetched.manifest, chunkBytes: configuration.chunkBytes)
            self.download = download
            phase = .downloading
            outputs.append(.stage(offer: download.offer, manifestBytes: fetched.bytes))
        }
    }

    /// Why a manifest may not be used for `offer`: its bytes do not hash to the offered digest,
    /// or it describes another chain, height or root, or nothing.
    static func manifestProblem(_ fetched: FetchedManifest, offer: SnapshotOffer, configuration: SyncConfiguration, chunkBytes: UInt64) -> String? {
        let manifest = fetched.manifest
        guard SnapshotOffers.digest(of: fetched.bytes) == offer.manifestSHA256 else { return "a manifest that does not hash to the offered digest" }
        guard manifest.chainID == configuration.chainID, manifest.laneCount == configuration.laneCount else {
            return "a manifest of chain \(manifest.chainID) with \(manifest.laneCount) lanes"
        }
        guard manifest.height == offer.height, manifest.metaRoot == offer.metaRoot else {
            return "a manifest at height \(manifest.height) with another root than offered"
        }
        guard !manifest.files.isEmpty, manifest.files.count <= StateSyncConfiguration.filesMax else { return "a manifest listing \(manifest.files.count) files" }
        let totalBytes = manifest.files.reduce(UInt64(0)) { $0 + $1.sizeBytes }
        guard totalBytes == offer.sizeBytes else { return "a manifest of \(totalBytes) bytes for a snapshot offered as \(offer.sizeBytes)" }
        let chunks = manifest.files.reduce(UInt64(0)) { $0 + ($1.sizeBytes + chunkBytes - 1) / chunkBytes }
        guard chunks <= StateSyncConfiguration.chunksMax else { return "a manifest of \(chunks) chunks (at most \(StateSyncConfiguration.chunksMax); a larger sync.chunk_kib fetches it)" }
        return nil
    }

    private mutating func receiveChunk(
        _ peer: Int, path: String, offset: UInt64, _ result: Result<[UInt8], PeerFault>, now: UInt64, into outputs: inout [StateSyncOutput]
    ) {
        guard var download, let chunk = download.takeAnswer(peer: peer, path: path, offset: offset) else { return }
        switch result {
        case .failure(let fault):
            download.requeue(chunk)
            self.download = download
            punish(peer, fault, now: now, into: &outputs)
        case .success(let bytes) where UInt64(bytes.count) == chunk.count:
            download.staged(chunk, by: peer)
            outputs.append(.writeChunk(path: path, offset: offset, bytes: bytes))
            self.download = download
        case .success(let bytes):
            download.requeue(chunk)
            self.download = download
            punish(peer, .misbehaved("\(bytes.count) bytes for a chunk of \(chunk.count)"), now: now, into: &outputs)
        }
    }

    private mutating func fileChecked(_ path: String, intact: Bool, now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard var download, download.isChecking(path) else { return }
        if intact {
            download.verified(path)
            self.download = download
            if download.isComplete {
                phase = .installing
                outputs.append(.install(offer: download.offer))
            }
            return
        }
        Probe.stateSyncFileRefused.hit()
        outputs.append(.discardFile(path: path))
        guard download.hasChunks(path) else {
            // An empty file cannot be fetched wrong: the manifest's SHA-256 for it lies.
            return refuseSnapshot("its manifest lists \(path) as empty with another SHA-256", now: now, into: &outputs)
        }
        let contributors = download.refetch(path)
        self.download = download
        // One peer served every byte: it lied. Several: the file is fetched again from one of
        // them alone, so that the next failure names the liar.
        if contributors.count == 1, let liar = contributors.first {
            punish(liar, .misbehaved("\(path) does not hash to the manifest's SHA-256"), now: now, into: &outputs)
        }
    }

    private mutating func installed(height: UInt64, metaRoot: Hash32, now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard phase == .installing, let offer = download?.offer else { return }
        precondition(height == offer.height && metaRoot == offer.metaRoot, "the driver installs the snapshot the machine chose")
        phase = .installed
        outputs.append(.stateSynced(height: height, metaRoot: metaRoot))
    }

    /// The files hashed to the manifest, yet the state does not give its roots: the manifest's
    /// sources served a snapshot that lies (its digest is refused), and another is chosen.
    private mutating func installRefused(_ reason: String, now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard phase == .installing else { return }
        Probe.stateSyncInstallRefused.hit()
        refuseSnapshot("it failed verification: \(reason)", now: now, into: &outputs)
    }

    /// The snapshot being fetched lies: its digest is never taken again, its sources are
    /// faulty, every peer is asked again what it offers, and another is chosen.
    private mutating func refuseSnapshot(_ why: String, now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard let download else { return }
        refusedDigests.insert(download.offer.manifestSHA256)
        for source in sources(of: download.offer) { punish(source, .misbehaved("its snapshot at \(download.offer.height): \(why)"), now: now, into: &outputs) }
        abandonDownload()
    }

    /// Back to choosing, with fresh offers from every peer.
    private mutating func abandonDownload() {
        download = nil
        phase = .choosing
        offers = Array(repeating: nil, count: offers.count)
    }

    /// Unreachable: back off. Misbehaved: faulty; its chunks and manifest request are given up.
    private mutating func punish(_ peer: Int, _ fault: PeerFault, now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard peers[peer].penalize(fault, configuration: sync, now: now) else { return }
        if case .misbehaved(let why) = fault {
            for height in linkVotes.keys {
                for root in linkVotes[height]!.keys { linkVotes[height]![root]!.remove(peer) }
            }
            // Once its faulty spell is over it is asked afresh: what it offers, and its links.
            linksAsked[peer] = []
            offers[peer] = nil
            outputs.append(.peerFaulty(peer: peer, why: why))
        }
        if let inFlight = linkInFlight[peer] { linksAsked[peer].remove(inFlight.height) }
        // Once reachable again it is asked afresh what it offers: a 404 for a chunk or a
        // manifest may mean it no longer keeps the snapshot.
        if download != nil { offers[peer] = nil }
        download?.forget(peer: peer)
        offersInFlight[peer] = nil
        linkInFlight[peer] = nil
    }

    /// Requests past their time: status, offers and links after the request timeout; a chunk
    /// after its size at the minimum speed (a slow peer is dropped for a faster one).
    private mutating func expire(now: UInt64, into outputs: inout [StateSyncOutput]) {
        let timeout = sync.requestTimeoutNanoseconds
        for peer in peers.indices {
            let statusLate = peers[peer].statusInFlight && elapsedNanoseconds(now, since: peers[peer].statusSentAt) >= timeout
            let offersLate = offersInFlight[peer].map { elapsedNanoseconds(now, since: $0) >= timeout } ?? false
            let linkLate = linkInFlight[peer].map { elapsedNanoseconds(now, since: $0.sentAt) >= timeout } ?? false
            if statusLate || offersLate || linkLate {
                peers[peer].statusInFlight = false
                punish(peer, .unreachable("a request timed out"), now: now, into: &outputs)
            }
        }
        guard var download else { return }
        if let asked = download.manifestAskedOf, elapsedNanoseconds(now, since: asked.sentAt) >= timeout {
            download.manifestAskedOf = nil
            self.download = download
            punish(asked.peer, .unreachable("the manifest request timed out"), now: now, into: &outputs)
            download = self.download!
        }
        let slow = download.lateChunks(now: now) { configuration.chunkDeadlineNanoseconds(bytes: $0) }
        self.download = download
        for chunk in slow {
            Probe.stateSyncSlowPeerDropped.hit()
            punish(chunk.peer, .unreachable("\(chunk.count) bytes took longer than at \(configuration.minimumBytesPerSecond) B/s"), now: now, into: &outputs)
        }
    }

    // MARK: Decisions

    private func checkStops() -> StateSyncStop? {
        let quorum = sync.resolvedQuorum
        let usable = peers.filter { !$0.isOtherChain }.count
        if usable < quorum { return .noQuorumPossible(usable: usable, quorum: quorum) }
        // A faulty spell ends: that peer is asked again, and may offer one.
        let anyFaulty = peers.contains { if case .faulty = $0.state { true } else { false } }
        guard phase == .choosing, everyUsablePeerAnswered, !anyFaulty else { return nil }
        if case .exhausted(let offered) = choice() { return .noAttestedSnapshot(offered: offered) }
        return nil
    }

    /// Every peer still trusted has said what it offers (an unreachable one is waited for: it
    /// may offer the snapshot to take).
    private var everyUsablePeerAnswered: Bool {
        peers.indices.allSatisfy { !isTrusted($0) || offers[$0] != nil }
    }

    /// Asks for statuses, offers and links; chooses a snapshot; fetches its manifest and chunks.
    private mutating func plan(now: UInt64, into outputs: inout [StateSyncOutput]) {
        if let download { dropIfNoSource(download) }
        for peer in peers.indices {
            if peers[peer].askStatusIfDue(now: now, refresh: sync.statusRefreshNanoseconds) { outputs.append(.request(peer: peer, .status)) }
            // Offers once per peer until a snapshot is chosen (and again when it is dropped).
            if peers[peer].isAskable, offers[peer] == nil, offersInFlight[peer] == nil {
                offersInFlight[peer] = now
                outputs.append(.request(peer: peer, .offers))
            }
        }
        if download == nil, case .chosen(let offer) = choice() {
            Probe.stateSyncChosen.hit()
            download = StateSyncDownload(offer: offer)
            phase = .fetchingManifest
        }
        if download == nil { askLinks(now: now, into: &outputs) }
        askManifest(now: now, into: &outputs)
        askChunks(now: now, into: &outputs)
        // Every file whose chunks are all staged is checked: just fetched, resumed that way, or empty.
        if var download, download.manifest != nil {
            let ready = download.filesWithEveryChunk()
            download.markChecking(ready)
            self.download = download
            outputs += ready.map { .checkFile(path: $0) }
        }
        // Resumed with every file verified (a stop during the install's verification): install.
        if let download, download.isComplete, phase == .downloading {
            phase = .installing
            outputs.append(.install(offer: download.offer))
        }
    }

    private enum Choice: Equatable {
        case chosen(SnapshotOffer)
        /// Waiting for answers (offers or links) that may still attest one.
        case waiting
        /// Every candidate examined, none attested; how many distinct snapshots were offered.
        case exhausted(offered: Int)
    }

    /// The newest offered snapshot whose MetaRoot is attested, once every newer one is known not
    /// to be; its manifest is the digest the most peers offer (ties: the lowest peer's).
    private func choice() -> Choice {
        let candidates = candidateHeights()
        for (height, roots) in candidates {
            for root in roots {
                switch attestation(height: height, root: root) {
                case .attested: return .chosen(bestOffer(height: height, root: root))
                case .pending: return .waiting
                case .refused: continue
                }
            }
        }
        return everyUsablePeerAnswered ? .exhausted(offered: candidates.reduce(0) { $0 + $1.roots.count }) : .waiting
    }

    /// Offered (height, roots) from peers that are not faulty, newest first (bounded by what
    /// the peers offer: `offersMax` each).
    private func candidateHeights() -> [(height: UInt64, roots: [Hash32])] {
        var byHeight: [UInt64: Set<Hash32>] = [:]
        for peer in peers.indices where isTrusted(peer) {
            for offer in offers[peer] ?? [] where !refusedDigests.contains(offer.manifestSHA256) && offer.height > configuration.heightFloor {
                if let anchor = sync.trustAnchor, offer.height < anchor.height { continue }
                byHeight[offer.height, default: []].insert(offer.metaRoot)
            }
        }
        return byHeight.keys.sorted(by: >).map { ($0, byHeight[$0]!.sorted { $0.hex < $1.hex }) }
    }

    private func isTrusted(_ peer: Int) -> Bool {
        switch peers[peer].state {
        case .faulty, .otherChain: false
        default: true
        }
    }

    private enum Attestation { case attested, pending, refused }

    /// The anchor decides at its height. Otherwise the peers that vouch for `root` at `height`
    /// (offering it, or linking it) must reach the quorum; while a peer that holds that height
    /// has not given its link, it may still.
    private func attestation(height: UInt64, root: Hash32) -> Attestation {
        if let anchor = sync.trustAnchor, anchor.height == height { return anchor.metaRoot == root ? .attested : .refused }
        var vouching = Set(linkVotes[height]?[root] ?? [])
        for peer in peers.indices where isTrusted(peer) && (offers[peer] ?? []).contains(where: { $0.height == height && $0.metaRoot == root }) {
            vouching.insert(peer)
        }
        if vouching.count >= sync.resolvedQuorum { return .attested }
        let undecided = peers.indices.filter { peer in
            isTrusted(peer) && !vouching.contains(peer) && (offers[peer] == nil || (holds(peer, height) && !linkAnswered(peer, height)))
        }
        return vouching.count + undecided.count >= sync.resolvedQuorum ? .pending : .refused
    }

    private func holds(_ peer: Int, _ height: UInt64) -> Bool {
        guard let status = peers[peer].lastKnownStatus, let oldest = status.oldestServableHeight else { return false }
        return oldest <= height && height <= status.servableHeight
    }

    /// Asked and answered (or failed: a peer that cannot give its link now is not waited for).
    private func linkAnswered(_ peer: Int, _ height: UInt64) -> Bool {
        linksAsked[peer].contains(height) && linkInFlight[peer]?.height != height
    }

    private func bestOffer(height: UInt64, root: Hash32) -> SnapshotOffer {
        var counts: [String: (count: Int, firstPeer: Int, offer: SnapshotOffer)] = [:]
        for peer in peers.indices where isTrusted(peer) {
            // Each peer counts once per digest, however often it lists it.
            let digests = Set((offers[peer] ?? []).filter { $0.height == height && $0.metaRoot == root && !refusedDigests.contains($0.manifestSHA256) }.map(\.manifestSHA256))
            for digest in digests.sorted() {
                let offer = (offers[peer] ?? []).first { $0.manifestSHA256 == digest }!
                let known = counts[digest]
                counts[digest] = ((known?.count ?? 0) + 1, known?.firstPeer ?? peer, known?.offer ?? offer)
            }
        }
        // Attested with a quorum or the anchor, and offered: there is at least one.
        let best = counts.values.min { ($1.count, $0.firstPeer) < ($0.count, $1.firstPeer) }!
        return best.offer
    }

    /// Links at the newest `candidatesMax` heights still undecided, from every askable peer that
    /// holds the height and was not asked (refused heights are skipped: a liar's flood of
    /// made-up snapshots only costs it their refusal).
    private mutating func askLinks(now: UInt64, into outputs: inout [StateSyncOutput]) {
        let undecided = candidateHeights().filter { candidate in candidate.roots.contains { attestation(height: candidate.height, root: $0) == .pending } }
        for (height, _) in undecided.prefix(configuration.candidatesMax) {
            for peer in peers.indices where peers[peer].isAskable && linkInFlight[peer] == nil && holds(peer, height) && !linksAsked[peer].contains(height) {
                linksAsked[peer].insert(height)
                linkInFlight[peer] = (height, now)
                outputs.append(.request(peer: peer, .link(height: height)))
            }
        }
    }

    /// The peers offering exactly this snapshot (its manifest digest).
    private func sources(of offer: SnapshotOffer) -> [Int] {
        peers.indices.filter { peer in (offers[peer] ?? []).contains { $0.manifestSHA256 == offer.manifestSHA256 && $0.height == offer.height } }
    }

    /// What `peer` calls the snapshot with this digest (names are each node's own).
    private func offerName(_ offer: SnapshotOffer, at peer: Int) -> String {
        (offers[peer] ?? []).first { $0.manifestSHA256 == offer.manifestSHA256 && $0.height == offer.height }?.name ?? offer.name
    }

    private func askableSources(of offer: SnapshotOffer) -> [Int] {
        sources(of: offer).filter { peers[$0].isAskable }
    }

    private mutating func askManifest(now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard var download, download.manifest == nil, download.manifestAskedOf == nil else { return }
        let sources = askableSources(of: download.offer)
        guard !sources.isEmpty else { return }
        let peer = sources[download.manifestAttempts % sources.count]
        download.manifestAttempts += 1
        download.manifestAskedOf = (peer, now)
        self.download = download
        outputs.append(.request(peer: peer, .manifest(name: offerName(download.offer, at: peer))))
    }

    /// Once every peer has answered and no trusted one offers the snapshot being fetched any
    /// more (pruned, a resumed one that is gone, or every source was faulty), another is chosen
    /// (staging is replaced when it is staged).
    private mutating func dropIfNoSource(_ download: StateSyncDownload) {
        guard everyUsablePeerAnswered, sources(of: download.offer).allSatisfy({ !isTrusted($0) }) else { return }
        abandonDownload()
    }

    private mutating func askChunks(now: UInt64, into outputs: inout [StateSyncOutput]) {
        guard var download, download.manifest != nil else { return }
        let sources = askableSources(of: download.offer)
        if sources.isEmpty { return }
        download.unpin { !peers[$0].isAskable }
        var skipped: [StateSyncDownload.Chunk] = []
        // Bounded: chunksMax in flight, and each waiting chunk looked at once.
        while download.inFlightCount < configuration.chunksMax, let chunk = download.nextChunk() {
            let candidates = sources.filter { download.inFlight(of: $0) < configuration.chunksPerPeerMax && download.mayServe($0, chunk.path) }
            guard let peer = candidates.min(by: { (download.inFlight(of: $0), $0) < (download.inFlight(of: $1), $1) }) else {
                skipped.append(chunk)
                continue
            }
            download.send(chunk, to: peer, now: now)
            outputs.append(.request(peer: peer, .chunk(name: offerName(download.offer, at: peer), path: chunk.path, offset: chunk.offset, count: chunk.count)))
        }
        for chunk in skipped.reversed() { download.requeue(chunk) }
        self.download = download
    }
}
