#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SystemPackage

/// The thin syscall layer under `PosixFileSystem`, in swift-system's style: each call returns a
/// `Result` and the caller chooses the EINTR policy per call. `close` never comes through here:
/// it is never retried.
enum PosixSyscall {
    /// Calls `body` until it returns something other than -1 with EINTR (when `retryOnInterrupt`).
    /// Bounded: a signal storm that interrupts a syscall forever is not a condition we defend.
    static func valueOrErrno<Value: FixedWidthInteger>(
        retryOnInterrupt: Bool, _ body: () -> Value
    ) -> Result<Value, Errno> {
        let attemptsMax = 1_000
        for _ in 0..<attemptsMax {
            let value = body()
            if value != -1 { return .success(value) }
            let error = Errno(rawValue: errno)
            if retryOnInterrupt && error == .interrupted { continue }
            return .failure(error)
        }
        return .failure(.interrupted)
    }

    static func nothingOrErrno<Value: FixedWidthInteger>(
        retryOnInterrupt: Bool, _ body: () -> Value
    ) -> Result<Void, Errno> {
        valueOrErrno(retryOnInterrupt: retryOnInterrupt, body).map { _ in () }
    }

    /// `fdatasync(2)`. Retried on EINTR: an interrupted sync has not reported a write-back error.
    static func fdatasync(_ descriptor: FileDescriptor) -> Result<Void, Errno> {
        #if os(Linux)
        nothingOrErrno(retryOnInterrupt: true) { Glibc.fdatasync(descriptor.rawValue) }
        #else
        nothingOrErrno(retryOnInterrupt: true) { Darwin.fsync(descriptor.rawValue) }
        #endif
    }

    /// `posix_fadvise(2)` with `POSIX_FADV_DONTNEED` over the whole file (a hint; it returns the
    /// error number instead of setting errno).
    static func dropCachedPages(_ descriptor: FileDescriptor) -> Result<Void, Errno> {
        #if os(Linux)
        let result = Glibc.posix_fadvise(descriptor.rawValue, 0, 0, POSIX_FADV_DONTNEED)
        return result == 0 ? .success(()) : .failure(Errno(rawValue: result))
        #else
        return .success(())
        #endif
    }

    /// `fsync(2)`.
    static func fsync(_ descriptor: FileDescriptor) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: true) { system_fsync(descriptor.rawValue) }
    }

    /// `flock(2)` with `LOCK_EX | LOCK_NB`: fails with EWOULDBLOCK when another holder has it.
    static func lockExclusiveNonBlocking(_ descriptor: FileDescriptor) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: true) { flock(descriptor.rawValue, LOCK_EX | LOCK_NB) }
    }

    static func unlock(_ descriptor: FileDescriptor) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: true) { flock(descriptor.rawValue, LOCK_UN) }
    }

    /// `mkdir(2)`; not retried on EINTR (swift-nio's choice: the directory may exist by then).
    static func mkdir(_ path: String) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: false) { system_mkdir(path, 0o755) }
    }

    static func rename(_ source: String, _ target: String) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: false) { system_rename(source, target) }
    }

    static func link(_ source: String, _ target: String) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: false) { system_link(source, target) }
    }

    static func unlink(_ path: String) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: false) { system_unlink(path) }
    }

    static func rmdir(_ path: String) -> Result<Void, Errno> {
        nothingOrErrno(retryOnInterrupt: false) { system_rmdir(path) }
    }

    /// `lstat(2)`; `.success(nil)` when nothing is at `path`.
    static func lstat(_ path: String) -> Result<FileStatus?, Errno> {
        var raw = stat()
        let result = nothingOrErrno(retryOnInterrupt: true) { system_lstat(path, &raw) }
        switch result {
        case .failure(.noSuchFileOrDirectory): return .success(nil)
        case .failure(let error): return .failure(error)
        case .success: return .success(fileStatus(raw))
        }
    }

    static func fstat(_ descriptor: FileDescriptor) -> Result<FileStatus, Errno> {
        var raw = stat()
        return nothingOrErrno(retryOnInterrupt: true) { system_fstat(descriptor.rawValue, &raw) }
            .map { fileStatus(raw) }
    }

    private static func fileStatus(_ raw: stat) -> FileStatus {
        let kind: FileStatus.Kind
        switch raw.st_mode & S_IFMT {
        case S_IFREG: kind = .file
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symbolicLink
        default: kind = .other
        }
        return FileStatus(kind: kind, sizeBytes: UInt64(raw.st_size), linkCount: UInt64(raw.st_nlink))
    }

    /// The entry names of a directory, sorted, without `.` and `..`.
    static func listDirectory(_ path: String) -> Result<[String], Errno> {
        guard let stream = opendir(path) else { return .failure(Errno(rawValue: errno)) }
        defer { closedir(stream) }
        var names: [String] = []
        // Bounded by the directory's size: readdir returns nil at the end.
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { return .failure(Errno(rawValue: errno)) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names.sorted())
    }
}

// The seams to libc, one per call, so a test build could intercept them.
private func system_fsync(_ descriptor: Int32) -> Int32 { fsync(descriptor) }
private func system_mkdir(_ path: String, _ mode: mode_t) -> Int32 { mkdir(path, mode) }
private func system_rename(_ source: String, _ target: String) -> Int32 { rename(source, target) }
private func system_link(_ source: String, _ target: String) -> Int32 { link(source, target) }
private func system_unlink(_ path: String) -> Int32 { unlink(path) }
private func system_rmdir(_ path: String) -> Int32 { rmdir(path) }
private func system_lstat(_ path: String, _ buffer: inout stat) -> Int32 { lstat(path, &buffer) }
private func system_fstat(_ descriptor: Int32, _ buffer: inout stat) -> Int32 { fstat(descriptor, &buffer) }
