/// Whole-tree operations on a `FileSystem`, for snapshots: walking, copying and removing
/// directory trees. Symbolic links are reported, never followed.
extension FileSystem {
    /// Every entry under `root` (relative paths, parents before children, sorted), with its
    /// status. Bounded by `maximumEntries`: more is an error (a hostile or runaway tree).
    public func walkTree(_ root: String, maximumEntries: Int = 1_000_000) throws(FileSystemError) -> [(path: String, status: FileStatus)] {
        var result: [(path: String, status: FileStatus)] = []
        var pending: [String] = [""]
        // Bounded: every round lists one directory, and entries are capped.
        while let relative = pending.popLast() {
            let directory = relative.isEmpty ? root : PathComponents.join(root, relative)
            for name in try listDirectory(directory) {
                let child = relative.isEmpty ? name : relative + "/" + name
                guard let status = try status(PathComponents.join(root, child)) else { continue }
                result.append((child, status))
                guard result.count <= maximumEntries else {
                    throw FileSystemError(.other, operation: "walk", path: root, detail: "more than \(maximumEntries) entries")
                }
                if status.kind == .directory { pending.append(child) }
            }
        }
        return result.sorted { $0.path < $1.path }
    }

    /// Drops the clean cached pages of every regular file under `root` (see
    /// `FileHandle.dropCachedPages`), so the next reads come from the media: after a failed
    /// fsync the cache may still show pages that never reached it. A missing `root` is fine.
    public func dropCachedPages(under root: String) throws(FileSystemError) {
        guard try status(root)?.kind == .directory else { return }
        for entry in try walkTree(root) where entry.status.kind == .file {
            try dropCachedPages(of: PathComponents.join(root, entry.path))
        }
    }

    /// Drops the clean cached pages of the file at `path` (see `FileHandle.dropCachedPages`).
    public func dropCachedPages(of path: String) throws(FileSystemError) {
        let handle = try openFile(path, options: .readOnly)
        defer { try? handle.close() }
        try handle.dropCachedPages()
    }

    /// Removes `root` and everything under it (symbolic links are removed, not followed), then
    /// syncs the parent so the removal is durable. A missing `root` is not an error.
    public func removeTree(_ root: String) throws(FileSystemError) {
        guard let rootStatus = try status(root) else { return }
        if rootStatus.kind == .directory {
            let entries = try walkTree(root)
            // Children before parents.
            for entry in entries.reversed() {
                let path = PathComponents.join(root, entry.path)
                if entry.status.kind == .directory { try removeDirectory(path) } else { try removeFile(path) }
            }
            try removeDirectory(root)
        } else {
            try removeFile(root)
        }
        try syncDirectory(PathComponents.parent(of: root))
    }

    /// Copies the regular file `source` to `target` (created, must not exist) in chunks and syncs
    /// it. The caller syncs `target`'s directory.
    public func copyFile(_ source: String, to target: String, chunkBytes: Int = 1 << 20) throws(FileSystemError) {
        precondition(chunkBytes > 0)
        let input = try openFile(source, options: .readOnly)
        defer { try? input.close() }
        let output = try openFile(target, options: OpenOptions(creation: .createNew, writable: true))
        var closed = false
        defer { if !closed { try? output.close() } }
        let size = try input.size()
        var offset: UInt64 = 0
        // Bounded by the file's size: every round copies at least one byte or stops.
        while offset < size {
            let chunk = try input.read(at: offset, count: Int(min(UInt64(chunkBytes), size - offset)))
            if chunk.isEmpty { break }
            try output.write(chunk, at: offset)
            offset += UInt64(chunk.count)
        }
        try output.fullSync()
        closed = true
        try output.close()
    }
}
