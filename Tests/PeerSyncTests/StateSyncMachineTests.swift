import Engine
import PeerSync
import Synchronization
import Testing

/// The total size of each manifest `StateHarness.manifest(for:)` made, by digest, so that its
/// offers carry it (the machine checks the two agree).
let manifestSizes = Mutex<[String: UInt64]>([:])

/// Drives a state-sync machine by hand (peers on chain "c" with one lane).
struct StateHarness {
    var machine: StateSyncMachine
    var now: UInt64 = 0
    let chain = FakeChain()

    init(peers: Int = 3, quorum: Int = 0, anchor: ChainLink? = nil, staged: StateSyncStaged? = nil, configure: (inout StateSyncConfiguration) -> Void = { _ in }) {
        var configuration = StateSyncConfiguration(sync: SyncConfiguration(chainID: "c", laneCount: 1, peerCount: peers, quorum: quorum, trustAnchor: anchor))
        configuration.chunkBytes = 10
        configure(&configuration)
        machine = StateSyncMachine(configuration: configuration, staged: staged)
    }

    mutating func feed(_ input: StateSyncInput) -> [StateSyncOutput] { machine.handle(input, now: now) }

    /// Every peer healthy, holding heights `oldest...height`; returns the outputs of the last status.
    mutating func allHealthy(height: UInt64 = 100, oldest: UInt64 = 1) -> [StateSyncOutput] {
        _ = feed(.tick)
        var outputs: [StateSyncOutput] = []
        for peer in 0..<machine.configuration.sync.peerCount {
            outputs = feed(.status(peer: peer, .success(Harness(peers: 1).status(height: height, oldest: oldest))))
        }
        return outputs
    }

    /// An offer whose size is its manifest's (one made by `manifest(for:)`), else 25 bytes.
    func offer(_ height: UInt64, digest: String, root: Hash32? = nil, name: String? = nil) -> SnapshotOffer {
        let size = manifestSizes.withLock { $0[digest] } ?? 25
        return SnapshotOffer(name: name ?? "s\(height)", height: height, metaRoot: root ?? chain.root(height), manifestSHA256: digest, sizeBytes: size)
    }

    /// A manifest for `offer` with files of these sizes, and its bytes (whose digest the offer must carry).
    func manifest(for height: UInt64, sizes: [UInt64], root: Hash32? = nil) -> FetchedManifest {
        let files = sizes.enumerated().map { StateSyncFile(path: "lanes/lane-0000/f\($0.offset)", sizeBytes: $0.element, sha256: String(repeating: "a", count: 64)) }
        let manifest = StateSyncManifest(chainID: "c", laneCount: 1, height: height, metaRoot: root ?? chain.root(height), files: files)
        let bytes = Array("manifest \(height) \(sizes)".utf8)
        manifestSizes.withLock { $0[SnapshotOffers.digest(of: bytes)] = sizes.reduce(0, +) }
        return FetchedManifest(bytes: bytes, manifest: manifest)
    }
}

func stateRequests(_ outputs: [StateSyncOutput]) -> [(peer: Int, request: StateSyncRequest)] {
    outputs.compactMap { if case .request(let peer, let request) = $0 { (peer, request) } else { nil } }
}

func chunkRequests(_ outputs: [StateSyncOutput]) -> [(peer: Int, path: String, offset: UInt64, count: UInt64)] {
    stateRequests(outputs).compactMap { if case .chunk(_, let path, let offset, let count) = $0.request { ($0.peer, path, offset, count) } else { nil } }
}

func faulted(_ outputs: [StateSyncOutput]) -> [Int] {
    outputs.compactMap { if case .peerFaulty(let peer, _) = $0 { peer } else { nil } }
}

@Suite("State sync machine: decision table")
struct StateSyncMachineTests {
    /// Peers 0 and 1 offer the snapshot at 50 (the same files, digest d50); peer 0 also one at
    /// 90 that only it offers.
    /// Returns every output of those steps.
    static func offering(_ harness: inout StateHarness, fetched50: FetchedManifest) -> [StateSyncOutput] {
        let d50 = SnapshotOffers.digest(of: fetched50.bytes)
        var outputs = harness.allHealthy()
        outputs += harness.feed(.offers(peer: 0, .success([harness.offer(90, digest: "d90"), harness.offer(50, digest: d50)])))
        outputs += harness.feed(.offers(peer: 1, .success([harness.offer(50, digest: d50)])))
        return outputs + harness.feed(.offers(peer: 2, .success([])))
    }

