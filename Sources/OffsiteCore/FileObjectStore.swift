import FaultFS

/// An `ObjectStore` in a directory (`file:///mnt/backup`: a mounted disk or NFS), on the
/// `FileSystem` seam. Each object is a file at `<root>/<key>`, written atomically and durably
/// (temporary file synced, renamed, directory synced), so a crash leaves the old object or the
/// new one. Keys are `/`-separated relative paths without `.` or `..` components.
public struct FileObjectStore: ObjectStore {
    public let fileSystem: any FileSystem
    public let root: String

    public init(fileSystem: any FileSystem, root: String) {
        precondition(root.hasPrefix("/"), "a directory store has an absolute root")
        self.fileSystem = fileSystem
        self.root = root
    }

    public var description: String { "file://\(root)" }

    private func path(_ key: String) -> String {
        precondition(
            !key.isEmpty && !key.hasPrefix("/") && !key.split(separator: "/", omittingEmptySubsequences: false).contains { $0.isEmpty || $0 == "." || $0 == ".." },
            "an object key is a plain relative path")
        return PathComponents.join(root, key)
    }

    private func failing<Result>(_ key: String, _ operation: String, _ body: () throws(FileSystemError) -> Result) throws(ObjectStoreError) -> Result {
        do {
            return try body()
        } catch {
            throw ObjectStoreError(.io, store: description, key: key, operation: operation, "\(error)")
        }
    }

    public func put(_ key: String, bytes: [UInt8]) async throws(ObjectStoreError) {
        let target = path(key)
        try failing(key, "put") { () throws(FileSystemError) in
            try fileSystem.createDirectories(PathComponents.parent(of: target))
            try fileSystem.writeFileAtomically(target, bytes: bytes)
        }
    }

    public func get(_ key: String, bytesMax: UInt64) async throws(ObjectStoreError) -> [UInt8]? {
        let target = path(key)
        let status = try failing(key, "get") { () throws(FileSystemError) in try fileSystem.status(target) }
        guard let status, status.kind == .file else { return nil }
        guard status.sizeBytes <= bytesMax else {
            throw ObjectStoreError(.damaged, store: description, key: key, operation: "get", "\(status.sizeBytes) bytes, more than the \(bytesMax) expected")
        }
        return try failing(key, "get") { () throws(FileSystemError) in try fileSystem.readFileFromMedia(target) }
    }

    public func size(_ key: String) async throws(ObjectStoreError) -> UInt64? {
        let target = path(key)
        return try failing(key, "size") { () throws(FileSystemError) -> UInt64? in
            guard let status = try fileSystem.status(target), status.kind == .file else { return nil }
            return status.sizeBytes
        }
    }

    public func list(prefix: String) async throws(ObjectStoreError) -> [StoredObject] {
        try failing(prefix, "list") { () throws(FileSystemError) -> [StoredObject] in
            guard try fileSystem.exists(root) else { return [] }
            return try fileSystem.walkTree(root, maximumEntries: listKeysMax)
                .filter { $0.status.kind == .file && $0.path.hasPrefix(prefix) && !$0.path.hasSuffix(".tmp") }
                .map { StoredObject(key: $0.path, sizeBytes: $0.status.sizeBytes) }
                .sorted { $0.key < $1.key }
        }
    }

    public func delete(_ key: String) async throws(ObjectStoreError) {
        let target = path(key)
        try failing(key, "delete") { () throws(FileSystemError) in
            guard try fileSystem.exists(target) else { return }
            try fileSystem.removeFile(target)
            try fileSystem.syncDirectory(PathComponents.parent(of: target))
        }
    }
}
