import Synchronization

/// What kind of crash `SimulatedFileSystem.crash(_:)` simulates.
public enum CrashKind: String, Sendable, CaseIterable, Codable {
    /// The process dies; the kernel and its page cache live on, so every completed write
    /// survives. Handles die and locks are released.
    case processCrash = "process_crash"
    /// The machine loses power: only synced data and synced directory entries are certain;
    /// unsynced changes survive, vanish, tear or reorder as the `FaultPlan` says.
    case powerLoss = "power_loss"
}

/// A deterministic, in-memory `FileSystem` that models the page cache apart from the durable
/// media and injects the faults of a `FaultPlan` (the fault families of `docs/RULES.md`).
///
/// Determinism: every random choice comes from the seeded `DeterministicRandom`; there is no
/// clock. Given the same seed, plan and sequence of calls, the trace hash is the same. Calls
/// from several threads are serialized by one lock; the order they arrive in is the caller's
/// to make deterministic.
///
/// Operations are counted from 1. `scheduleCrash(atOperation:)` halts the machine when that
/// operation starts (it does not happen); every later call throws `crashed` until `crash(_:)`
/// builds the post-crash image. Every operation and every injected fault is recorded in the
/// trace, injected ones tagged as such.
///
/// Durability model: see `FileSystem` and `FileHandle`. Directory entries become durable only
/// through `syncDirectory` of their directory; file data only through `sync`/`fullSync`.
public final class SimulatedFileSystem: FileSystem {
    private let state: Mutex<SimulatedState>

    /// - Parameters:
    ///   - seed: drives every fault decision.
    ///   - plan: which faults fire and how often.
    ///   - traceEventsMax: how many recent events to keep for inspection (the hash covers all).
    public init(seed: UInt64, plan: FaultPlan = .none, traceEventsMax: Int = 10_000) {
        state = Mutex(SimulatedState(seed: seed, plan: plan, traceEventsMax: traceEventsMax))
    }

    public var runsUnderSimulation: Bool { true }

    // MARK: Control

    /// An independent copy of the machine — storage, durable images, pending changes, counters
    /// and random state — for running many experiments from one prepared state. Take it with
    /// no handles open and no locks held (handles do not carry over).
    public func clone() -> SimulatedFileSystem {
        let copy = state.withLock { state -> SimulatedState in
            precondition(state.lockedInodes.isEmpty, "clone with a lock held")
            precondition(state.inodes.values.allSatisfy { $0.openCount == 0 }, "clone with open handles")
            return state
        }
        return SimulatedFileSystem(state: copy)
    }

    private init(state: SimulatedState) {
        self.state = Mutex(state)
    }

    /// Operations started so far.
    public var operationCount: UInt64 { state.withLock { $0.operationCount } }

    /// Halts the machine when operation number `operation` starts (`nil` cancels). Each call
    /// with an operation arms crash point number `crashPointsArmed + 1`; a suppressed one is
    /// counted but not armed.
    public func scheduleCrash(atOperation operation: UInt64?) {
        state.withLock { state in
            precondition(operation.map { $0 > state.operationCount } ?? true, "crash point already passed")
            guard let operation else {
                state.crashAtOperation = nil
                return
            }
            state.crashPointsArmed += 1
            state.crashAtOperation = state.suppressedCrashPoints.contains(state.crashPointsArmed) ? nil : operation
        }
    }

    /// Leaves out faults and crash points by number (see `faultsDrawn`, `crashPointsArmed`):
    /// they are drawn as before, so the random stream stays aligned, but not applied. Set it
    /// before the first operation.
    public func suppress(faults: Set<UInt64>, crashPoints: Set<UInt64>) {
        state.withLock { state in
            state.suppressedFaults = faults
            state.suppressedCrashPoints = crashPoints
        }
    }

    /// Faults drawn so far (applied or suppressed), numbered from 1.
    public var faultsDrawn: UInt64 { state.withLock { $0.faultsDrawn } }