    static let otherRoot = Hash32(bytes: [UInt8](repeating: 9, count: 32))

    /// `choosing50` with a manifest of one 5-byte file, its manifest served and its one chunk
    /// staged; returns that chunk's request.
    static func stagingOneFile(_ harness: inout StateHarness) throws -> (peer: Int, path: String, offset: UInt64, count: UInt64) {
        let fetched = harness.manifest(for: 50, sizes: [5])
        let chosen = choosing50(&harness, fetched50: fetched)
        let ask = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        let chunk = try #require(chunkRequests(harness.feed(.manifest(peer: ask.peer, name: "s50", .success(fetched)))).first)
        _ = harness.feed(.chunk(peer: chunk.peer, path: chunk.path, offset: 0, .success([1, 2, 3, 4, 5])))
        return chunk
    }

    /// `offering`, then peers 1 and 2 link another root at 90: 90 is passed over and 50
    /// chosen. Returns the last step's outputs (its manifest request).
    static func choosing50(_ harness: inout StateHarness, fetched50: FetchedManifest) -> [StateSyncOutput] {
        _ = offering(&harness, fetched50: fetched50)
        _ = harness.feed(.link(peer: 1, height: 90, .success(ChainLink(height: 90, metaRoot: otherRoot, previousMetaRoot: otherRoot))))
        return harness.feed(.link(peer: 2, height: 90, .success(ChainLink(height: 90, metaRoot: otherRoot, previousMetaRoot: otherRoot))))
    }

    @Test func everyPeerIsAskedWhatItOffersOnceHealthy() {
        var harness = StateHarness()
        let outputs = harness.allHealthy()
        #expect(stateRequests(outputs).map(\.request) == [.offers], "the last status's peer is asked for its offers")
        #expect(harness.machine.phase == .choosing && harness.machine.chosen == nil)
    }

