import Crypto
import FaultFS
import Foundation

/// SHA-256 of `bytes`, as 64 lower-case hex digits (what manifests, offers and off-site keys use).
public func sha256Hex(_ bytes: [UInt8]) -> String {
    Hex.encode(SHA256.hash(data: bytes))
}

/// SHA-256 of a file, read in 1 MiB chunks; also returns the size read.
func sha256OfFile(_ fileSystem: any FileSystem, _ path: String) throws(FileSystemError) -> (hex: String, sizeBytes: UInt64) {
    let handle = try fileSystem.openFile(path, options: .readOnly)
    defer { try? handle.close() }
    var hasher = SHA256()
    let size = try handle.size()
    var offset: UInt64 = 0
    // Bounded by the file's size.
    while offset < size {
        let chunk = try handle.read(at: offset, count: Int(min(1 << 20, size - offset)))
        if chunk.isEmpty { break }
        hasher.update(data: chunk)
        offset += UInt64(chunk.count)
    }
    return (Hex.encode(hasher.finalize()), offset)
}

/// Hashes `paths` (SHA-256 and size), optionally fsyncing each, on `concurrency` threads
/// (1: in order on the caller's thread — the simulator's choice, which keeps runs deterministic).
/// Progress is reported as files finish.
func hashFiles(
    fileSystem: any FileSystem, paths: [String], concurrency: Int, syncEach: Bool,
    progress: (_ filesDone: Int, _ bytesDone: UInt64) -> Void
) throws(SnapshotError) -> [(hex: String, sizeBytes: UInt64)] {
    precondition(concurrency >= 1)
    @Sendable func one(_ path: String) throws(SnapshotError) -> (hex: String, sizeBytes: UInt64) {
        try io(path, "hashing") { () throws(FileSystemError) in
            let digest = try sha256OfFile(fileSystem, path)
            if syncEach {
                // fsync through a read-only descriptor syncs the inode.
                let handle = try fileSystem.openFile(path, options: .readOnly)
                defer { try? handle.close() }
                try handle.fullSync()
            }
            return digest
        }
    }
    if concurrency == 1 || paths.count < 2 {
        var results: [(hex: String, sizeBytes: UInt64)] = []
        var bytes: UInt64 = 0
        for path in paths {
            let result = try one(path)
            results.append(result)
            bytes += result.sizeBytes
            progress(results.count, bytes)
        }
        return results
    }
    final class Shared: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var done = 0
        var bytes: UInt64 = 0
        var results: [(hex: String, sizeBytes: UInt64)?]
        var failure: SnapshotError?
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }
    let shared = Shared(count: paths.count)
    let progressLock = NSLock()
    withoutActuallyEscaping(progress) { progress in
        nonisolated(unsafe) let report = progress
        DispatchQueue.concurrentPerform(iterations: min(concurrency, paths.count)) { _ in
            // Bounded: each round takes the next file index until none is left.
            while true {
                let index: Int? = shared.lock.withLock {
                    guard shared.failure == nil, shared.next < paths.count else { return nil }
                    defer { shared.next += 1 }
                    return shared.next
                }
                guard let index else { return }
                do throws(SnapshotError) {
                    let result = try one(paths[index])
                    let (done, bytes) = shared.lock.withLock { () -> (Int, UInt64) in
                        shared.results[index] = result
                        shared.done += 1
                        shared.bytes += result.sizeBytes
                        return (shared.done, shared.bytes)
                    }
                    progressLock.withLock { report(done, bytes) }
                } catch {
                    shared.lock.withLock { if shared.failure == nil { shared.failure = error } }
                }
            }
        }
    }
    if let failure = shared.failure { throw failure }
    return shared.results.map { $0! }
}