    /// Crash points armed so far (applied or suppressed), numbered from 1.
    public var crashPointsArmed: UInt64 { state.withLock { $0.crashPointsArmed } }

    /// Halts the machine now, as a scheduled crash point would: every later call throws
    /// `crashed` until `crash(_:)`. Use it to stop a component that would otherwise keep writing
    /// (closing a RocksDB instance flushes) before building the post-crash image.
    public func halt() {
        state.withLock { state in
            state.halted = true
            state.trace.record(
                index: state.operationCount, operation: "halt", path: "", offset: nil, length: nil, outcome: "halted",
                injected: ["crash_point"])
        }
    }

    /// `true` once a scheduled crash point was reached and until `crash(_:)`.
    public var isHalted: Bool { state.withLock { $0.halted } }

    /// Crashes the machine and builds the post-crash image: handles from before die (using one
    /// throws `crashed`), locks are released, and under `.powerLoss` unsynced data and entries
    /// are resolved by the plan. Also clears any scheduled crash point.
    public func crash(_ kind: CrashKind) {
        state.withLock { state in
            state.crashAtOperation = nil
            switch kind {
            case .processCrash: state.processCrash()
            case .powerLoss: state.powerLoss()
            }
            state.trace.record(
                index: state.operationCount, operation: "crash", path: "", offset: nil, length: nil,
                outcome: kind.rawValue, injected: ["crash"])
            state.checkInvariants()
        }
    }

    /// Turns every fault family off (`false`) or back on, e.g. while the simulator checks state.
    public func setFaultsEnabled(_ enabled: Bool) {
        state.withLock { $0.faultsEnabled = enabled }
    }

    /// Replaces the fault plan from now on.
    public func setPlan(_ plan: FaultPlan) {
        state.withLock { $0.plan = plan }
    }

    public var plan: FaultPlan { state.withLock { $0.plan } }

    /// A hash of every event so far; equal for equal (seed, plan, calls).
    public var traceHash: UInt64 { state.withLock { $0.trace.hash } }

    /// The most recent events (at most `traceEventsMax`).
    public var traceEvents: [TraceEvent] { state.withLock { $0.trace.events } }

    /// Sends every future event to `sink` as well (for JSONL trace files).
    public func setTraceSink(_ sink: (@Sendable (TraceEvent) -> Void)?) {
        state.withLock { $0.trace.sink = sink }
    }

    /// Leaves the offsets and lengths of operations on paths under these prefixes out of the trace
    /// hash. For files whose bytes a component makes random on purpose — RocksDB writes a random
    /// session id into every SST and MANIFEST edit, which shifts lengths by a byte now and then —
    /// so that the hash still pins every operation, path and outcome.
    public func setOpaqueLengthPrefixes(_ prefixes: [String]) {
        state.withLock { $0.trace.opaqueLengthPrefixes = prefixes }
    }

    /// Records an engine or simulator event in the trace (it is hashed like any other).
    public func recordEvent(_ name: String, detail: String) {
        state.withLock { state in
            state.trace.record(
                index: state.operationCount, operation: name, path: "", offset: nil, length: nil, outcome: detail,
                injected: [])
        }
    }

    /// Records a fault the simulator injected above the file system (an operator's mistake, say)
    /// in the trace, tagged as injected, and counts it under `name` with the file system's own.
    public func recordInjectedFault(_ name: String, detail: String) {
        state.withLock { state in
            state.injectedCounts[name, default: 0] += 1
            state.trace.record(
                index: state.operationCount, operation: name, path: "", offset: nil, length: nil, outcome: detail, injected: [name])
        }
    }

    /// How many times each fault family fired so far, by its raw name (and `crash_point`).
    public var injectedFaultCounts: [String: UInt64] { state.withLock { $0.injectedCounts } }

