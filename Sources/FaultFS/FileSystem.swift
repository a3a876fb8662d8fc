/// How `FileSystem.openFile` opens a path.
public struct OpenOptions: Sendable, Equatable {
    /// What to do when the path does or does not exist.
    public enum Creation: Sendable, Equatable {
        /// The file must exist (`notFound` otherwise).
        case openExisting
        /// Create the file if it is missing (`O_CREAT`).
        case createIfMissing
        /// Create the file; fail with `alreadyExists` if it is there (`O_CREAT | O_EXCL`).
        case createNew
    }

    public var creation: Creation
    /// `false` opens read-only; writes through the handle then trap.
    public var writable: Bool
    /// Truncate to zero length on open (`O_TRUNC`). Not durable until the file is synced.
    public var truncate: Bool

    public init(creation: Creation, writable: Bool, truncate: Bool = false) {
        precondition(!truncate || writable, "truncating needs a writable handle")
        self.creation = creation
        self.writable = writable
        self.truncate = truncate
    }

    /// Open an existing file for reading.
    public static let readOnly = OpenOptions(creation: .openExisting, writable: false)
    /// Open an existing file for reading and writing.
    public static let readWrite = OpenOptions(creation: .openExisting, writable: true)
    /// Create the file if missing and open it for reading and writing.
    public static let createOrOpen = OpenOptions(creation: .createIfMissing, writable: true)
    /// Create a new file that must not exist yet.
    public static let createNew = OpenOptions(creation: .createNew, writable: true)
}

/// What `FileSystem.status` reports about a path (`stat(2)`).
public struct FileStatus: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case file
        case directory
        /// Symbolic links are reported, never followed: snapshot validation rejects them.
        case symbolicLink
        case other
    }

    public var kind: Kind
    public var sizeBytes: UInt64
    /// Number of hard links to the inode (`st_nlink`).
    public var linkCount: UInt64

    public init(kind: Kind, sizeBytes: UInt64, linkCount: UInt64) {
        self.kind = kind
        self.sizeBytes = sizeBytes
        self.linkCount = linkCount
    }
}

/// An open file. Thread-safe: RocksDB and the WAL call it from several threads.
///
/// Durability, for every method: a completed `write` or `append` is visible to later reads
/// (it is in the page cache) but survives a power loss only after a `sync()` or `fullSync()` of
/// this file has returned successfully. Until then any subset of the unsynced writes may
/// survive, in any order, and any of them may be torn at sector granularity. A failed sync
/// leaves the unsynced data in an unknown state and is fatal to the caller's in-memory view.
///
/// `close()` is not a sync. Using a handle after `close()` is a programmer error and traps.
public protocol FileHandle: AnyObject, Sendable {
    /// The path the handle was opened with.
    var path: String { get }

    /// Reads up to `buffer.count` bytes at `offset` (`pread(2)`), returning how many were read;
    /// fewer only at end of file. Does not move any file position.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(FileSystemError) -> Int

    /// Writes all of `bytes` at `offset` (`pwrite(2)`, looping over short writes). Extends the
    /// file as needed, zero-filling any gap. In the page cache only; see the type's durability
    /// note. On error some prefix, or with torn writes any subset, may have been written.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(FileSystemError)

    /// Writes all of `bytes` at the current end of the file and returns the offset they start
    /// at. Appends through one handle are serialized. Durability as for `write`.
    @discardableResult
    func append(_ bytes: UnsafeRawBufferPointer) throws(FileSystemError) -> UInt64

    /// The file's current size in bytes as seen through the page cache (`fstat(2)`).
    func size() throws(FileSystemError) -> UInt64

    /// Sets the file's size (`ftruncate(2)`): shrinks it or extends it with zeros. Durable after
    /// the next successful `sync()`.
    func truncate(to sizeBytes: UInt64) throws(FileSystemError)