    @Test func theNewestSnapshotAQuorumVouchesForIsChosen() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [25])
        let outputs = Self.offering(&harness, fetched50: fetched)
        // 90 has one voucher (its offerer): links at 90 are asked of the others who hold it.
        #expect(stateRequests(outputs).filter { $0.request == .link(height: 90) }.count >= 2)
        #expect(harness.machine.chosen == nil, "90 may still be attested")
        _ = harness.feed(.link(peer: 1, height: 90, .success(ChainLink(height: 90, metaRoot: harness.chain.root(90), previousMetaRoot: harness.chain.root(89)))))
        #expect(harness.machine.chosen?.height == 90, "two vouch for 90: its offerer and a link")
    }

    @Test func aSnapshotOnlyItsOffererVouchesForIsPassedOver() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [25])
        let d50 = SnapshotOffers.digest(of: fetched.bytes)
        let outputs = Self.choosing50(&harness, fetched50: fetched)
        #expect(harness.machine.chosen?.height == 50 && harness.machine.chosen?.manifestSHA256 == d50)
        #expect(stateRequests(outputs).contains { $0.request == .manifest(name: "s50") })
        #expect(harness.machine.phase == .fetchingManifest)
    }

    @Test func theTrustAnchorDecidesAtItsHeight() {
        let chain = FakeChain()
        var harness = StateHarness(peers: 3, anchor: ChainLink(height: 60, metaRoot: chain.root(60), previousMetaRoot: chain.root(59)))
        _ = harness.allHealthy()
        _ = harness.feed(.offers(peer: 0, .success([harness.offer(60, digest: "d60"), harness.offer(40, digest: "d40")])))
        _ = harness.feed(.offers(peer: 1, .success([])))
        _ = harness.feed(.offers(peer: 2, .success([harness.offer(60, digest: "forged", root: FakeChain(variant: 2).root(60))])))
        #expect(harness.machine.chosen?.manifestSHA256 == "d60", "the anchor's root, not the other one, and nothing below the anchor")
    }

    @Test func withNothingAttestedItStops() {
        var harness = StateHarness(peers: 2, quorum: 2)
        _ = harness.allHealthy(height: 100, oldest: 95)
        _ = harness.feed(.offers(peer: 0, .success([harness.offer(50, digest: "d50")])))
        let outputs = harness.feed(.offers(peer: 1, .success([])))
        #expect(outputs.last == .stop(.noAttestedSnapshot(offered: 1)), "nobody else holds 50 to vouch for it")
    }

    @Test func aManifestThatDoesNotMatchItsOfferMarksItsPeerAndAnotherSourceIsAsked() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [25])
        let chosen = Self.choosing50(&harness, fetched50: fetched)
        let first = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        var wrong = fetched
        wrong.bytes += [0]
        let outputs = harness.feed(.manifest(peer: first.peer, name: "s50", .success(wrong)))
        #expect(faulted(outputs) == [first.peer])
        let again = try #require(stateRequests(outputs).first { $0.request == .manifest(name: "s50") })
        #expect(again.peer != first.peer, "the other source")
    }

    /// Chunks of at most 10 bytes, spread over both sources, at most 2 per peer; each answer is
    /// written, a file whose chunks are all in is checked, and once every file is verified the
    /// snapshot is installed, then reported synced.
    @Test func chunksAreFetchedWrittenCheckedAndInstalled() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [25, 0])
        let chosen = Self.choosing50(&harness, fetched50: fetched)
        let ask = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        let outputs = harness.feed(.manifest(peer: ask.peer, name: "s50", .success(fetched)))
        #expect(outputs.contains(.stage(offer: harness.machine.chosen!, manifestBytes: fetched.bytes)))
        #expect(outputs.contains(.checkFile(path: "lanes/lane-0000/f1")), "an empty file has nothing to wait for")
        let chunks = chunkRequests(outputs)
        #expect(chunks.map(\.offset) == [0, 10, 20] && chunks.map(\.count) == [10, 10, 5])
        #expect(Set(chunks.map(\.peer)) == [0, 1], "both sources")
        #expect(harness.feed(.fileChecked(path: "lanes/lane-0000/f1", intact: true)).allSatisfy { if case .install = $0 { false } else { true } })
        var last: [StateSyncOutput] = []
        for chunk in chunks {
            last = harness.feed(.chunk(peer: chunk.peer, path: chunk.path, offset: chunk.offset, .success([UInt8](repeating: 7, count: Int(chunk.count)))))
            #expect(last.contains(.writeChunk(path: chunk.path, offset: chunk.offset, bytes: [UInt8](repeating: 7, count: Int(chunk.count)))))
        }
        #expect(last.contains(.checkFile(path: "lanes/lane-0000/f0")))
        let install = harness.feed(.fileChecked(path: "lanes/lane-0000/f0", intact: true))
        #expect(install.contains(.install(offer: harness.machine.chosen!)) && harness.machine.phase == .installing)
        let done = harness.feed(.installed(height: 50, metaRoot: harness.chain.root(50)))
        #expect(done == [.stateSynced(height: 50, metaRoot: harness.chain.root(50))] && harness.machine.phase == .installed)
        #expect(harness.feed(.tick).isEmpty, "nothing more once installed")
    }

    /// A file that fails its check: one contributor is the liar; several, the file is fetched
    /// again from one of them alone.
    @Test func aFileThatDoesNotHashIsDiscardedAndItsLiarNamed() throws {
        var harness = StateHarness { $0.chunksPerPeerMax = 1 }
        let fetched = harness.manifest(for: 50, sizes: [15])
        let chosen = Self.choosing50(&harness, fetched50: fetched)
        let ask = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        let chunks = chunkRequests(harness.feed(.manifest(peer: ask.peer, name: "s50", .success(fetched))))
        #expect(Set(chunks.map(\.peer)).count == 2)
        for chunk in chunks { _ = harness.feed(.chunk(peer: chunk.peer, path: chunk.path, offset: chunk.offset, .success([UInt8](repeating: 1, count: Int(chunk.count))))) }
        let refetch = harness.feed(.fileChecked(path: "lanes/lane-0000/f0", intact: false))
        #expect(refetch.contains(.discardFile(path: "lanes/lane-0000/f0")) && faulted(refetch).isEmpty, "two contributors: nobody named yet")
        let pinned = chunkRequests(refetch)
        #expect(pinned.count == 1 && pinned[0].peer == 0, "fetched again from the lowest contributor alone, one chunk at a time")
        let next = harness.feed(.chunk(peer: 0, path: pinned[0].path, offset: 0, .success([UInt8](repeating: 1, count: 10))))
        let second = try #require(chunkRequests(next).first)
        #expect(second.peer == 0 && second.offset == 10)
        _ = harness.feed(.chunk(peer: 0, path: second.path, offset: 10, .success([UInt8](repeating: 1, count: 5))))
        let named = harness.feed(.fileChecked(path: "lanes/lane-0000/f0", intact: false))
        #expect(faulted(named) == [0], "one contributor: it lied")
    }

    @Test func aSlowPeerIsDroppedForAnother() throws {
        var harness = StateHarness { $0.minimumBytesPerSecond = 10; $0.chunkGraceNanoseconds = 0; $0.chunksPerPeerMax = 1 }
        let fetched = harness.manifest(for: 50, sizes: [10])
        let chosen = Self.choosing50(&harness, fetched50: fetched)
        let ask = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        let first = try #require(chunkRequests(harness.feed(.manifest(peer: ask.peer, name: "s50", .success(fetched)))).first)
        harness.now += 999_000_000
        #expect(chunkRequests(harness.feed(.tick)).isEmpty, "10 bytes at 10 B/s may take a second")
        harness.now += 1_000_000
        let retry = try #require(chunkRequests(harness.feed(.tick)).first)
        #expect(retry.offset == first.offset && retry.peer != first.peer)
        let late = harness.feed(.chunk(peer: first.peer, path: first.path, offset: first.offset, .success([UInt8](repeating: 1, count: 10))))
        #expect(!late.contains { if case .writeChunk = $0 { true } else { false } }, "the dropped peer's late answer is not taken")
    }

    /// A restart with staged work: the verified file and the staged chunk are not asked again.
    @Test func aResumedDownloadAsksOnlyForWhatIsMissing() throws {
        let plain = StateHarness()
        let fetched = plain.manifest(for: 50, sizes: [20, 25])
        let offer = plain.offer(50, digest: SnapshotOffers.digest(of: fetched.bytes))
        let staged = StateSyncStaged(
            manifestSHA256: offer.manifestSHA256, manifestBytes: fetched.bytes, manifest: fetched.manifest, offer: offer,
            verifiedFiles: ["lanes/lane-0000/f0"], stagedChunks: ["lanes/lane-0000/f1": [10]])
        var harness = StateHarness(staged: staged)
        #expect(harness.machine.phase == .downloading && harness.machine.chosen == offer)
        var outputs = harness.allHealthy()
        outputs += harness.feed(.offers(peer: 0, .success([offer])))
        outputs += harness.feed(.offers(peer: 1, .success([offer])))
        let chunks = chunkRequests(outputs)
        #expect(chunks.map(\.path) == ["lanes/lane-0000/f1", "lanes/lane-0000/f1"] && chunks.map(\.offset) == [0, 20])
        #expect(!stateRequests(outputs).contains { if case .manifest = $0.request { true } else { false } }, "the staged manifest is kept")
    }

    /// Files that hash yet a state that does not give the roots: the snapshot's sources lied;
    /// its digest is refused and nothing of it is taken again.
    @Test func aRefusedInstallMarksItsSourcesAndChoosesAgain() throws {
        var harness = StateHarness()
        let chunk = try Self.stagingOneFile(&harness)
        _ = harness.feed(.fileChecked(path: chunk.path, intact: true))
        let refused = harness.feed(.installRefused(reason: "lane 0's root differs"))
        #expect(Set(faulted(refused)) == [0, 1] && harness.machine.phase == .choosing && harness.machine.chosen == nil)
        #expect(!refused.contains { if case .stop = $0 { true } else { false } }, "no stop while their faulty spells run: they are asked again")
    }

    /// A link that could not be had is not an answer: the snapshot stays undecided, and the
    /// peer is asked again once it is back.
    @Test func aLinkThatFailedIsAskedAgain() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [5])
        _ = Self.offering(&harness, fetched50: fetched)
        _ = harness.feed(.link(peer: 1, height: 90, .success(ChainLink(height: 90, metaRoot: Self.otherRoot, previousMetaRoot: Self.otherRoot))))
        _ = harness.feed(.link(peer: 2, height: 90, .failure(.unreachable("down"))))
        #expect(harness.machine.chosen == nil, "peer 2 may still vouch for 90")
        harness.now += 1_000_000_000
        let asked = harness.feed(.tick)
        #expect(stateRequests(asked).contains { $0.peer == 2 && $0.request == .status })
        let back = harness.feed(.status(peer: 2, .success(Harness(peers: 1).status(height: 100))))
        #expect(stateRequests(back).contains { $0.peer == 2 && $0.request == .link(height: 90) })
        _ = harness.feed(.link(peer: 2, height: 90, .success(ChainLink(height: 90, metaRoot: harness.chain.root(90), previousMetaRoot: harness.chain.root(89)))))
        #expect(harness.machine.chosen?.height == 90)
    }

    /// One liar offering made-up snapshots above the real ones cannot push them out of view.
    @Test func aFloodOfMadeUpSnapshotsIsPassedOver() {
        var harness = StateHarness()
        _ = harness.allHealthy()
        let fakes = (91...99).map { harness.offer(UInt64($0), digest: "fake\($0)", root: FakeChain(variant: 3).root(UInt64($0))) }
        var outputs = harness.feed(.offers(peer: 2, .success(fakes)))
        outputs += harness.feed(.offers(peer: 0, .success([harness.offer(50, digest: "d50")])))
        outputs += harness.feed(.offers(peer: 1, .success([harness.offer(50, digest: "d50")])))
        var asked = stateRequests(outputs).filter { if case .link = $0.request { true } else { false } }
        // Bounded: every fake height is refused by the others' true links, one link per peer at a time.
        var answered = 0
        while harness.machine.chosen == nil, !asked.isEmpty, answered < 100 {
            let ask = asked.removeFirst()
            guard case .link(let height) = ask.request else { continue }
            answered += 1
            let link = ChainLink(height: height, metaRoot: harness.chain.root(height), previousMetaRoot: harness.chain.root(height - 1))
            asked += stateRequests(harness.feed(.link(peer: ask.peer, height: height, .success(link)))).filter { if case .link = $0.request { true } else { false } }
        }
        #expect(harness.machine.chosen?.manifestSHA256 == "d50", "after \(answered) links")
    }

    /// While the driver installs, nothing the peers do changes the choice.
    @Test func aSourceTurningFaultyDuringTheInstallChangesNothing() throws {
        var harness = StateHarness()
        let chunk = try Self.stagingOneFile(&harness)
        harness.now += 1_000_000_000
        let refresh = harness.feed(.tick)
        #expect(stateRequests(refresh).filter { $0.request == .status }.count == 3, "statuses are refreshed (and in flight)")
        #expect(harness.feed(.fileChecked(path: chunk.path, intact: true)).contains(.install(offer: harness.machine.chosen!)))
        // Both sources now answer garbage: faulty. Before, the download was dropped mid-install.
        for peer in 0..<2 {
            let outputs = harness.feed(.status(peer: peer, .failure(.misbehaved("a status that does not decode"))))
            #expect(faulted(outputs) == [peer] && outputs.allSatisfy { if case .request = $0 { false } else { true } })
        }
        #expect(harness.machine.phase == .installing && harness.machine.chosen?.height == 50)
        #expect(harness.feed(.installed(height: 50, metaRoot: harness.chain.root(50))) == [.stateSynced(height: 50, metaRoot: harness.chain.root(50))])
    }

    /// A resumed file whose chunks were all staged before the crash is checked, not fetched;
    /// an empty file that does not check out means the manifest lies.
    @Test func aFullyStagedResumedFileIsCheckedAndAnEmptyOneThatFailsRefusesTheSnapshot() {
        let plain = StateHarness()
        let fetched = plain.manifest(for: 50, sizes: [20, 0])
        let offer = plain.offer(50, digest: SnapshotOffers.digest(of: fetched.bytes))
        let staged = StateSyncStaged(
            manifestSHA256: offer.manifestSHA256, manifestBytes: fetched.bytes, manifest: fetched.manifest, offer: offer, verifiedFiles: [],
            stagedChunks: ["lanes/lane-0000/f0": [0, 10]])
        var harness = StateHarness(staged: staged)
        var outputs = harness.feed(.tick)
        for peer in 0..<3 { outputs += harness.feed(.status(peer: peer, .success(Harness(peers: 1).status(height: 100)))) }
        outputs += harness.feed(.offers(peer: 0, .success([offer])))
        #expect(outputs.contains(.checkFile(path: "lanes/lane-0000/f0")) && outputs.contains(.checkFile(path: "lanes/lane-0000/f1")))
        #expect(chunkRequests(outputs).isEmpty, "nothing to fetch")
        let refused = harness.feed(.fileChecked(path: "lanes/lane-0000/f1", intact: false))
        #expect(faulted(refused) == [0] && harness.machine.chosen == nil, "its source lied in the manifest")
    }

    @Test func tooFewPeersOnTheChainStop() {
        var harness = StateHarness(peers: 2, quorum: 2)
        _ = harness.feed(.tick)
        let other = Harness(peers: 1).status(height: 10, chainID: "x")
        _ = harness.feed(.status(peer: 0, .success(other)))
        harness.now += 1_000_000_000
        _ = harness.feed(.tick)
        let outputs = harness.feed(.status(peer: 0, .success(other)))
        #expect(outputs.last == .stop(.noQuorumPossible(usable: 1, quorum: 2)))
    }

    /// A stop during the install's verification leaves every file verified: the resumed
    /// machine installs at once, fetching nothing.
    @Test func aResumedDownloadWithEveryFileVerifiedInstallsAtOnce() {
        let plain = StateHarness()
        let fetched = plain.manifest(for: 50, sizes: [20, 0])
        let offer = plain.offer(50, digest: SnapshotOffers.digest(of: fetched.bytes))
        let staged = StateSyncStaged(
            manifestSHA256: offer.manifestSHA256, manifestBytes: fetched.bytes, manifest: fetched.manifest, offer: offer,
            verifiedFiles: ["lanes/lane-0000/f0", "lanes/lane-0000/f1"], stagedChunks: [:])
        var harness = StateHarness(staged: staged)
        let outputs = harness.feed(.tick)
        #expect(outputs.contains(.install(offer: offer)) && harness.machine.phase == .installing)
        #expect(chunkRequests(outputs).isEmpty)
        #expect(harness.feed(.installed(height: 50, metaRoot: offer.metaRoot)) == [.stateSynced(height: 50, metaRoot: offer.metaRoot)])
    }

    /// A manifest whose files do not add up to the offered size is the peer's lie.
    @Test func aManifestOfAnotherSizeThanOfferedIsRefused() throws {
        var harness = StateHarness()
        let fetched = harness.manifest(for: 50, sizes: [25])
        let chosen = Self.choosing50(&harness, fetched50: fetched)
        let ask = try #require(stateRequests(chosen).first { $0.request == .manifest(name: "s50") })
        var bigger = fetched
        bigger.manifest.files[0].sizeBytes = 26
        let outputs = harness.feed(.manifest(peer: ask.peer, name: "s50", .success(bigger)))
        #expect(faulted(outputs) == [ask.peer] && chunkRequests(outputs).isEmpty)
    }

    /// State sync never rolls a node back: snapshots at or below its height are not taken.
    @Test func snapshotsAtOrBelowTheNodesHeightAreNotCandidates() {
        var harness = StateHarness { $0.heightFloor = 50 }
        let fetched = harness.manifest(for: 50, sizes: [25])
        var outputs = Self.offering(&harness, fetched50: fetched)
        outputs += harness.feed(.link(peer: 1, height: 90, .success(ChainLink(height: 90, metaRoot: Self.otherRoot, previousMetaRoot: Self.otherRoot))))
        outputs += harness.feed(.link(peer: 2, height: 90, .success(ChainLink(height: 90, metaRoot: Self.otherRoot, previousMetaRoot: Self.otherRoot))))
        #expect(harness.machine.chosen == nil && !stateRequests(outputs).contains { $0.request == .manifest(name: "s50") })
        #expect(outputs.last == .stop(.noAttestedSnapshot(offered: 1)), "only the refused 90 was a candidate")
    }
}
