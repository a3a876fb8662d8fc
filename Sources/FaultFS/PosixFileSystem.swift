import Synchronization
import SystemPackage

/// The production `FileSystem`: real POSIX calls through swift-system.
///
/// EINTR is retried wherever a retry is safe (never for `close`), short writes are completed,
/// and every failure is thrown as a `FileSystemError` with the path, the offset and the
/// syscall. A failed `fsync`/`fdatasync` is thrown as `syncFailed`, which the engine treats as
/// fatal. Durability is exactly the kernel's: see `FileSystem` and `FileHandle`.
public struct PosixFileSystem: FileSystem {
    public init() {}

    public var runsUnderSimulation: Bool { false }

    public func openFile(_ path: String, options: OpenOptions) throws(FileSystemError) -> any FileHandle {
        var flags: FileDescriptor.OpenOptions = [.closeOnExec]
        switch options.creation {
        case .openExisting: break
        case .createIfMissing: flags.insert(.create)
        case .createNew: flags.formUnion([.create, .exclusiveCreate])
        }
        if options.truncate { flags.insert(.truncate) }
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(
                FilePath(path), options.writable ? .readWrite : .readOnly, options: flags,
                permissions: flags.contains(.create) ? [.ownerReadWrite, .groupRead, .otherRead] : nil)
        } catch {
            throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "open", path: path)
        }
        let sizeBytes: UInt64
        switch PosixSyscall.fstat(descriptor) {
        case .success(let status):
            guard status.kind == .file else {
                try? descriptor.close()
                throw FileSystemError(.wrongKind, operation: "open", path: path, detail: "not a regular file")
            }
            sizeBytes = status.sizeBytes
        case .failure(let error):
            try? descriptor.close()
            throw FileSystemError(errno: error, operation: "fstat", path: path)
        }
        return PosixFileHandle(path: path, descriptor: descriptor, writable: options.writable, sizeBytes: sizeBytes)
    }

    public func createDirectory(_ path: String) throws(FileSystemError) {
        try PosixSyscall.mkdir(path).orThrow(operation: "mkdir", path: path)
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        try PosixSyscall.listDirectory(path).orThrow(operation: "readdir", path: path)
    }

    public func removeFile(_ path: String) throws(FileSystemError) {
        try PosixSyscall.unlink(path).orThrow(operation: "unlink", path: path)
    }

    public func removeDirectory(_ path: String) throws(FileSystemError) {
        try PosixSyscall.rmdir(path).orThrow(operation: "rmdir", path: path)
    }

    public func rename(_ source: String, to target: String) throws(FileSystemError) {
        try PosixSyscall.rename(source, target).orThrow(operation: "rename", path: "\(source) -> \(target)")
    }

    public func link(_ source: String, to target: String) throws(FileSystemError) {
        try PosixSyscall.link(source, target).orThrow(operation: "link", path: "\(source) -> \(target)")
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.directory, .closeOnExec])
        } catch {
            throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "open(dir)", path: path)
        }
        defer { try? descriptor.close() }
        try PosixSyscall.fsync(descriptor).orThrowSyncFailed(operation: "fsync(dir)", path: path)
    }

    public func status(_ path: String) throws(FileSystemError) -> FileStatus? {
        try PosixSyscall.lstat(path).orThrow(operation: "lstat", path: path)
    }

    public func lockFile(_ path: String) throws(FileSystemError) -> any FileLock {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(
                FilePath(path), .readWrite, options: [.create, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "open(lock)", path: path)
        }
        switch PosixSyscall.lockExclusiveNonBlocking(descriptor) {
        case .success:
            return PosixFileLock(path: path, descriptor: descriptor)
        case .failure(let error):
            try? descriptor.close()
            throw FileSystemError(errno: error, operation: "flock", path: path)
        }
    }
}

extension Result where Failure == Errno {
    func orThrow(operation: String, path: String, offset: UInt64? = nil) throws(FileSystemError) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error): throw FileSystemError(errno: error, operation: operation, path: path, offset: offset)
        }
    }

    /// For `fsync`/`fdatasync`: any failure is `syncFailed`.
    func orThrowSyncFailed(operation: String, path: String) throws(FileSystemError) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let error): throw FileSystemError(syncErrno: error, operation: operation, path: path)
        }
    }
}

/// An open POSIX file. The descriptor and the append position live under one lock.
final class PosixFileHandle: FileHandle {
    private struct State {
        var descriptor: FileDescriptor?
        /// Where the next `append` writes; kept in step with writes and truncates made here.
        var endOffset: UInt64
    }

    let path: String
    private let writable: Bool
    private let state: Mutex<State>

    init(path: String, descriptor: FileDescriptor, writable: Bool, sizeBytes: UInt64) {
        self.path = path
        self.writable = writable
        self.state = Mutex(State(descriptor: descriptor, endOffset: sizeBytes))
    }

