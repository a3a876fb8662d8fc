import SystemPackage

/// An operating error from a `FileSystem`: what failed, where, and why.
///
/// Every error keeps its context — the operation, the path, the byte offset where one applies,
/// and the `errno` the kernel (or the simulation) reported — so that the message an operator
/// reads names the file and the place. Programmer errors (a closed handle used again, a negative
/// offset) are not thrown; they trap.
///
/// `injected` is `true` when `SimulatedFileSystem` manufactured the error on purpose, so an
/// oracle can tell an injected fault from a real bug.
public struct FileSystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broad class of failure. The engine decides on the class, never on the message.
    public enum Code: String, Sendable, Equatable, CaseIterable {
        /// The path or one of its parents does not exist (ENOENT).
        case notFound
        /// The path exists and the operation needed it not to (EEXIST).
        case alreadyExists
        /// A directory was expected (ENOTDIR) or a file was expected (EISDIR).
        case wrongKind
        /// A directory to remove is not empty (ENOTEMPTY).
        case directoryNotEmpty
        /// Permission denied (EACCES, EPERM, EROFS).
        case permissionDenied
        /// The device is full (ENOSPC, EDQUOT).
        case noSpace
        /// A read or write failed at the device (EIO), or a short write could not be completed.
        case ioError
        /// `fsync`/`fdatasync` failed. Fatal to the caller's in-memory view: the kernel may have
        /// dropped the dirty pages and a later sync can report success without writing them.
        case syncFailed
        /// Another holder has the exclusive lock (EWOULDBLOCK from `flock`).
        case locked
        /// `close` was interrupted (EINTR); the descriptor is closed anyway and must not be
        /// closed again.
        case interrupted
        /// The simulated machine crashed: nothing more happens until `SimulatedFileSystem.crash()`.
        case crashed
        /// A link or rename across file systems (EXDEV): copy instead.
        case crossDevice
        /// Anything else; `errno` says what.
        case other
    }

    /// The operation that failed, named after its system call (`"pwrite"`, `"fdatasync"`).
    public var operation: String
    public var code: Code
    /// The file or directory the operation was on.
    public var path: String
    /// The byte offset of a positional read or write, if any.
    public var offset: UInt64?
    /// The raw error number, when one exists.
    public var errno: Int32?
    /// `true` when `SimulatedFileSystem` injected this error on purpose.
    public var injected: Bool
    /// A human detail, e.g. "wrote 512 of 4096 bytes".
    public var detail: String

    public init(
        _ code: Code, operation: String, path: String, offset: UInt64? = nil, errno: Int32? = nil,
        injected: Bool = false, detail: String = ""
    ) {
        self.code = code
        self.operation = operation
        self.path = path
        self.offset = offset
        self.errno = errno
        self.injected = injected
        self.detail = detail
    }

    /// Builds an error from a kernel `errno`, choosing the `Code` that the engine acts on.
    public init(errno: Errno, operation: String, path: String, offset: UInt64? = nil) {
        self.init(
            Self.code(for: errno), operation: operation, path: path,
            offset: offset, errno: errno.rawValue, detail: errno.description)
    }

    /// A failed `fsync`/`fdatasync`, whatever its errno: always `syncFailed` (fatal, never
    /// retried). The sync calls build their errors here, so the decision is the caller's kind of
    /// call, not a spelling of its name.
    public init(syncErrno errno: Errno, operation: String, path: String) {
        self.init(.syncFailed, operation: operation, path: path, offset: nil, errno: errno.rawValue, detail: errno.description)
    }

    /// The code the engine acts on for `errno` from any call but a sync (see `init(syncErrno:)`).
    static func code(for errno: Errno) -> Code {
        switch errno {
        case .noSuchFileOrDirectory: return .notFound
        case .fileExists: return .alreadyExists
        case .notDirectory, .isDirectory: return .wrongKind
        case .directoryNotEmpty: return .directoryNotEmpty
        case .permissionDenied, .notPermitted, .readOnlyFileSystem: return .permissionDenied
        case .noSpace, .diskQuotaExceeded: return .noSpace
        case .ioError: return .ioError
        case .wouldBlock: return .locked
        case .interrupted: return .interrupted
        case .improperLink: return .crossDevice
        default: return .other
        }
    }

    public var description: String {
        var text = "\(operation) \(path)"
        if let offset { text += " at offset \(offset)" }
        text += ": \(code.rawValue)"
        if !detail.isEmpty { text += " (\(detail))" }
        if injected { text += " [injected]" }
        return text
    }
}