    /// Makes the file's data and size durable (`fdatasync(2)`). After it returns, everything
    /// written through any handle of this file before the call survives a power loss. It does
    /// not make the file's directory entry durable: see `FileSystem.syncDirectory`.
    /// Throws `syncFailed` on failure; the caller must treat that as fatal and never retry.
    func sync() throws(FileSystemError)

    /// Like `sync()` but also flushes metadata such as timestamps (`fsync(2)`).
    func fullSync() throws(FileSystemError)

    /// Asks the kernel to drop the file's clean cached pages (`posix_fadvise(2)` with
    /// `POSIX_FADV_DONTNEED`), so later reads come from the media. After a failed fsync the
    /// kernel may keep pages it marked clean that never reached the media; recovery drops them
    /// before it reads, so it sees what is durable. Dirty pages are kept. Changes no data.
    func dropCachedPages() throws(FileSystemError)

    /// Releases the descriptor (`close(2)`). Never retried on EINTR; never a sync.
    func close() throws(FileSystemError)
}

/// An exclusive advisory lock held on a file (`flock(2)` with `LOCK_EX | LOCK_NB`).
/// Released by `unlock()` or when the process dies. Not durable: a lock is process state.
public protocol FileLock: AnyObject, Sendable {
    var path: String { get }
    func unlock() throws(FileSystemError)
}

/// The only way the engine touches storage: a synchronous, thread-safe file-system interface.
///
/// Two implementations: `PosixFileSystem` for production and `SimulatedFileSystem`, an in-memory
/// deterministic model that injects the fault families of `docs/RULES.md`. Paths are plain strings; relative
/// paths resolve against the process's working directory (POSIX) or the simulated root.
///
/// Durability, for every namespace change (create, mkdir, rename, link, unlink, rmdir): it is
/// visible at once but survives a power loss only after `syncDirectory` of the parent directory
/// returns. A new file therefore needs `sync()` on the file *and* `syncDirectory` on its parent.
public protocol FileSystem: Sendable {
    /// `true` when this file system belongs to a deterministic simulation: whatever runs over it
    /// (RocksDB through the bridge) must take its time from the simulation, stand still between
    /// operations, and do no background work the caller does not start, so a run is a function
    /// of its seed. `false` for a real device.
    var runsUnderSimulation: Bool { get }

    /// Opens (and maybe creates) a regular file (`open(2)`). A created file's directory entry is
    /// durable only after `syncDirectory` of its parent.
    func openFile(_ path: String, options: OpenOptions) throws(FileSystemError) -> any FileHandle

    /// Creates one directory (`mkdir(2)`); `alreadyExists` if the path exists. Durable after
    /// `syncDirectory` of its parent.
    func createDirectory(_ path: String) throws(FileSystemError)

    /// The names in a directory, sorted, without `.` and `..` (`opendir(3)`/`readdir(3)`).
    func listDirectory(_ path: String) throws(FileSystemError) -> [String]

    /// Removes a file's directory entry (`unlink(2)`). Durable after `syncDirectory` of the parent.
    func removeFile(_ path: String) throws(FileSystemError)

    /// Removes an empty directory (`rmdir(2)`). Durable after `syncDirectory` of the parent.
    func removeDirectory(_ path: String) throws(FileSystemError)

    /// Atomically replaces `target` with `source` (`rename(2)`). Visible at once; durable after
    /// `syncDirectory` of both parents. Sync the file's data *before* the rename, or a power
    /// loss can leave the new name pointing at empty or partial data.
    func rename(_ source: String, to target: String) throws(FileSystemError)

    /// Adds a second name for an existing file (`link(2)`): both names share the data, so this
    /// is how snapshots copy without copying. Durable after `syncDirectory` of the new name's
    /// parent.
    func link(_ source: String, to target: String) throws(FileSystemError)

    /// Makes a directory's entries durable (`open(O_DIRECTORY)` + `fsync(2)`): after it returns,
    /// every create, rename, link and unlink in that directory survives a power loss.
    /// Throws `syncFailed` on failure, which is fatal.
    func syncDirectory(_ path: String) throws(FileSystemError)

