import Engine

/// The download half of `StateSyncMachine`: the chosen snapshot, its manifest, and every
/// chunk of every file — waiting, in flight (with whom and since when), staged (and by whom),
/// checked, verified. Bounded by the manifest: one entry per chunk at most.
struct StateSyncDownload: Sendable {
    struct Chunk: Sendable, Hashable {
        var path: String
        var offset: UInt64
        var count: UInt64
    }

    let offer: SnapshotOffer
    private(set) var manifest: StateSyncManifest?
    var manifestAskedOf: (peer: Int, sentAt: UInt64)?
    var manifestAttempts = 0
    private var sizes: [String: UInt64] = [:]
    private var chunkBytes: UInt64 = 1
    /// Waiting chunks, in manifest order (a requeued one goes first).
    private var waiting: [Chunk] = []
    private var sent: [Chunk: (peer: Int, sentAt: UInt64)] = [:]
    private var stagedOffsets: [String: Set<UInt64>] = [:]
    private var contributors: [String: Set<Int>] = [:]
    /// A file that failed its check with several contributors is fetched from one of them alone.
    private var pinned: [String: Int] = [:]
    private var checking: Set<String> = []
    private var verifiedFiles: Set<String> = []

    init(offer: SnapshotOffer) {
        self.offer = offer
    }

    /// Resumes what a stopped state sync staged: its verified files and staged chunks stay.
    init(resuming staged: StateSyncStaged, chunkBytes: UInt64) {
        offer = staged.offer
        verifiedFiles = staged.verifiedFiles
        stagedOffsets = staged.stagedChunks
        accept(staged.manifest, chunkBytes: chunkBytes)
    }

    /// Takes the verified manifest: every chunk of every file not yet verified, less those staged.
    mutating func accept(_ manifest: StateSyncManifest, chunkBytes: UInt64) {
        precondition(chunkBytes > 0, "chunks have a size")
        self.manifest = manifest
        self.chunkBytes = chunkBytes
        for file in manifest.files {
            sizes[file.path] = file.sizeBytes
            guard !verifiedFiles.contains(file.path) else { continue }
            waiting += chunks(of: file.path).filter { !(stagedOffsets[file.path] ?? []).contains($0.offset) }
        }
    }

    private func chunks(of path: String) -> [Chunk] {
        let size = sizes[path] ?? 0
        return stride(from: UInt64(0), to: size, by: Int(chunkBytes)).map { Chunk(path: path, offset: $0, count: min(chunkBytes, size - $0)) }
    }

    // MARK: Reading

    var isComplete: Bool { manifest.map { verifiedFiles.count == $0.files.count } ?? false }
    var inFlightCount: Int { sent.count }
    func inFlight(of peer: Int) -> Int { sent.values.filter { $0.peer == peer }.count }
    func mayServe(_ peer: Int, _ path: String) -> Bool { pinned[path].map { $0 == peer } ?? true }
    func isChecking(_ path: String) -> Bool { checking.contains(path) }

    /// Whether the file has any bytes to fetch.
    func hasChunks(_ path: String) -> Bool { (sizes[path] ?? 0) > 0 }

    func hasEveryChunk(_ path: String) -> Bool {
        chunks(of: path).allSatisfy { (stagedOffsets[path] ?? []).contains($0.offset) }
    }

    /// Files neither verified nor being checked whose chunks are all staged (an empty file has
    /// none to wait for), in manifest order.
    func filesWithEveryChunk() -> [String] {
        (manifest?.files ?? []).map(\.path).filter { !verifiedFiles.contains($0) && !checking.contains($0) && hasEveryChunk($0) }
    }

    // MARK: Changing

    mutating func nextChunk() -> Chunk? { waiting.isEmpty ? nil : waiting.removeFirst() }

    mutating func requeue(_ chunk: Chunk) { waiting.insert(chunk, at: 0) }

    mutating func send(_ chunk: Chunk, to peer: Int, now: UInt64) { sent[chunk] = (peer, now) }

    /// The chunk in flight that this answer is for, if it is the one asked of `peer`.
    mutating func takeAnswer(peer: Int, path: String, offset: UInt64) -> Chunk? {
        guard let chunk = sent.keys.first(where: { $0.path == path && $0.offset == offset }), sent[chunk]?.peer == peer else { return nil }
        sent[chunk] = nil
        return chunk
    }

    mutating func staged(_ chunk: Chunk, by peer: Int) {
        stagedOffsets[chunk.path, default: []].insert(chunk.offset)
        contributors[chunk.path, default: []].insert(peer)
    }

    mutating func markChecking(_ paths: [String]) { checking.formUnion(paths) }

    mutating func verified(_ path: String) {
        checking.remove(path)
        verifiedFiles.insert(path)
        contributors[path] = nil
        pinned[path] = nil
    }

    /// The staged file failed its check: every chunk is fetched again; with several
    /// contributors, from the lowest-numbered one alone. Returns who contributed.
    mutating func refetch(_ path: String) -> Set<Int> {
        let who = contributors[path] ?? []
        checking.remove(path)
        stagedOffsets[path] = []
        contributors[path] = nil
        pinned[path] = who.count > 1 ? who.min() : nil
        waiting = chunks(of: path) + waiting
        return who
    }

    /// A peer found faulty or unreachable: its chunks and manifest request go back to wait.
    mutating func forget(peer: Int) {
        // In chunk order, so that what is asked next does not depend on hashing.
        for (chunk, request) in sentInOrder where request.peer == peer {
            sent[chunk] = nil
            requeue(chunk)
        }
        if manifestAskedOf?.peer == peer { manifestAskedOf = nil }
        for (path, only) in pinned where only == peer { pinned[path] = nil }
    }

    /// Files pinned to a peer that may not be asked any more are fetched from anyone again.
    mutating func unpin(where gone: (Int) -> Bool) {
        for (path, only) in pinned where gone(only) { pinned[path] = nil }
    }

    private var sentInOrder: [(key: Chunk, value: (peer: Int, sentAt: UInt64))] {
        sent.sorted { ($0.key.path, $0.key.offset) < ($1.key.path, $1.key.offset) }
    }

    /// Chunks in flight past their deadline (by their size): given up, to be asked of another.
    mutating func lateChunks(now: UInt64, deadline: (UInt64) -> UInt64) -> [(peer: Int, count: UInt64)] {
        var late: [(peer: Int, count: UInt64)] = []
        for (chunk, request) in sentInOrder
        where elapsedNanoseconds(now, since: request.sentAt) >= deadline(chunk.count) {
            sent[chunk] = nil
            requeue(chunk)
            late.append((request.peer, chunk.count))
        }
        return late
    }
}
