import Documents
import Engine
import FaultFS
import PeerSync

/// How the byzantine node lies about snapshots in state-sync seeds, drawn apart from
/// `ByzantineMode` (which lies about blocks). It serves the primary's snapshots; whatever it
/// does not alter is true. Each lie must be refused before anything outside staging is written.
enum SnapshotLie: String, CaseIterable {
    /// One bit of every chunk it serves is flipped (the file fails its SHA-256; the peer that
    /// served it alone is named).
    case alteredChunk = "altered_chunk"
    /// One byte of a manifest it serves is changed (it no longer hashes to the offered digest).
    case alteredManifest = "altered_manifest"
    /// A self-consistent lie under a true root: a block after each of the primary's snapshots it
    /// offers one of its own at that height (newer than any honest one, its root attested by the
    /// honest peers' links), whose largest SST has one byte changed and whose manifest lists
    /// that file's SHA-256 to match; it serves those bytes. Every file hashes right; only the
    /// install's recomputation of the lane roots and the MetaRoot can refuse it.
    case tamperedSnapshot = "tampered_snapshot"
    /// It also offers, at its newest snapshot's height, one with another MetaRoot (nobody else
    /// vouches for it).
    case forgedSnapshot = "forged_snapshot"
    /// It never answers a chunk request (its chunks pass their deadline; it is dropped as slow).
    case slowChunks = "slow_chunks"
}

/// What `tamperedSnapshot` serves: a snapshot the primary took (uncatalogued, only the liar
/// offers it) with an altered manifest and the one byte changed.
struct SnapshotForgery {
    var name: String
    var snapshotPath: String
    var offer: SnapshotOffersDocument.Offer
    var manifestBytes: [UInt8]
    var path: String
    var offset: UInt64
    var flip: UInt8 = 0x40

    /// The forgery of the snapshot at `snapshotPath`: its largest SST (or largest file), one
    /// byte in the middle changed. nil when it has no file with bytes.
    static func of(_ snapshotPath: String, fileSystem: any FileSystem) -> SnapshotForgery? {
        guard var manifest = try? SnapshotVerifier.readManifestAndBytes(fileSystem: fileSystem, path: snapshotPath).manifest else { return nil }
        let ssts = manifest.files.indices.filter { manifest.files[$0].path.hasSuffix(".sst") && manifest.files[$0].sizeBytes > 0 }
        let candidates = ssts.isEmpty ? Array(manifest.files.indices) : ssts
        guard let index = candidates.max(by: { manifest.files[$0].sizeBytes < manifest.files[$1].sizeBytes }), manifest.files[index].sizeBytes > 0,
            var bytes = try? fileSystem.readFile(PathComponents.join(snapshotPath, manifest.files[index].path))
        else { return nil }
        let offset = manifest.files[index].sizeBytes / 2
        var forgery = SnapshotForgery(
            name: "l\(manifest.height)", snapshotPath: snapshotPath,
            offer: SnapshotOffersDocument.Offer(name: "", height: 0, metaRoot: "", manifestSHA256: "", sizeBytes: 0, files: 0), manifestBytes: [],
            path: manifest.files[index].path, offset: offset)
        bytes[Int(offset)] ^= forgery.flip
        manifest.files[index].sha256 = SnapshotOffers.digest(of: bytes)
        forgery.manifestBytes = manifest.encoded()
        forgery.offer = SnapshotOffersDocument.Offer(
            name: forgery.name, height: manifest.height, metaRoot: manifest.metaRoot, manifestSHA256: SnapshotOffers.digest(of: forgery.manifestBytes),
            sizeBytes: manifest.totalBytes, files: manifest.files.count)
        return forgery
    }

    var digest: String { offer.manifestSHA256 }