    /// What is at `path` without following a final symbolic link (`lstat(2)`); `nil` if nothing is.
    func status(_ path: String) throws(FileSystemError) -> FileStatus?

    /// Takes an exclusive, non-blocking lock on a file, creating it if needed. Throws `locked` if
    /// another holder has it — a running node locks its data directory this way.
    func lockFile(_ path: String) throws(FileSystemError) -> any FileLock
}

/// How readers tell a bad read from damage on the media: something that does not verify is read
/// again, from the media, up to `rereadsMax` more times; damage fails every read, a bad read (a
/// flipped bit on the way, a misdirected read) almost never twice. One budget for every reader
/// (WAL segments and markers, GENESIS, snapshot files, RocksDB reads through the lanes).
public enum BadReads {
    public static let rereadsMax = 6
}

extension FileSystem {
    /// `true` when something exists at `path`.
    public func exists(_ path: String) throws(FileSystemError) -> Bool {
        try status(path) != nil
    }

    /// Creates `path` and any missing parents, and syncs the parent of every component, so the
    /// whole chain is durable when this returns — also the components that already existed: a
    /// process that crashed between a `mkdir` and the sync of its parent left an entry that only
    /// the page cache holds, and a power loss can still take it (with everything under it). A
    /// parent of an existing component that cannot be opened to sync (permission denied, above
    /// the directories this process owns) is left as the operator made it. Callers racing to
    /// create the same directories all succeed.
    public func createDirectories(_ path: String) throws(FileSystemError) {
        let components = PathComponents.split(path)
        let absolute = path.hasPrefix("/")
        var current = absolute ? "" : "."
        for name in components {
            let parent = current.isEmpty ? "/" : current
            current = current + "/" + name
            if let status = try status(current) {
                guard status.kind == .directory else {
                    throw FileSystemError(.wrongKind, operation: "mkdir", path: current, detail: "not a directory")
                }
                do {
                    try syncDirectory(parent)
                } catch where error.code == .permissionDenied {
                    continue
                }
                continue
            }
            do {
                try createDirectory(current)
            } catch where error.code == .alreadyExists {
                // Another creator (a concurrent upload, another process) made it since the status.
                guard try status(current)?.kind == .directory else { throw error }
            }
            try syncDirectory(parent)
        }
    }

    /// Reads a whole file through a fresh read-only handle.
    public func readFile(_ path: String) throws(FileSystemError) -> [UInt8] {
        let handle = try openFile(path, options: .readOnly)
        defer { try? handle.close() }
        let sizeBytes = try handle.size()
        return try handle.read(at: 0, count: Int(sizeBytes))
    }

    /// Reads a whole file as the media holds it: its clean cached pages are dropped first, so
    /// pages a failed fsync marked clean (and never wrote) are not taken for data, and a re-read
    /// after a bad read does not come back from the cache.
    public func readFileFromMedia(_ path: String) throws(FileSystemError) -> [UInt8] {
        let handle = try openFile(path, options: .readOnly)
        defer { try? handle.close() }
        try handle.dropCachedPages()
        return try handle.read(at: 0, count: Int(try handle.size()))
    }

    /// Reads a whole self-checking file, reading it again while `verifies` rejects what came
    /// back: a bad read (a flipped bit on the way, a misdirected read) is not damage on the
    /// media, and the next read may be clean. Returns the first read that verifies, or the last
    /// read with `verified == false` after `1 + rereadsMax` reads — then the file itself is
    /// most likely damaged. Every read comes from the media (`readFileFromMedia`).
    public func readFile(
        _ path: String, rereadsMax: Int = BadReads.rereadsMax, verifies: ([UInt8]) -> Bool
    ) throws(FileSystemError) -> (bytes: [UInt8], verified: Bool) {
        precondition(rereadsMax >= 0 && rereadsMax <= 64, "rereads out of range")
        var bytes: [UInt8] = []
        for _ in 0...rereadsMax {
            bytes = try readFileFromMedia(path)
            if verifies(bytes) { return (bytes, true) }
        }
        return (bytes, false)
    }