    deinit {
        // A leaked descriptor is a programmer error, but closing it here keeps the process
        // healthy; it is never a sync.
        state.withLock { state in
            if let descriptor = state.descriptor { try? descriptor.close() }
        }
    }

    private func openDescriptor(_ state: State) -> FileDescriptor {
        guard let descriptor = state.descriptor else { preconditionFailure("\(path): used after close") }
        return descriptor
    }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(FileSystemError) -> Int {
        let descriptor = state.withLock { openDescriptor($0) }
        do {
            return try descriptor.read(fromAbsoluteOffset: Int64(offset), into: buffer, retryOnInterrupt: true)
        } catch {
            throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "pread", path: path, offset: offset)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(FileSystemError) {
        precondition(writable, "\(path): write through a read-only handle")
        let descriptor = state.withLock { openDescriptor($0) }
        try writeAll(descriptor, bytes, at: offset)
        state.withLock { $0.endOffset = max($0.endOffset, offset + UInt64(bytes.count)) }
    }

    func append(_ bytes: UnsafeRawBufferPointer) throws(FileSystemError) -> UInt64 {
        precondition(writable, "\(path): append through a read-only handle")
        return try state.withLock { (state) throws(FileSystemError) -> UInt64 in
            let offset = state.endOffset
            try writeAll(openDescriptor(state), bytes, at: offset)
            state.endOffset = offset + UInt64(bytes.count)
            return offset
        }
    }

    /// `pwrite` in a loop until every byte is written; a zero-byte write is reported as EIO.
    private func writeAll(_ descriptor: FileDescriptor, _ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(FileSystemError) {
        var written = 0
        // Bounded: every round writes at least one byte or throws.
        while written < bytes.count {
            let position = offset + UInt64(written)
            let count: Int
            do {
                count = try descriptor.write(
                    toAbsoluteOffset: Int64(position), UnsafeRawBufferPointer(rebasing: bytes[written...]),
                    retryOnInterrupt: true)
            } catch {
                throw FileSystemError(
                    errno: error as? Errno ?? .ioError, operation: "pwrite", path: path, offset: position)
            }
            if count == 0 {
                throw FileSystemError(
                    .ioError, operation: "pwrite", path: path, offset: position,
                    detail: "wrote \(written) of \(bytes.count) bytes, then no progress")
            }
            written += count
        }
    }

    func size() throws(FileSystemError) -> UInt64 {
        let descriptor = state.withLock { openDescriptor($0) }
        return try PosixSyscall.fstat(descriptor).orThrow(operation: "fstat", path: path).sizeBytes
    }

    func truncate(to sizeBytes: UInt64) throws(FileSystemError) {
        precondition(writable, "\(path): truncate through a read-only handle")
        try state.withLock { (state) throws(FileSystemError) in
            do {
                try openDescriptor(state).resize(to: Int64(sizeBytes), retryOnInterrupt: true)
            } catch {
                throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "ftruncate", path: path, offset: sizeBytes)
            }
            state.endOffset = sizeBytes
        }
    }

    func sync() throws(FileSystemError) {
        let descriptor = state.withLock { openDescriptor($0) }
        try PosixSyscall.fdatasync(descriptor).orThrowSyncFailed(operation: "fdatasync", path: path)
    }

    func fullSync() throws(FileSystemError) {
        let descriptor = state.withLock { openDescriptor($0) }
        try PosixSyscall.fsync(descriptor).orThrowSyncFailed(operation: "fsync", path: path)
    }

    func dropCachedPages() throws(FileSystemError) {
        let descriptor = state.withLock { openDescriptor($0) }
        try PosixSyscall.dropCachedPages(descriptor).orThrow(operation: "posix_fadvise", path: path)
    }

    func close() throws(FileSystemError) {
        let descriptor = state.withLock { state -> FileDescriptor in
            let descriptor = openDescriptor(state)
            state.descriptor = nil
            return descriptor
        }
        do {
            // swift-system's close never retries EINTR: on Linux the descriptor is gone anyway.
            try descriptor.close()
        } catch {
            throw FileSystemError(errno: error as? Errno ?? .ioError, operation: "close", path: path)
        }
    }
}

/// A held `flock` on an open descriptor.
final class PosixFileLock: FileLock {
    let path: String
    private let descriptor: Mutex<FileDescriptor?>

    init(path: String, descriptor: FileDescriptor) {
        self.path = path
        self.descriptor = Mutex(descriptor)
    }

    deinit {
        descriptor.withLock { if let held = $0 { try? held.close() } }
    }

    func unlock() throws(FileSystemError) {
        guard let held = descriptor.withLock({ value -> FileDescriptor? in
            let held = value
            value = nil
            return held
        }) else { return }
        defer { try? held.close() }
        try PosixSyscall.unlock(held).orThrow(operation: "flock(unlock)", path: path)
    }
}