    /// A byte range of the forged snapshot's file, as a peer serves it (206), the byte changed.
    func chunk(_ path: String, offset: UInt64, count: UInt64, fileSystem: any FileSystem) -> PeerResponse {
        guard let handle = try? fileSystem.openFile(PathComponents.join(snapshotPath, path), options: .readOnly) else {
            return PeerResponse(status: 404, body: Array("no such file".utf8))
        }
        defer { try? handle.close() }
        let size = (try? handle.size()) ?? 0
        guard offset < size, var bytes = try? handle.read(at: offset, count: Int(min(count, size - offset))) else {
            return PeerResponse(status: 416, body: Array("past the end".utf8))
        }
        if path == self.path, self.offset >= offset, self.offset < offset + UInt64(bytes.count) { bytes[Int(self.offset - offset)] ^= flip }
        let last = offset + UInt64(bytes.count) - 1
        return PeerResponse(status: 206, headers: ["content-range": "bytes \(offset)-\(last)/\(size)"], body: bytes)
    }
}

extension SyncSwarmRun {
    /// The byzantine node's answer to a state-sync request: the primary's honest one, altered as
    /// `lie` says. nil: never answered.
    func lyingAnswer(_ request: StateSyncRequest, lie: SnapshotLie, honest: PeerResponse) -> Result<PeerResponse, PeerTransportError>? {
        var answer = honest
        switch (lie, request) {
        case (.slowChunks, .chunk):
            return nil
        case (.alteredChunk, .chunk) where answer.status == 206 && !answer.body.isEmpty:
            answer.body[random.int(in: 0...(answer.body.count - 1))] ^= UInt8(1 << random.int(in: 0...7))
        case (.alteredManifest, .manifest) where answer.status == 200 && !answer.body.isEmpty:
            answer.body[random.int(in: 0...(answer.body.count - 1))] ^= 0x20
        case (.forgedSnapshot, .offers):
            guard var document = try? JSONDocument.decode(SnapshotOffersDocument.self, from: answer.body), var forged = document.snapshots.first,
                let root = Hash32(hex: forged.metaRoot)
            else { break }
            forged.name += "-forged"
            forged.metaRoot = ByzantineMode.forked(root).hex
            forged.manifestSHA256 = SnapshotOffers.digest(of: Array(forged.name.utf8))
            document.snapshots.insert(forged, at: 0)
            answer.body = JSONDocument.encodeBytes(document)
        case (.tamperedSnapshot, .offers):
            guard let forgery, var document = try? JSONDocument.decode(SnapshotOffersDocument.self, from: answer.body) else { break }
            document.snapshots.insert(forgery.offer, at: 0)
            answer.body = JSONDocument.encodeBytes(document)
        case (.tamperedSnapshot, .manifest(let name)) where name == forgery?.name:
            answer = PeerResponse(status: 200, headers: ["content-type": "application/json"], body: forgery!.manifestBytes)
        case (.tamperedSnapshot, .chunk(let name, let path, let offset, let count)) where name == forgery?.name:
            answer = forgery!.chunk(path, offset: offset, count: count, fileSystem: nodes[0].fileSystem)
        default:
            break
        }
        return .success(answer)
    }

    /// A block after each of its snapshots, the primary takes one more (uncatalogued) for the
    /// liar to forge: newer than any snapshot an honest peer offers.
    func takeForgedSnapshotIfDue() {
        let every = setup.snapshotEveryBlocks
        guard setup.snapshotLie == .tamperedSnapshot, every > 0, model.height % every == 1, model.height > 1, let engine = nodes[0].engine else { return }
        let path = "/liar/s\(model.height)"
        do {
            _ = try SnapshotCreator.create(engine: engine, fileSystem: nodes[0].fileSystem, outputPath: path, nowSeconds: now / 1_000_000_000)
        } catch {
            failure = OracleViolation(.snapshot, expected: "the primary (no faults) takes the liar's snapshot \(path)", found: "\(error)")
            return
        }
        forgery = SnapshotForgery.of(path, fileSystem: nodes[0].fileSystem)
        if let forgery { forgedDigests.insert(forgery.digest) }
    }
}
