import CRocksDBBridge
import FaultFS
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A RocksDB environment whose file I/O goes through a `FileSystem`: RocksDB's files then get the
/// same durability model, faults and crashes as the engine's own files.
///
/// Thread-safe: RocksDB calls it from its background threads. It owns the C++ environment; every
/// database opened with it keeps it alive, and it is destroyed after the last one closes.
public final class RocksDBEnvironment: Sendable {
    let bridge: RocksDBFileSystemBridge
    /// The `rocksdb::Env` from `rvb_env_create`, for `rvb_db_open`.
    nonisolated(unsafe) let pointer: OpaquePointer
    /// A simulated machine: RocksDB's clock stands still, and databases opened here do no
    /// background work the caller does not wait for (no automatic compaction), so that every
    /// file operation happens in an order the seed fixes.
    public let isSimulation: Bool

    /// - Parameter simulation: give RocksDB a clock that stands still and sleeps that return at
    ///   once, so a simulated run is a function of its seed. The default is to do so exactly when
    ///   the file system is simulated.
    public init(fileSystem: any FileSystem, simulation: Bool? = nil) {
        bridge = RocksDBFileSystemBridge(fileSystem: fileSystem)
        var callbacks = RocksDBFileSystemBridge.makeCallbacks()
        callbacks.context = Unmanaged.passUnretained(bridge).toOpaque()
        let simulated = simulation ?? fileSystem.runsUnderSimulation
        isSimulation = simulated
        pointer = OpaquePointer(rvb_env_create(&callbacks, simulated ? 1 : 0))
    }

    deinit {
        rvb_env_destroy(UnsafeMutableRawPointer(pointer))
    }

    /// Files RocksDB has open through this environment (for leak checks in tests).
    public var openFileCount: Int { bridge.handles.withLock { $0.count } }
}

/// The Swift half of the bridge: the handle and lock tables and the C callbacks.
final class RocksDBFileSystemBridge: Sendable {
    let fileSystem: any FileSystem
    let handles = Mutex<[UInt64: any FileHandle]>([:])
    let locks = Mutex<[UInt64: any FileLock]>([:])
    /// What RocksDB reads of its MANIFEST and CURRENT files, read until two reads agree (see
    /// `stableContent`), by handle token.
    let stableContents = Mutex<[UInt64: [UInt8]]>([:])

    /// Reads of a MANIFEST or CURRENT file before its content counts as stable: the first read
    /// and `BadReads.rereadsMax` more, one more for the agreeing pair.
    static let stableReadsMax = BadReads.rereadsMax + 2

    /// RocksDB trusts what it reads of its MANIFEST more than it should: a record at the end
    /// that does not verify is taken for a torn write and dropped, and RocksDB then writes a new
    /// MANIFEST without it and deletes the files it named. A single bad read (a flipped bit on the
    /// way, a misdirected read) while a lane opens would roll the lane back for good. So these
    /// files are read whole, from the media (clean cached pages dropped), until two reads agree,
    /// and RocksDB is served that content.
    static func needsStableRead(_ path: String) -> Bool {
        let name = PathComponents.name(of: path)
        return name == "CURRENT" || name.hasPrefix("MANIFEST-")
    }

    /// The content of `handle` read until two consecutive reads agree (bounded; the last read
    /// when they never do — RocksDB's checksums then judge it).
    static func stableContent(_ handle: any FileHandle, sizeBytes: UInt64) throws(FileSystemError) -> [UInt8] {
        var previous: [UInt8]?
        var bytes: [UInt8] = []
        for _ in 0..<stableReadsMax {
            try handle.dropCachedPages()
            bytes = try handle.read(at: 0, count: Int(sizeBytes))
            if bytes == previous { break }
            previous = bytes
        }
        return bytes
    }
    private let nextToken = Atomic<UInt64>(1)

    init(fileSystem: any FileSystem) {
        self.fileSystem = fileSystem
    }

    func token() -> UInt64 { nextToken.add(1, ordering: .relaxed).oldValue }

    static func from(_ context: UnsafeMutableRawPointer?) -> RocksDBFileSystemBridge {
        Unmanaged<RocksDBFileSystemBridge>.fromOpaque(context!).takeUnretainedValue()
    }

    func handle(_ token: UInt64) -> (any FileHandle)? { handles.withLock { $0[token] } }