    /// The files at or under `path` (a file, or a directory walked through its current
    /// entries) whose media bytes corruption at rest has struck — bit rot at rest, or a
    /// misdirected write into them — sorted. Hard links share the verdict (one inode). Not an
    /// operation: for the oracles, which may excuse damage only where it landed.
    public func filesDamagedAtRest(under path: String) -> [String] {
        state.withLock { state in
            guard let id = try? state.lookup(path, operation: "oracle") else { return [] }
            var found: [String] = []
            var stack = [(id, path)]
            // Bounded: every inode of the tree is visited once (a directory has one parent).
            while let (next, nextPath) = stack.popLast() {
                let inode = state.inodes[next]!
                if inode.kind == .file {
                    if inode.damagedAtRest { found.append(nextPath) }
                    continue
                }
                for (name, child) in inode.entries { stack.append((child, PathComponents.join(nextPath, name))) }
            }
            return found.sorted()
        }
    }

    /// The bytes the page cache holds for all files together.
    public var cachedBytesTotal: UInt64 { state.withLock { $0.cachedBytesTotal } }

    // MARK: Operation plumbing

    /// Runs one counted operation under the lock and records it in the trace with its outcome.
    private func perform<Result: Sendable>(
        _ name: String, _ path: String, offset: UInt64? = nil, length: Int? = nil,
        _ body: (inout SimulatedState) throws(FileSystemError) -> Result
    ) throws(FileSystemError) -> Result {
        try state.withLock { (state: inout SimulatedState) throws(FileSystemError) -> Result in
            try state.begin(name, path: path)
            if state.fires(.interrupts) {
                // POSIX calls other than close are retried on EINTR inside the file system; the
                // trace shows the retry and the operation then runs once.
                state.trace.record(
                    index: state.operationCount, operation: name, path: path, offset: offset, length: length,
                    outcome: "EINTR, retried", injected: [FaultFamily.interrupts.rawValue])
                state.injectedInOperation.removeAll()
            }
            do throws(FileSystemError) {
                let result = try body(&state)
                state.finish(name, path: path, offset: offset, length: length)
                return result
            } catch {
                state.finish(name, path: path, offset: offset, length: length, error: error)
                throw error
            }
        }
    }

    // MARK: FileSystem

    public func openFile(_ path: String, options: OpenOptions) throws(FileSystemError) -> any FileHandle {
        let (id, epoch) = try perform("open", path) { (state) throws(FileSystemError) -> (UInt64, UInt64) in
            let (parent, name) = try state.resolveParent(path, operation: "open")
            var id = state.inodes[parent]!.entries[name]
            if let existing = id {
                guard options.creation != .createNew else {
                    throw FileSystemError(.alreadyExists, operation: "open", path: path)
                }
                guard state.inodes[existing]!.kind == .file else {
                    throw FileSystemError(.wrongKind, operation: "open", path: path, detail: "is a directory")
                }
            } else {
                guard options.creation != .openExisting else {
                    throw FileSystemError(.notFound, operation: "open", path: path)
                }
                if state.fires(.noSpace) { throw state.injectedError(.noSpace, "open", path) }
                let created = state.makeInode(.file)
                state.setEntry(parent, name, created)
                id = created
            }
            if options.truncate { state.applyTruncate(id!, sizeBytes: 0) }
            state.inodes[id!]!.openCount += 1
            return (id!, state.epoch)
        }
        return SimulatedFileHandle(
            fileSystem: self, inodeID: id, epoch: epoch, path: path, writable: options.writable)
    }

    public func createDirectory(_ path: String) throws(FileSystemError) {
        try perform("mkdir", path) { (state) throws(FileSystemError) in
            let (parent, name) = try state.resolveParent(path, operation: "mkdir")
            guard state.inodes[parent]!.entries[name] == nil else {
                throw FileSystemError(.alreadyExists, operation: "mkdir", path: path)
            }
            if state.fires(.noSpace) { throw state.injectedError(.noSpace, "mkdir", path) }
            state.setEntry(parent, name, state.makeInode(.directory))
        }
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        try perform("readdir", path) { (state) throws(FileSystemError) -> [String] in
            let id = try state.directory(path, operation: "readdir")
            if state.fires(.readErrors) { throw state.injectedError(.ioError, "readdir", path) }
            return state.inodes[id]!.entries.keys.sorted()
        }
    }

