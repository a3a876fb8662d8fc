/// The simulated machine's storage: an inode table with a page-cache view and a durable view of
/// every file, and a volatile and a durable set of entries for every directory.
///
/// Invariants (checked by `checkInvariants()` in debug builds):
/// - inode 0 is the root directory and always exists;
/// - every entry names an inode that exists;
/// - a file's `pending` changes, applied in order to `durable`, give what a successful sync
///   would make durable (not necessarily `cached`: misdirected writes and "pages marked clean"
///   make the two differ, as on real hardware).
struct SimulatedState {
    static let rootID: UInt64 = 0
    static let sectorSizeBytes = 512
    /// Past this many unsynced changes on one file the kernel writes the oldest half back on
    /// its own, as real write-back does; it also bounds the simulation's memory.
    static let pendingChangesMax = 4_096

    enum PendingChange {
        case write(offset: UInt64, bytes: [UInt8])
        case truncate(sizeBytes: UInt64)
    }

    struct Inode {
        enum Kind { case file, directory }
        var kind: Kind
        var cached: [UInt8] = []
        var durable: [UInt8] = []
        var pending: [PendingChange] = []
        var entries: [String: UInt64] = [:]
        var durableEntries: [String: UInt64] = [:]
        /// Entry changes since the directory was last synced, in order. A power loss keeps a
        /// prefix of them (journaling file systems commit metadata in order).
        var entryLog: [EntryChange] = []
        var openCount = 0
        /// Corruption at rest struck this file's media bytes (bit rot at rest, a misdirected write):
        /// what the oracles may excuse, file by file.
        var damagedAtRest = false
    }

    struct EntryChange {
        var name: String
        var target: UInt64?
        /// Set for the two halves of a rename: they are resolved together unless non-atomic.
        var renameGroup: UInt64?
    }

    var random: DeterministicRandom
    var plan: FaultPlan
    var faultsEnabled = true
    var inodes: [UInt64: Inode] = [SimulatedState.rootID: Inode(kind: .directory)]
    var nextInodeID: UInt64 = 1
    /// Bumped by every crash; handles from an older epoch are dead.
    var epoch: UInt64 = 0
    var operationCount: UInt64 = 0
    var crashAtOperation: UInt64?
    var halted = false
    var lockedInodes: Set<UInt64> = []
    var nextRenameGroup: UInt64 = 0
    var cachedBytesTotal: UInt64 = 0
    var trace: Trace
    /// Faults injected by the operation in progress, recorded with its trace event.
    var injectedInOperation: [String] = []
    /// How many times each fault family fired (plus crash points and crashes).
    var injectedCounts: [String: UInt64] = [:]
    /// Faults drawn so far, numbered from 1 in the order they fired (suppressed ones included).
    var faultsDrawn: UInt64 = 0
    /// Crash points armed so far (`scheduleCrash` with an operation), numbered from 1.
    var crashPointsArmed: UInt64 = 0
    /// Faults and crash points, by number, that are drawn but not applied: a shrinker leaves
    /// them out one by one. The random stream is consumed exactly as without them.
    var suppressedFaults: Set<UInt64> = []
    var suppressedCrashPoints: Set<UInt64> = []

    init(seed: UInt64, plan: FaultPlan, traceEventsMax: Int) {
        random = DeterministicRandom(seed: seed)
        self.plan = plan
        trace = Trace(eventsMax: traceEventsMax)
    }

    // MARK: Faults

    /// Draws whether `family` fires now, and tags the current operation if it does.
    mutating func fires(_ family: FaultFamily) -> Bool {
        guard faultsEnabled, plan.isOn(family) else { return false }
        guard random.chance(plan.rate(family)) else { return false }
        faultsDrawn += 1
        guard !suppressedFaults.contains(faultsDrawn) else { return false }
        injectedInOperation.append(family.rawValue)
        injectedCounts[family.rawValue, default: 0] += 1
        return true
    }

    // MARK: Operations and the trace