    /// Writes `bytes` as the complete content of `path` durably: a temporary file is written and
    /// synced, renamed over `path`, and the parent directory synced. A crash at any point leaves
    /// either the old content or the new one, never a mix.
    public func writeFileAtomically(_ path: String, bytes: [UInt8]) throws(FileSystemError) {
        let temporaryPath = path + ".tmp"
        let handle = try openFile(temporaryPath, options: OpenOptions(creation: .createIfMissing, writable: true, truncate: true))
        do {
            try handle.write(bytes, at: 0)
            try handle.sync()
        } catch {
            try? handle.close()
            throw error
        }
        try handle.close()
        try rename(temporaryPath, to: path)
        try syncDirectory(PathComponents.parent(of: path))
    }
}

extension FileHandle {
    /// Writes all of `bytes` at `offset`; see `write(_:at:)`.
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(FileSystemError) {
        try narrowingErrors { try bytes.withUnsafeBytes { buffer in try write(buffer, at: offset) } }
    }

    /// Appends all of `bytes`; see `append(_:)`.
    @discardableResult
    public func append(_ bytes: [UInt8]) throws(FileSystemError) -> UInt64 {
        try narrowingErrors { try bytes.withUnsafeBytes { buffer in try append(buffer) } }
    }

    /// Reads up to `count` bytes at `offset`; fewer only at end of file.
    public func read(at offset: UInt64, count: Int) throws(FileSystemError) -> [UInt8] {
        precondition(count >= 0, "negative read count")
        var result = [UInt8](repeating: 0, count: count)
        let readCount = try narrowingErrors { try result.withUnsafeMutableBytes { buffer -> Int in
            var total = 0
            // Bounded: each round either reads at least one byte or stops at end of file.
            while total < buffer.count {
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[total...])
                let got = try read(into: slice, at: offset + UInt64(total))
                if got == 0 { break }
                total += got
            }
            return total
        } }
        result.removeLast(count - readCount)
        return result
    }
}

/// Runs `body`, which calls only `FileSystem` methods through a standard-library `rethrows`
/// function (such as `withUnsafeBytes`), and restores the `FileSystemError` type of its errors.
@inline(__always)
public func narrowingErrors<Result>(_ body: () throws -> Result) throws(FileSystemError) -> Result {
    do {
        return try body()
    } catch let error as FileSystemError {
        throw error
    } catch {
        preconditionFailure("only FileSystemError can be thrown here, got \(error)")
    }
}

/// Path helpers shared by both file systems.
public enum PathComponents {
    /// The non-empty components of `path`, with `.` dropped. `..` is kept as a name; callers
    /// that accept outside paths (snapshot restore) must reject it themselves.
    public static func split(_ path: String) -> [String] {
        // Over the UTF-8 bytes: "/" and "." are ASCII, and splitting by Character would pay for
        // grapheme breaking on every path of every simulated operation.
        var components: [String] = []
        for part in path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if part.count == 1 && part.first == UInt8(ascii: ".") { continue }
            components.append(String(decoding: part, as: UTF8.self))
        }
        return components
    }

    /// The parent directory of `path` (`"/"` for a top-level absolute path, `"."` for a bare name).
    public static func parent(of path: String) -> String {
        var components = split(path)
        precondition(!components.isEmpty, "the root has no parent")
        components.removeLast()
        if path.hasPrefix("/") { return "/" + components.joined(separator: "/") }
        return components.isEmpty ? "." : components.joined(separator: "/")
    }

    /// The last component of `path`.
    public static func name(of path: String) -> String {
        let components = split(path)
        precondition(!components.isEmpty, "the root has no name")
        return components[components.count - 1]
    }

    /// `base` and `name` joined by one slash.
    public static func join(_ base: String, _ name: String) -> String {
        base.hasSuffix("/") ? base + name : base + "/" + name
    }
}