    public func removeFile(_ path: String) throws(FileSystemError) {
        try perform("unlink", path) { (state) throws(FileSystemError) in
            let (parent, name) = try state.resolveParent(path, operation: "unlink")
            guard let id = state.inodes[parent]!.entries[name] else {
                throw FileSystemError(.notFound, operation: "unlink", path: path)
            }
            guard state.inodes[id]!.kind == .file else {
                throw FileSystemError(.wrongKind, operation: "unlink", path: path, detail: "is a directory")
            }
            state.setEntry(parent, name, nil)
        }
    }

    public func removeDirectory(_ path: String) throws(FileSystemError) {
        try perform("rmdir", path) { (state) throws(FileSystemError) in
            let (parent, name) = try state.resolveParent(path, operation: "rmdir")
            guard let id = state.inodes[parent]!.entries[name] else {
                throw FileSystemError(.notFound, operation: "rmdir", path: path)
            }
            guard state.inodes[id]!.kind == .directory else {
                throw FileSystemError(.wrongKind, operation: "rmdir", path: path, detail: "not a directory")
            }
            guard state.inodes[id]!.entries.isEmpty else {
                throw FileSystemError(.directoryNotEmpty, operation: "rmdir", path: path)
            }
            state.setEntry(parent, name, nil)
        }
    }

    public func rename(_ source: String, to target: String) throws(FileSystemError) {
        try perform("rename", "\(source) -> \(target)") { (state) throws(FileSystemError) in
            let (sourceParent, sourceName) = try state.resolveParent(source, operation: "rename")
            let (targetParent, targetName) = try state.resolveParent(target, operation: "rename")
            guard let id = state.inodes[sourceParent]!.entries[sourceName] else {
                throw FileSystemError(.notFound, operation: "rename", path: source)
            }
            if let existing = state.inodes[targetParent]!.entries[targetName], existing != id {
                let existingKind = state.inodes[existing]!.kind
                guard existingKind == state.inodes[id]!.kind else {
                    throw FileSystemError(.wrongKind, operation: "rename", path: target)
                }
                guard existingKind == .file || state.inodes[existing]!.entries.isEmpty else {
                    throw FileSystemError(.directoryNotEmpty, operation: "rename", path: target)
                }
            }
            let group = state.nextRenameGroup
            state.nextRenameGroup += 1
            state.setEntry(sourceParent, sourceName, nil, renameGroup: group)
            state.setEntry(targetParent, targetName, id, renameGroup: group)
        }
    }

    public func link(_ source: String, to target: String) throws(FileSystemError) {
        try perform("link", "\(source) -> \(target)") { (state) throws(FileSystemError) in
            let (sourceParent, sourceName) = try state.resolveParent(source, operation: "link")
            let (targetParent, targetName) = try state.resolveParent(target, operation: "link")
            guard let id = state.inodes[sourceParent]!.entries[sourceName] else {
                throw FileSystemError(.notFound, operation: "link", path: source)
            }
            guard state.inodes[id]!.kind == .file else {
                throw FileSystemError(.wrongKind, operation: "link", path: source, detail: "is a directory")
            }
            guard state.inodes[targetParent]!.entries[targetName] == nil else {
                throw FileSystemError(.alreadyExists, operation: "link", path: target)
            }
            state.setEntry(targetParent, targetName, id)
        }
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        try perform("fsync(dir)", path) { (state) throws(FileSystemError) in
            let id = try state.directory(path, operation: "fsync(dir)")
            if state.fires(.syncErrors) {
                throw state.injectedError(.syncFailed, "fsync(dir)", path, detail: "EIO")
            }
            state.inodes[id]!.durableEntries = state.inodes[id]!.entries
            state.inodes[id]!.entryLog.removeAll()
            state.collectGarbage()
        }
    }