    /// Starts operation `name`: counts it, and halts the machine if it is the scheduled crash
    /// point. A halted machine refuses everything until `crash(_:)`.
    mutating func begin(_ name: String, path: String) throws(FileSystemError) {
        if halted {
            throw FileSystemError(.crashed, operation: name, path: path, injected: true, detail: "machine halted")
        }
        operationCount += 1
        injectedInOperation.removeAll(keepingCapacity: true)
        if let crashAtOperation, operationCount == crashAtOperation {
            halted = true
            injectedCounts["crash_point", default: 0] += 1
            trace.record(
                index: operationCount, operation: name, path: path, offset: nil, length: nil,
                outcome: "crashed", injected: ["crash_point"])
            throw FileSystemError(
                .crashed, operation: name, path: path, injected: true,
                detail: "crash scheduled at operation \(crashAtOperation)")
        }
    }

    mutating func finish(
        _ name: String, path: String, offset: UInt64? = nil, length: Int? = nil, error: FileSystemError? = nil
    ) {
        trace.record(
            index: operationCount, operation: name, path: path, offset: offset, length: length,
            outcome: error.map { "error:\($0.code.rawValue)" } ?? "ok", injected: injectedInOperation)
    }

    func injectedError(
        _ code: FileSystemError.Code, _ operation: String, _ path: String, offset: UInt64? = nil, detail: String = ""
    ) -> FileSystemError {
        FileSystemError(code, operation: operation, path: path, offset: offset, injected: true, detail: detail)
    }

    // MARK: Paths

    /// The parent directory's inode and the last name of `path`.
    func resolveParent(_ path: String, operation: String) throws(FileSystemError) -> (UInt64, String) {
        var components = PathComponents.split(path)
        guard let name = components.popLast() else {
            throw FileSystemError(.wrongKind, operation: operation, path: path, detail: "the root has no parent")
        }
        var current = Self.rootID
        for component in components {
            guard let next = inodes[current]!.entries[component] else {
                throw FileSystemError(.notFound, operation: operation, path: path, detail: "no directory \(component)")
            }
            guard inodes[next]!.kind == .directory else {
                throw FileSystemError(.wrongKind, operation: operation, path: path, detail: "\(component) is a file")
            }
            current = next
        }
        return (current, name)
    }

    /// The inode at `path`, or `nil` when nothing is there.
    /// The inode at `path`, or `nil` when nothing is there (also when a parent is missing, as
    /// `lstat` reports ENOENT); a parent that is a file throws `wrongKind` (ENOTDIR).
    func lookup(_ path: String, operation: String) throws(FileSystemError) -> UInt64? {
        var current = Self.rootID
        for component in PathComponents.split(path) {
            guard inodes[current]!.kind == .directory else {
                throw FileSystemError(.wrongKind, operation: operation, path: path, detail: "a parent is a file")
            }
            guard let next = inodes[current]!.entries[component] else { return nil }
            current = next
        }
        return current
    }

    func directory(_ path: String, operation: String) throws(FileSystemError) -> UInt64 {
        guard let id = try lookup(path, operation: operation) else {
            throw FileSystemError(.notFound, operation: operation, path: path)
        }
        guard inodes[id]!.kind == .directory else {
            throw FileSystemError(.wrongKind, operation: operation, path: path, detail: "not a directory")
        }
        return id
    }

    mutating func makeInode(_ kind: Inode.Kind) -> UInt64 {
        let id = nextInodeID
        nextInodeID += 1
        inodes[id] = Inode(kind: kind)
        return id
    }

    // MARK: File data

    /// Applies a write to the page cache and queues it for the media at `mediaOffset` (which a
    /// misdirected write shifts).
    mutating func applyWrite(_ id: UInt64, bytes: [UInt8], offset: UInt64, mediaOffset: UInt64) {
        let before = UInt64(inodes[id]!.cached.count)
        Self.write(bytes, at: offset, into: &inodes[id]!.cached)
        cachedBytesTotal += UInt64(inodes[id]!.cached.count) - before
        inodes[id]!.pending.append(.write(offset: mediaOffset, bytes: bytes))
        boundPending(id)
    }

    mutating func applyTruncate(_ id: UInt64, sizeBytes: UInt64) {
        let before = UInt64(inodes[id]!.cached.count)
        Self.resize(&inodes[id]!.cached, to: sizeBytes)
        cachedBytesTotal = cachedBytesTotal - before + sizeBytes
        inodes[id]!.pending.append(.truncate(sizeBytes: sizeBytes))
        boundPending(id)
    }

