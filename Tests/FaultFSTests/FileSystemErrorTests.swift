@testable import FaultFS
import SystemPackage
import Testing

/// How a kernel error becomes the code the engine acts on: a decision table. A failed sync is
/// `syncFailed` because the sync call says so (`init(syncErrno:)`), whatever the errno and
/// however the operation is spelled; no other call's error becomes `syncFailed`.
@Suite("FileSystemError codes")
struct FileSystemErrorTests {
    @Test(arguments: [
        (Errno.noSuchFileOrDirectory, FileSystemError.Code.notFound), (.fileExists, .alreadyExists), (.notDirectory, .wrongKind),
        (.isDirectory, .wrongKind), (.directoryNotEmpty, .directoryNotEmpty), (.permissionDenied, .permissionDenied),
        (.readOnlyFileSystem, .permissionDenied), (.noSpace, .noSpace), (.diskQuotaExceeded, .noSpace), (.ioError, .ioError),
        (.wouldBlock, .locked), (.interrupted, .interrupted), (.improperLink, .crossDevice), (.badFileDescriptor, .other),
    ])
    func errnoDecidesTheCodeOfEveryCallButASync(errno: Errno, code: FileSystemError.Code) {
        #expect(FileSystemError(errno: errno, operation: "pwrite", path: "/x").code == code)
        // The name alone no longer decides: an EIO from something spelled "fsync" is an I/O error.
        #expect(FileSystemError(errno: errno, operation: "fsync", path: "/x").code == code)
    }

    @Test(arguments: [Errno.ioError, .noSpace, .invalidArgument, .badFileDescriptor, .interrupted])
    func aFailedSyncIsSyncFailedWhateverItsErrno(errno: Errno) {
        let error = FileSystemError(syncErrno: errno, operation: "fdatasync", path: "/wal/segment")
        #expect(error.code == .syncFailed)
        #expect(error.errno == errno.rawValue && error.path == "/wal/segment" && error.operation == "fdatasync")
    }
}