    public func status(_ path: String) throws(FileSystemError) -> FileStatus? {
        try perform("lstat", path) { (state) throws(FileSystemError) -> FileStatus? in
            guard let id = try state.lookup(path, operation: "lstat") else { return nil }
            let inode = state.inodes[id]!
            switch inode.kind {
            case .directory:
                return FileStatus(kind: .directory, sizeBytes: 0, linkCount: 1)
            case .file:
                let links = state.inodes.values.reduce(0) { count, directory in
                    count + directory.entries.values.filter { $0 == id }.count
                }
                return FileStatus(kind: .file, sizeBytes: UInt64(inode.cached.count), linkCount: UInt64(links))
            }
        }
    }

    public func lockFile(_ path: String) throws(FileSystemError) -> any FileLock {
        let (id, epoch) = try perform("flock", path) { (state) throws(FileSystemError) -> (UInt64, UInt64) in
            let (parent, name) = try state.resolveParent(path, operation: "flock")
            let id: UInt64
            if let existing = state.inodes[parent]!.entries[name] {
                id = existing
            } else {
                id = state.makeInode(.file)
                state.setEntry(parent, name, id)
            }
            guard state.lockedInodes.insert(id).inserted else {
                throw FileSystemError(.locked, operation: "flock", path: path, detail: "held by another holder")
            }
            return (id, state.epoch)
        }
        return SimulatedFileLock(fileSystem: self, inodeID: id, epoch: epoch, path: path)
    }

    // MARK: Handle operations

    /// Checks that a handle is still alive: a handle from before a crash throws `crashed`; a
    /// closed one is a programmer error.
    private static func checkHandle(
        _ state: SimulatedState, epoch: UInt64, closed: Bool, operation: String, path: String
    ) throws(FileSystemError) {
        guard state.epoch == epoch else {
            throw FileSystemError(.crashed, operation: operation, path: path, detail: "handle from before a crash")
        }
        precondition(!closed, "\(path): \(operation) on a closed handle")
    }