    private mutating func boundPending(_ id: UInt64) {
        guard inodes[id]!.pending.count > Self.pendingChangesMax else { return }
        let writtenBack = inodes[id]!.pending.prefix(Self.pendingChangesMax / 2)
        for change in writtenBack { Self.apply(change, to: &inodes[id]!.durable) }
        inodes[id]!.pending.removeFirst(writtenBack.count)
    }

    static func write(_ bytes: [UInt8], at offset: UInt64, into image: inout [UInt8]) {
        let end = Int(offset) + bytes.count
        if image.count < end { image.append(contentsOf: repeatElement(0, count: end - image.count)) }
        image.replaceSubrange(Int(offset)..<end, with: bytes)
    }

    static func resize(_ image: inout [UInt8], to sizeBytes: UInt64) {
        let size = Int(sizeBytes)
        if image.count > size {
            image.removeLast(image.count - size)
        } else {
            image.append(contentsOf: repeatElement(0, count: size - image.count))
        }
    }

    static func apply(_ change: PendingChange, to image: inout [UInt8]) {
        switch change {
        case .write(let offset, let bytes): write(bytes, at: offset, into: &image)
        case .truncate(let sizeBytes): resize(&image, to: sizeBytes)
        }
    }

    /// A successful sync: every pending change reaches the media in order.
    mutating func syncFile(_ id: UInt64) {
        for change in inodes[id]!.pending { Self.apply(change, to: &inodes[id]!.durable) }
        inodes[id]!.pending.removeAll()
    }

    /// A failed sync with "pages marked clean": the pending changes are dropped (the cache
    /// still shows them) and nothing reaches the media.
    mutating func dropPending(_ id: UInt64) {
        inodes[id]!.pending.removeAll()
    }

    /// `POSIX_FADV_DONTNEED`: the cached view becomes the durable image plus the dirty changes.
    mutating func dropCleanPages(_ id: UInt64) {
        var image = inodes[id]!.durable
        for change in inodes[id]!.pending { Self.apply(change, to: &image) }
        let before = inodes[id]!.cached.count
        inodes[id]!.cached = image
        cachedBytesTotal = cachedBytesTotal &- UInt64(before) &+ UInt64(image.count)
    }

    // MARK: Crashes

    /// A process crash: handles die and locks are released; the kernel keeps the page cache, so
    /// nothing written is lost.
    mutating func processCrash() {
        epoch += 1
        halted = false
        lockedInodes.removeAll()
        for id in inodes.keys { inodes[id]!.openCount = 0 }
    }

    /// A power loss: the page cache is gone and the media holds the durable image plus whatever
    /// subset of the unsynced changes the plan lets survive.
    mutating func powerLoss() {
        processCrash()
        resolveDirectories()
        collectUnreachable()
        for id in inodes.keys.sorted() where inodes[id]!.kind == .file {
            resolveFile(id)
        }
        cachedBytesTotal = inodes.values.reduce(0) { $0 + UInt64($1.cached.count) }
    }

    /// Changes the live entry `name` of directory `id` (nil removes it) and logs the change.
    mutating func setEntry(_ id: UInt64, _ name: String, _ target: UInt64?, renameGroup: UInt64? = nil) {
        inodes[id]!.entries[name] = target
        inodes[id]!.entryLog.append(EntryChange(name: name, target: target, renameGroup: renameGroup))
    }

    /// Each directory keeps its durable entries plus a prefix of the changes logged since its
    /// last sync: every change survives unless `lostDirectoryEntries` fires, and the first lost
    /// one ends the prefix. The two names of a rename survive together, except when the rename
    /// is non-atomic: then each half is a coin flip.
    private mutating func resolveDirectories() {
        var groupSurvives: [UInt64: Bool] = [:]
        var nonAtomicGroups: Set<UInt64> = []
        for id in inodes.keys.sorted() where inodes[id]!.kind == .directory {
            var durable = inodes[id]!.durableEntries
            for change in inodes[id]!.entryLog {
                let survives: Bool
                if let group = change.renameGroup {
                    if groupSurvives[group] == nil {
                        groupSurvives[group] = !fires(.lostDirectoryEntries)
                        if fires(.nonAtomicRename) { nonAtomicGroups.insert(group) }
                    }
                    survives = nonAtomicGroups.contains(group) ? random.chance(0.5) : groupSurvives[group]!
                } else {
                    survives = !fires(.lostDirectoryEntries)
                }
                guard survives else { break }
                durable[change.name] = change.target
            }
            inodes[id]!.durableEntries = durable
            inodes[id]!.entries = durable
            inodes[id]!.entryLog.removeAll()
        }
    }

