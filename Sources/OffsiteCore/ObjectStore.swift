/// One object in a store's listing.
public struct StoredObject: Sendable, Equatable {
    public var key: String
    public var sizeBytes: UInt64

    public init(key: String, sizeBytes: UInt64) {
        self.key = key
        self.sizeBytes = sizeBytes
    }
}

/// The off-site seam: a flat store of objects by key (`objects/<sha256>`,
/// `snapshots/<name>/MANIFEST.json`), as S3 and a mounted directory both are. The simulator
/// drives a faulty one the way `FileSystem` drives storage.
///
/// Contract: `put` stores the whole object or throws; once it returns, a `get` of the key
/// returns those bytes unless the store lost or damaged them — which callers detect, because
/// every object is checked against a SHA-256 they already hold (`put` is never trusted: what
/// was uploaded is read back). `get` and `size` return nil for a missing key. `list` returns
/// every key under a prefix (bounded by `listKeysMax`). Nothing a store returns is trusted.
public protocol ObjectStore: Sendable {
    /// What the store is, for messages (`s3://bucket/prefix`, `file:///mnt/backup`).
    var description: String { get }
    func put(_ key: String, bytes: [UInt8]) async throws(ObjectStoreError)
    func get(_ key: String, bytesMax: UInt64) async throws(ObjectStoreError) -> [UInt8]?
    func size(_ key: String) async throws(ObjectStoreError) -> UInt64?
    func list(prefix: String) async throws(ObjectStoreError) -> [StoredObject]
    func delete(_ key: String) async throws(ObjectStoreError)
}

/// The most keys one listing returns; a store with more under a prefix is refused rather than
/// half-read (a million SST files is far past any snapshot set).
public let listKeysMax = 4_000_000

/// Why a store operation failed, with the store, the key and the operation.
public struct ObjectStoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// No connection, a timeout, a 5xx: a retry may clear it.
        case unavailable
        /// The store refused: credentials, permissions, a missing bucket (4xx).
        case refused
        /// An object is not what it must be: a wrong size or SHA-256, a manifest that does not decode.
        case damaged
        /// A local file could not be read or written.
        case io
        /// The URI, the credentials or an argument is unusable.
        case invalid
        /// The snapshot is not in the store.
        case notFound = "not_found"
    }

    public var kind: Kind
    public var store: String
    public var key: String
    public var operation: String
    public var message: String

    public init(_ kind: Kind, store: String, key: String, operation: String, _ message: String) {
        self.kind = kind
        self.store = store
        self.key = key
        self.operation = operation
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(store): \(operation) \(key): \(message)" }
}

/// Where off-site copies go: `file:///path` (a mounted disk, NFS) or `s3://bucket/prefix`.
public enum OffsiteLocation: Sendable, Equatable {
    case directory(path: String)
    case s3(bucket: String, prefix: String)

    /// Parses a URI; nil (with the reason) when it is neither form.
    public static func parse(_ uri: String) -> Result<OffsiteLocation, ObjectStoreError> {
        func invalid(_ why: String) -> Result<OffsiteLocation, ObjectStoreError> {
            .failure(ObjectStoreError(.invalid, store: uri, key: "", operation: "parsing", why))
        }
        if uri.hasPrefix("file://") {
            let path = String(uri.dropFirst("file://".count))
            guard path.hasPrefix("/"), path.count > 1, !path.split(separator: "/").contains("..") else {
                return invalid("a file URI names an absolute directory: file:///mnt/backup")
            }
            return .success(.directory(path: path.hasSuffix("/") ? String(path.dropLast()) : path))
        }
        if uri.hasPrefix("s3://") {
            let rest = uri.dropFirst("s3://".count)
            let bucket = String(rest.prefix { $0 != "/" })
            let prefix = rest.dropFirst(bucket.count).drop { $0 == "/" }
            guard (3...63).contains(bucket.count), bucket.utf8.allSatisfy({ (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x2E })
            else { return invalid("\(bucket) is not an S3 bucket name (3-63 of a-z 0-9 . -)") }
            guard !prefix.split(separator: "/").contains(".."), !prefix.contains("//") else { return invalid("a prefix with .. or //") }
            return .success(.s3(bucket: bucket, prefix: prefix.hasSuffix("/") ? String(prefix.dropLast()) : String(prefix)))
        }
        return invalid("an off-site URI is file:///path or s3://bucket/prefix")
    }
}