    fileprivate func handleRead(
        _ handle: SimulatedFileHandle, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64
    ) throws(FileSystemError) -> Int {
        let bytes = try perform("pread", handle.path, offset: offset, length: buffer.count) {
            (state) throws(FileSystemError) -> [UInt8] in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: "pread", path: handle.path)
            if state.fires(.readErrors) { throw state.injectedError(.ioError, "pread", handle.path, offset: offset) }
            let cached = state.inodes[handle.inodeID]!.cached
            guard offset < UInt64(cached.count) else { return [] }
            let length = min(cached.count - Int(offset), buffer.count)
            var bytes: [UInt8]
            if state.fires(.misdirectedReads) {
                // The device reads the right number of bytes from the wrong sectors; past the
                // file's end those belong to something else (garbage here). Misdirection changes
                // content, never the length a read returns.
                let shift = SimulatedState.sectorSizeBytes * state.random.int(in: 1...8)
                let position = state.random.chance(0.5) || Int(offset) < shift ? Int(offset) + shift : Int(offset) - shift
                bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &state.random) }
                let inFile = max(0, min(length, cached.count - position))
                if inFile > 0 { bytes.replaceSubrange(0..<inFile, with: cached[position..<(position + inFile)]) }
            } else {
                bytes = Array(cached[Int(offset)..<(Int(offset) + length)])
            }
            if !bytes.isEmpty && state.fires(.bitRotOnRead) {
                let bit = state.random.below(bytes.count * 8)
                bytes[bit / 8] ^= UInt8(1) << UInt8(bit % 8)
            }
            return bytes
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
        return bytes.count
    }

    /// A write at `offset`, or at the end of the file when `offset` is nil. Returns the offset.
    fileprivate func handleWrite(
        _ handle: SimulatedFileHandle, _ bytes: UnsafeRawBufferPointer, at offset: UInt64?
    ) throws(FileSystemError) -> UInt64 {
        precondition(handle.writable, "\(handle.path): write through a read-only handle")
        let data = Array(bytes)
        let name = offset == nil ? "append" : "pwrite"
        return try perform(name, handle.path, offset: offset, length: data.count) {
            (state) throws(FileSystemError) -> UInt64 in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: name, path: handle.path)
            let id = handle.inodeID
            let position = offset ?? UInt64(state.inodes[id]!.cached.count)
            if state.fires(.writeErrors) { throw state.injectedError(.ioError, name, handle.path, offset: position) }
            let growthBytes = max(0, Int(position) + data.count - state.inodes[id]!.cached.count)
            if state.fires(.noSpace) { throw state.injectedError(.noSpace, name, handle.path, offset: position) }
            if let capacity = state.plan.capacityBytes, state.cachedBytesTotal + UInt64(growthBytes) > capacity {
                throw FileSystemError(
                    .noSpace, operation: name, path: handle.path, offset: position,
                    detail: "device full (\(capacity) bytes)")
            }
            if data.count > SimulatedState.sectorSizeBytes && state.fires(.shortWrites) {
                let sectors = state.random.below(data.count / SimulatedState.sectorSizeBytes)
                let prefix = Array(data.prefix(sectors * SimulatedState.sectorSizeBytes))
                state.applyWrite(id, bytes: prefix, offset: position, mediaOffset: position)
                throw state.injectedError(
                    .ioError, name, handle.path, offset: position,
                    detail: "short write: \(prefix.count) of \(data.count) bytes, then EIO")
            }
            var mediaOffset = position
            if state.fires(.misdirectedWrites) {
                let shift = UInt64(SimulatedState.sectorSizeBytes * state.random.int(in: 1...8))
                mediaOffset = state.random.chance(0.5) || position < shift ? position + shift : position - shift
                state.inodes[id]!.damagedAtRest = true
            }
            state.applyWrite(id, bytes: data, offset: position, mediaOffset: mediaOffset)
            return position
        }
    }

    fileprivate func handleSize(_ handle: SimulatedFileHandle) throws(FileSystemError) -> UInt64 {
        try perform("fstat", handle.path) { (state) throws(FileSystemError) -> UInt64 in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: "fstat", path: handle.path)
            return UInt64(state.inodes[handle.inodeID]!.cached.count)
        }
    }

    fileprivate func handleTruncate(_ handle: SimulatedFileHandle, to sizeBytes: UInt64) throws(FileSystemError) {
        precondition(handle.writable, "\(handle.path): truncate through a read-only handle")
        try perform("ftruncate", handle.path, offset: sizeBytes) { (state) throws(FileSystemError) in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: "ftruncate", path: handle.path)
            let growth = Int(sizeBytes) - state.inodes[handle.inodeID]!.cached.count
            if growth > 0, let capacity = state.plan.capacityBytes, state.cachedBytesTotal + UInt64(growth) > capacity {
                throw FileSystemError(.noSpace, operation: "ftruncate", path: handle.path, detail: "device full")
            }
            state.applyTruncate(handle.inodeID, sizeBytes: sizeBytes)
        }
    }

    fileprivate func handleSync(_ handle: SimulatedFileHandle, operation: String) throws(FileSystemError) {
        try perform(operation, handle.path) { (state) throws(FileSystemError) in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: operation, path: handle.path)
            if state.fires(.syncErrors) {
                state.dropPending(handle.inodeID)
                throw state.injectedError(
                    .syncFailed, operation, handle.path, detail: "EIO; dirty pages dropped and marked clean")
            }
            state.syncFile(handle.inodeID)
        }
    }

    /// Clean pages go back to what the media holds: the durable image with the pending (dirty)
    /// changes applied. Pages a failed sync marked clean disappear from view.
    fileprivate func handleDropCache(_ handle: SimulatedFileHandle) throws(FileSystemError) {
        try perform("fadvise(dontneed)", handle.path) { (state) throws(FileSystemError) in
            try Self.checkHandle(state, epoch: handle.epoch, closed: handle.isClosed, operation: "fadvise", path: handle.path)
            state.dropCleanPages(handle.inodeID)
        }
    }

    fileprivate func handleClose(_ handle: SimulatedFileHandle) throws(FileSystemError) {
        try state.withLock { (state: inout SimulatedState) throws(FileSystemError) in
            // close is an operation too, but EINTR is surfaced here instead of being retried.
            try state.begin("close", path: handle.path)
            guard state.epoch == handle.epoch else {
                handle.markClosed()
                let error = FileSystemError(.crashed, operation: "close", path: handle.path, detail: "handle from before a crash")
                state.finish("close", path: handle.path, error: error)
                throw error
            }
            precondition(!handle.isClosed, "\(handle.path): closed twice")
            handle.markClosed()
            state.inodes[handle.inodeID]?.openCount -= 1
            if state.fires(.interrupts) {
                let error = state.injectedError(.interrupted, "close", handle.path, detail: "EINTR; descriptor closed")
                state.finish("close", path: handle.path, error: error)
                throw error
            }
            state.finish("close", path: handle.path)
        }
    }

    fileprivate func releaseLock(_ lock: SimulatedFileLock) throws(FileSystemError) {
        try perform("flock(unlock)", lock.path) { (state) throws(FileSystemError) in
            // A crash already released every lock of the old epoch.
            guard state.epoch == lock.epoch else { return }
            state.lockedInodes.remove(lock.inodeID)
        }
    }
}