    /// Runs `body`, mapping a `FileSystemError` to a bridge status and message.
    static func run(_ message: UnsafeMutablePointer<CChar>?, _ body: () throws(FileSystemError) -> Void) -> Int32 {
        do {
            try body()
            return Int32(RVB_OK)
        } catch {
            write(error.description, to: message)
            switch error.code {
            case .notFound: return Int32(RVB_NOT_FOUND)
            case .noSpace: return Int32(RVB_NO_SPACE)
            case .alreadyExists: return Int32(RVB_ALREADY_EXISTS)
            case .locked: return Int32(RVB_BUSY)
            case .crossDevice: return Int32(RVB_NOT_SUPPORTED)
            case .crashed: return Int32(RVB_CRASHED)
            default: return Int32(RVB_IO_ERROR)
            }
        }
    }

    static func write(_ text: String, to message: UnsafeMutablePointer<CChar>?) {
        guard let message else { return }
        let bytes = Array(text.utf8.prefix(Int(RVB_MESSAGE_BYTES) - 1))
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { message.update(from: $0.baseAddress!, count: $0.count) }
        }
        message[bytes.count] = 0
    }

    /// The common shape of a callback on one path: find the bridge, decode the path, map errors.
    static func onPath(
        _ context: UnsafeMutableRawPointer?, _ path: UnsafePointer<CChar>?, _ message: UnsafeMutablePointer<CChar>?,
        _ body: (any FileSystem, String) throws(FileSystemError) -> Void
    ) -> Int32 {
        let bridge = from(context)
        let decoded = String(cString: path!)
        return run(message) { () throws(FileSystemError) in try body(bridge.fileSystem, decoded) }
    }

    static func missingHandle(_ token: UInt64, _ message: UnsafeMutablePointer<CChar>?) -> Int32 {
        write("bridge: no open file with handle \(token)", to: message)
        return Int32(RVB_IO_ERROR)
    }

    /// The callback table; `context` is filled per environment.
    static func makeCallbacks() -> rvb_callbacks {
        var table = rvb_callbacks()
        installFileCallbacks(&table)
        installPathCallbacks(&table)
        installLockCallbacks(&table)
        return table
    }

    /// Opens `path` for RocksDB in the bridge's `mode` and registers the handle; returns its token
    /// and the file's size. A table file opened for reading is read whole once when it must be
    /// stable (see `needsStableRead`).
    func open(_ path: String, mode: Int32) throws(FileSystemError) -> (token: UInt64, sizeBytes: UInt64) {
        let options: OpenOptions
        switch Int(mode) {
        case Int(RVB_OPEN_READ): options = .readOnly
        case Int(RVB_OPEN_WRITE_TRUNCATE): options = OpenOptions(creation: .createIfMissing, writable: true, truncate: true)
        default: options = .createOrOpen
        }
        let handle = try fileSystem.openFile(path, options: options)
        let size: UInt64
        var stable: [UInt8]?
        do throws(FileSystemError) {
            size = try handle.size()
            if Int(mode) == Int(RVB_OPEN_READ) && Self.needsStableRead(path) {
                stable = try Self.stableContent(handle, sizeBytes: size)
            }
        } catch {
            try? handle.close()
            throw error
        }
        let registered = token()
        handles.withLock { $0[registered] = handle }
        if let stable { stableContents.withLock { $0[registered] = stable } }
        return (registered, size)
    }

    /// Reads up to `count` bytes at `offset` into `buffer` (the stable copy first, when there is
    /// one); returns how many, fewer only at end of file.
    func read(
        _ handle: any FileHandle, token: UInt64, at offset: UInt64, into buffer: UnsafeMutablePointer<CChar>, count: Int
    ) throws(FileSystemError) -> Int {
        var total = 0
        if let stable = stableContents.withLock({ $0[token] }), offset < UInt64(stable.count) {
            total = min(count, stable.count - Int(offset))
            stable.withUnsafeBytes { source in
                UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + Int(offset), byteCount: total)
            }
        }
        // Bounded: each round reads at least one byte or stops at end of file.
        while total < count {
            let target = UnsafeMutableRawBufferPointer(start: buffer + total, count: count - total)
            let got = try handle.read(into: target, at: offset + UInt64(total))
            if got == 0 { break }
            total += got
        }
        return total
    }

    /// Open, read, append, truncate, sync and close, on handles the bridge registered.
    static func installFileCallbacks(_ table: inout rvb_callbacks) {
        table.open_file = { context, path, mode, handleOut, sizeOut, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            let path = String(cString: path!)
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                let opened = try bridge.open(path, mode: mode)
                handleOut!.pointee = opened.token
                sizeOut!.pointee = opened.sizeBytes
            }
        }
        table.read = { context, token, offset, buffer, count, readCount, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            guard let handle = bridge.handle(token) else { return RocksDBFileSystemBridge.missingHandle(token, message) }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                readCount!.pointee = try bridge.read(handle, token: token, at: offset, into: buffer!, count: count)
            }
        }
        table.append = { context, token, bytes, count, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            guard let handle = bridge.handle(token) else { return RocksDBFileSystemBridge.missingHandle(token, message) }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                try handle.append(UnsafeRawBufferPointer(start: bytes, count: count))
            }
        }
        table.truncate_file = { context, token, size, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            guard let handle = bridge.handle(token) else { return RocksDBFileSystemBridge.missingHandle(token, message) }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in try handle.truncate(to: size) }
        }
        table.sync_file = { context, token, full, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            guard let handle = bridge.handle(token) else { return RocksDBFileSystemBridge.missingHandle(token, message) }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                if full != 0 { try handle.fullSync() } else { try handle.sync() }
            }
        }
        table.close_file = { context, token, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            bridge.stableContents.withLock { _ = $0.removeValue(forKey: token) }
            guard let handle = bridge.handles.withLock({ $0.removeValue(forKey: token) }) else {
                return RocksDBFileSystemBridge.missingHandle(token, message)
            }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in try handle.close() }
        }
    }

    /// Status, listing, removal, creation, rename, link and directory sync, by path.
    static func installPathCallbacks(_ table: inout rvb_callbacks) {
        table.status = { context, path, isDirectory, size, links, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            let path = String(cString: path!)
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                guard let status = try bridge.fileSystem.status(path) else {
                    throw FileSystemError(.notFound, operation: "lstat", path: path)
                }
                isDirectory!.pointee = status.kind == .directory ? 1 : 0
                size!.pointee = status.sizeBytes
                links!.pointee = status.linkCount
            }
        }
        table.list_directory = { context, path, names, count, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            let path = String(cString: path!)
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                let entries = try bridge.fileSystem.listDirectory(path)
                let totalBytes = entries.reduce(0) { $0 + $1.utf8.count + 1 }
                let block = malloc(max(1, totalBytes))!.assumingMemoryBound(to: CChar.self)
                var cursor = block
                for entry in entries {
                    for byte in entry.utf8 {
                        cursor.pointee = CChar(bitPattern: byte)
                        cursor += 1
                    }
                    cursor.pointee = 0
                    cursor += 1
                }
                names!.pointee = block
                count!.pointee = entries.count
            }
        }
        table.remove_file = { context, path, message in
            RocksDBFileSystemBridge.onPath(context, path, message) { (fileSystem, path) throws(FileSystemError) in try fileSystem.removeFile(path) }
        }
        table.create_directory = { context, path, message in
            RocksDBFileSystemBridge.onPath(context, path, message) { (fileSystem, path) throws(FileSystemError) in try fileSystem.createDirectory(path) }
        }
        table.remove_directory = { context, path, message in
            RocksDBFileSystemBridge.onPath(context, path, message) { (fileSystem, path) throws(FileSystemError) in try fileSystem.removeDirectory(path) }
        }
        table.rename_path = { context, source, target, message in
            RocksDBFileSystemBridge.onPath(context, source, message) { (fileSystem, source) throws(FileSystemError) in
                try fileSystem.rename(source, to: String(cString: target!))
            }
        }
        table.link_path = { context, source, target, message in
            RocksDBFileSystemBridge.onPath(context, source, message) { (fileSystem, source) throws(FileSystemError) in
                try fileSystem.link(source, to: String(cString: target!))
            }
        }
        table.sync_directory = { context, path, message in
            RocksDBFileSystemBridge.onPath(context, path, message) { (fileSystem, path) throws(FileSystemError) in try fileSystem.syncDirectory(path) }
        }
    }

    /// RocksDB's LOCK file, through the file system's advisory locks.
    static func installLockCallbacks(_ table: inout rvb_callbacks) {
        table.lock_file = { context, path, lockOut, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            let path = String(cString: path!)
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in
                let lock = try bridge.fileSystem.lockFile(path)
                let token = bridge.token()
                bridge.locks.withLock { $0[token] = lock }
                lockOut!.pointee = token
            }
        }
        table.unlock_file = { context, token, message in
            let bridge = RocksDBFileSystemBridge.from(context)
            guard let lock = bridge.locks.withLock({ $0.removeValue(forKey: token) }) else {
                return RocksDBFileSystemBridge.missingHandle(token, message)
            }
            return RocksDBFileSystemBridge.run(message) { () throws(FileSystemError) in try lock.unlock() }
        }
    }
}