    /// Drops inodes no directory entry reaches. After a power loss nothing is open, so this is
    /// exactly what the next mount would see.
    private mutating func collectUnreachable() {
        var reachable: Set<UInt64> = [Self.rootID]
        var stack: [UInt64] = [Self.rootID]
        // Bounded by the inode count: each inode is pushed at most once.
        while let id = stack.popLast() {
            for child in inodes[id]!.entries.values.sorted() where reachable.insert(child).inserted {
                if inodes[child]!.kind == .directory { stack.append(child) }
            }
        }
        for id in Array(inodes.keys) where !reachable.contains(id) { inodes[id] = nil }
    }

    /// Collects inodes with no name (volatile, durable, or in a directory change a power loss
    /// could still keep) and no open handle: an unlinked file whose unlink has been made
    /// durable. (A file created and unlinked since its directory's last sync comes back if the
    /// power loss keeps the create and loses the unlink.)
    mutating func collectGarbage() {
        var named: Set<UInt64> = [Self.rootID]
        for inode in inodes.values where inode.kind == .directory {
            named.formUnion(inode.entries.values)
            named.formUnion(inode.durableEntries.values)
            named.formUnion(inode.entryLog.compactMap(\.target))
        }
        for (id, inode) in inodes where !named.contains(id) && inode.openCount == 0 {
            cachedBytesTotal -= UInt64(inode.cached.count)
            inodes[id] = nil
        }
    }

    private mutating func resolveFile(_ id: UInt64) {
        var image = inodes[id]!.durable
        var survivors: [PendingChange] = []
        for change in inodes[id]!.pending where !fires(.lostUnsyncedWrites) {
            survivors.append(change)
        }
        if survivors.count > 1 && fires(.reorderedWrites) { survivors.shuffle(using: &random) }
        for change in survivors {
            if case .write(let offset, let bytes) = change, fires(.tornWrites) {
                tear(bytes, at: offset, into: &image)
            } else {
                Self.apply(change, to: &image)
            }
        }
        if !image.isEmpty && fires(.bitRotAtRest) {
            let bit = random.below(image.count * 8)
            image[bit / 8] ^= UInt8(1) << UInt8(bit % 8)
            inodes[id]!.damagedAtRest = true
        }
        inodes[id]!.durable = image
        inodes[id]!.cached = image
        inodes[id]!.pending.removeAll()
    }

    /// A torn write: each sector it touches keeps the new bytes, keeps the old, or turns to garbage.
    private mutating func tear(_ bytes: [UInt8], at offset: UInt64, into image: inout [UInt8]) {
        // One draw from the machine's stream seeds the tear, so the stream does not depend on
        // the write's length (RocksDB's writes vary by a byte between runs: random session ids).
        var random = self.random.fork()
        let sector = UInt64(Self.sectorSizeBytes)
        let end = offset + UInt64(bytes.count)
        var start = offset
        // Bounded: each round advances to the next sector boundary.
        while start < end {
            let boundary = min(end, (start / sector + 1) * sector)
            let part = Array(bytes[Int(start - offset)..<Int(boundary - offset)])
            switch random.int(in: 0..<3) {
            case 0: Self.write(part, at: start, into: &image)
            case 1: if image.count < Int(boundary) { Self.resize(&image, to: boundary) }
            default: Self.write(part.map { _ in UInt8.random(in: 0...255, using: &random) }, at: start, into: &image)
            }
            start = boundary
        }
    }

    // MARK: Invariants

    func checkInvariants() {
        precondition(inodes[Self.rootID]?.kind == .directory, "root directory missing")
        for inode in inodes.values where inode.kind == .directory {
            for child in inode.entries.values {
                precondition(inodes[child] != nil, "entry names a missing inode \(child)")
            }
        }
    }
}