/// A handle on a `SimulatedFileSystem` file; every call goes through the file system's lock.
final class SimulatedFileHandle: FileHandle {
    let fileSystem: SimulatedFileSystem
    let inodeID: UInt64
    let epoch: UInt64
    let path: String
    let writable: Bool
    private let closed = Atomic<Bool>(false)

    init(fileSystem: SimulatedFileSystem, inodeID: UInt64, epoch: UInt64, path: String, writable: Bool) {
        self.fileSystem = fileSystem
        self.inodeID = inodeID
        self.epoch = epoch
        self.path = path
        self.writable = writable
    }

    var isClosed: Bool { closed.load(ordering: .acquiring) }
    func markClosed() { closed.store(true, ordering: .releasing) }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(FileSystemError) -> Int {
        try fileSystem.handleRead(self, into: buffer, at: offset)
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(FileSystemError) {
        _ = try fileSystem.handleWrite(self, bytes, at: offset)
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(FileSystemError) -> UInt64 {
        try fileSystem.handleWrite(self, bytes, at: nil)
    }

    func size() throws(FileSystemError) -> UInt64 {
        try fileSystem.handleSize(self)
    }

    func truncate(to sizeBytes: UInt64) throws(FileSystemError) {
        try fileSystem.handleTruncate(self, to: sizeBytes)
    }

    func sync() throws(FileSystemError) {
        try fileSystem.handleSync(self, operation: "fdatasync")
    }

    func dropCachedPages() throws(FileSystemError) {
        try fileSystem.handleDropCache(self)
    }

    func fullSync() throws(FileSystemError) {
        try fileSystem.handleSync(self, operation: "fsync")
    }

    func close() throws(FileSystemError) {
        try fileSystem.handleClose(self)
    }
}

/// A lock held on a `SimulatedFileSystem` file; released by `unlock()` or any crash.
final class SimulatedFileLock: FileLock {
    let fileSystem: SimulatedFileSystem
    let inodeID: UInt64
    let epoch: UInt64
    let path: String
    private let released = Atomic<Bool>(false)

    init(fileSystem: SimulatedFileSystem, inodeID: UInt64, epoch: UInt64, path: String) {
        self.fileSystem = fileSystem
        self.inodeID = inodeID
        self.epoch = epoch
        self.path = path
    }

    func unlock() throws(FileSystemError) {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        try fileSystem.releaseLock(self)
    }
}
