import Engine
import Documents
import FaultFS
import Offsite
import PeerSync
import TOMLKit

/// The node's configuration: the embedded defaults, overlaid by a TOML file, overlaid by
/// command-line flags. Decoding is strict: an unknown section or key, or a value of the wrong
/// type or out of range, is a `NodeConfigurationError` naming the file and the key.
public struct NodeConfiguration: Sendable, Equatable {
    /// The engine's defaults, which the `[node]` and `[wal]` sections take as their own.
    private static let engineDefaults = EngineConfiguration(dataDirectory: "")

    /// `[node]`
    public struct NodeSection: Sendable, Equatable {
        /// Where the node keeps its state. Development default `./rivellum-data`; production
        /// `/var/lib/rivellum`.
        public var dataDirectory = "./rivellum-data"
        public var chainID = NodeConfiguration.engineDefaults.chainID
        public var laneCount = NodeConfiguration.engineDefaults.laneCount
        /// Keep every block from genesis (WAL segments are never retired), so peers can resync.
        public var archive = NodeConfiguration.engineDefaults.archive
    }

    /// `[wal]`
    public struct WALSection: Sendable, Equatable {
        /// `nil`: `<data_dir>/wal`.
        public var walDirectory: String?
        public var fsyncPolicy = NodeConfiguration.engineDefaults.wal.fsyncPolicy
        public var syncIntervalMilliseconds = NodeConfiguration.engineDefaults.wal.syncIntervalMilliseconds
        public var syncBytes = NodeConfiguration.engineDefaults.wal.syncBytes
        public var segmentSizeMegabytes = NodeConfiguration.engineDefaults.wal.segmentSizeBytes >> 20
        public var retentionHours = NodeConfiguration.engineDefaults.walRetentionHours
        public var recoveryMode = NodeConfiguration.engineDefaults.wal.recoveryMode
    }

    /// `[api]`
    public struct APISection: Sendable, Equatable {
        public var listenHost = "127.0.0.1"
        public var listenPort = 7070
        /// Largest request body accepted (413 beyond).
        public var maxBodyBytes = 4 << 20
        /// Most operations in one block (413 beyond).
        public var maxOperationsPerBlock = 10_000
        public var maxKeyBytes = 1_024
        public var maxValueBytes = 1 << 20
        /// Commits admitted at once; more get 503 with Retry-After.
        public var maxInflightCommits = 512
        /// Connections held at once; a connection past it is answered 503 and closed at once,
        /// while the established ones keep being served. The node raises its open-file limit
        /// to fit (it warns when the hard limit is lower).
        public var maxConnections = 4_096
        /// From a connection's start (or its previous response) until the request head is
        /// complete; past it the node answers 408 and closes. The first byte of a request on a
        /// kept-alive connection starts this clock; before it, `idleTimeoutMilliseconds` runs.
        public var requestHeadTimeoutMilliseconds: UInt64 = 10_000
        /// From the request head until the whole body has arrived; past it the node answers 408
        /// (when no response has begun) and closes.
        public var requestBodyTimeoutMilliseconds: UInt64 = 30_000
        /// A kept-alive connection with no request in progress is closed after this long; so is a
        /// connection whose client stops reading the node's answer for this long.
        public var idleTimeoutMilliseconds: UInt64 = 60_000
        /// The bytes of request bodies being read at once, over all connections; a body that
        /// would go past it is answered 503 (memory stays bounded however many clients send).
        public var maxBodyBytesInFlight = 256 << 20
    }

    /// `[logging]`
    public struct LoggingSection: Sendable, Equatable {
        public enum Format: String, Sendable, CaseIterable { case json, pretty }
        public var level = "info"
        public var format = Format.pretty
    }

    /// `[snapshot]` (used by scheduled snapshots).
    public struct SnapshotSection: Sendable, Equatable {
        /// `nil`: `<data_dir>/snapshots`.
        public var directory: String?
        /// 0 turns scheduled snapshots off.
        public var intervalHours: UInt64 = 0
        public var keep = 7
        /// `file:///path` or `s3://bucket/prefix`: every snapshot the daemon takes is pushed
        /// there once verified (nil: none).
        public var offsite: String?
    }

    /// `[sync]`: the peers this node catches up from and follows.
    public struct SyncSection: Sendable, Equatable {
        /// `http://host:port` of each peer; empty: no sync.
        public var peers: [String] = []
        /// Peers that must report the same MetaRoot at a height; 0: a majority of the peers.
        public var quorum = 0
        /// A trust anchor obtained out of band (0: none): this height's MetaRoot is `trustMetaRoot`.
        public var trustHeight: UInt64 = 0
        public var trustMetaRoot = ""
        /// Keep applying the peers' new blocks after catching up; local `POST /v1/blocks` is 409.
        public var follow = false
        /// Blocks, state sync from a peer's snapshot, or (auto) whichever the node needs.
        public var mode: SyncMode = .auto
        /// State sync asks peers for snapshot files in chunks of this many KiB (64...4096).
        public var chunkKiB = 4_096
    }

    public var node = NodeSection()
    public var wal = WALSection()
    public var api = APISection()
    public var logging = LoggingSection()
    public var snapshot = SnapshotSection()
    public var sync = SyncSection()

    public init() {}

    /// The configuration the binary carries: what `run` uses with no `--config`, and what
    /// `rivellum-node config default` prints.
    ///
    /// Every value is rendered from the sections' defaults (and those from the engine's), so a
    /// default is written in one place; the comments say what each key does.
    public static let defaultTOML: String = {
        let node = NodeSection(), wal = WALSection(), api = APISection(), logging = LoggingSection(), snapshot = SnapshotSection()
        let sync = SyncSection()
        let lanes = EngineConfiguration.laneCountRange
        return """
            # rivellum-node configuration. Every key is optional; these are the defaults.
            # Unknown keys are errors (the node refuses to start, exit code 78).

            [node]
            data_dir = "\(node.dataDirectory)"      # production: /var/lib/rivellum
            chain_id = "\(node.chainID)"         # fixed at genesis
            lanes = \(node.laneCount)                         # fixed at genesis, \(lanes.lowerBound)..\(lanes.upperBound)
            archive = \(node.archive)                   # true: keep every block from genesis so that peers can resync (WAL never retired)

            [wal]
            # wal_dir = "/var/lib/rivellum/wal"   # default: <data_dir>/wal
            wal_fsync_policy = "\(wal.fsyncPolicy.rawValue)"       # \(FsyncPolicy.allCases.map(\.rawValue).joined(separator: " | "))
            wal_sync_interval_ms = \(wal.syncIntervalMilliseconds)        # balanced: sync at least this often
            wal_sync_bytes = \(wal.syncBytes)          # balanced: sync once this many bytes are unsynced
            wal_segment_size_mb = \(wal.segmentSizeMegabytes)
            wal_retention_hours = \(wal.retentionHours)          # keep WAL segments at least this long
            wal_recovery_mode = "\(wal.recoveryMode.rawValue)"   # \(WALRecoveryMode.allCases.filter { $0 != .salvage }.map(\.rawValue).joined(separator: " | "))

            [api]
            listen = "\(api.listenHost):\(api.listenPort)"
            max_body_bytes = \(api.maxBodyBytes)
            max_ops_per_block = \(api.maxOperationsPerBlock)
            max_key_bytes = \(api.maxKeyBytes)
            max_value_bytes = \(api.maxValueBytes)
            max_inflight_commits = \(api.maxInflightCommits)
            max_connections = \(api.maxConnections)            # more at once: answered 503 and closed
            request_head_timeout_ms = \(api.requestHeadTimeoutMilliseconds)   # the request line and headers must arrive within this (408)
            request_body_timeout_ms = \(api.requestBodyTimeoutMilliseconds)   # the whole body must arrive within this after the head (408)
            idle_timeout_ms = \(api.idleTimeoutMilliseconds)           # a kept-alive connection with no request (or not reading) is closed after this
            max_body_bytes_in_flight = \(api.maxBodyBytesInFlight)  # request bodies being read at once, all connections (503 past it)

            [logging]
            level = "\(logging.level)"                    # \(logLevels.joined(separator: " | "))
            format = "\(logging.format.rawValue)"                 # \(LoggingSection.Format.allCases.map(\.rawValue).joined(separator: " | "))

            [snapshot]
            # dir = "/var/lib/rivellum/snapshots"  # default: <data_dir>/snapshots
            interval_hours = \(snapshot.intervalHours)                # 0: no scheduled snapshots
            keep = \(snapshot.keep)
            # offsite = "s3://bucket/prefix"      # or "file:///mnt/backup": every snapshot the daemon takes is pushed there once verified

            [sync]
            peers = []                        # e.g. ["http://10.0.0.2:7070", "http://10.0.0.3:7070"]; empty: no sync
            quorum = \(sync.quorum)                        # peers that must agree on a height's MetaRoot; 0: a majority
            trust_height = \(sync.trustHeight)                  # optional trust anchor, obtained out of band (0: none)
            trust_meta_root = ""
            follow = \(sync.follow)                    # true: keep applying the peers' new blocks (standby); local writes 409
            mode = "\(sync.mode.rawValue)"                     # auto | blocks | snapshot: auto state-syncs an empty data directory, or one the peers' retention left behind
            chunk_kib = \(sync.chunkKiB)                   # state sync fetches snapshot files in chunks of this size (64...4096)

            """
    }()

    /// The defaults (the embedded file decoded).
    public static let defaults: NodeConfiguration = {
        do {
            return try NodeConfiguration.decode(defaultTOML, file: "<embedded defaults>")
        } catch {
            preconditionFailure("the embedded default configuration does not decode: \(error)")
        }
    }()

    /// Decodes `text` over the defaults. `file` names the source in errors.
    public static func decode(_ text: String, file: String) throws(NodeConfigurationError) -> NodeConfiguration {
        let raw: RawFile
        do {
            let table = try TOMLTable(string: text)
            if let problem = ConfigurationSchema.firstProblem(in: table) {
                throw NodeConfigurationError(file: file, key: problem.key, problem.message)
            }
            raw = try TOMLDecoder(strictDecoding: true).decode(RawFile.self, from: table)
        } catch let error as NodeConfigurationError {
            throw error
        } catch let error as UnexpectedKeysError {
            let names = error.keys.map { key, path in
                (path.map(\.stringValue).filter { !$0.isEmpty } + [key]).joined(separator: ".")
            }.sorted()
            throw NodeConfigurationError(file: file, key: names.first, "unknown key(s): \(names.joined(separator: ", "))")
        } catch let error as TOMLParseError {
            throw NodeConfigurationError(
                file: file, key: nil, "not valid TOML at line \(error.source.begin.line), column \(error.source.begin.column): \(error.description)")
        } catch let error as DecodingError {
            throw NodeConfigurationError(decoding: error, file: file)
        } catch {
            throw NodeConfigurationError(file: file, key: nil, "\(error)")
        }
        var configuration = NodeConfiguration()
        try configuration.apply(raw, file: file)
        try configuration.validate(file: file)
        return configuration
    }

    /// Reads and decodes a configuration file.
    public static func load(path: String, fileSystem: any FileSystem = PosixFileSystem()) throws(NodeConfigurationError) -> NodeConfiguration {
        let bytes: [UInt8]
        do {
            bytes = try fileSystem.readFile(path)
        } catch {
            throw NodeConfigurationError(file: path, key: nil, "cannot read the file: \(error)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw NodeConfigurationError(file: path, key: nil, "the file is not UTF-8")
        }
        return try decode(text, file: path)
    }

    /// Checks every value; `file` names the source in errors (for flags, "command line").
    public func validate(file: String) throws(NodeConfigurationError) {
        func check(_ condition: Bool, _ key: String, _ message: String) throws(NodeConfigurationError) {
            if !condition { throw NodeConfigurationError(file: file, key: key, message) }
        }
        try check(!node.dataDirectory.isEmpty, "node.data_dir", "must not be empty")
        try check(
            !node.chainID.isEmpty && node.chainID.count <= 64
                && node.chainID.unicodeScalars.allSatisfy { Self.chainIDCharacters.contains($0) },
            "node.chain_id", "must be 1-64 characters of A-Z a-z 0-9 . _ -, got \(quoted(node.chainID))")
        let lanes = EngineConfiguration.laneCountRange
        try check(lanes.contains(node.laneCount), "node.lanes", "must be in \(lanes.lowerBound)...\(lanes.upperBound), got \(node.laneCount)")
        try check(wal.walDirectory.map { !$0.isEmpty } ?? true, "wal.wal_dir", "must not be empty (leave it out for <data_dir>/wal)")
        try check((1...3_600_000).contains(wal.syncIntervalMilliseconds), "wal.wal_sync_interval_ms", "must be in 1...3600000")
        try check(wal.syncBytes >= 4_096 && wal.syncBytes <= 1 << 30, "wal.wal_sync_bytes", "must be in 4096...1073741824")
        try check((1...4_096).contains(wal.segmentSizeMegabytes), "wal.wal_segment_size_mb", "must be in 1...4096")
        try check(wal.retentionHours <= 24 * 365, "wal.wal_retention_hours", "must be at most 8760")
        try check(wal.recoveryMode != .salvage, "wal.wal_recovery_mode", "salvage is read-only forensics; use `rivellum-node wal verify`")
        try check((1...65_535).contains(api.listenPort) && !api.listenHost.isEmpty, "api.listen", "must be HOST:PORT with a port in 1...65535")
        // A block's lane record must fit a WAL record (16 MiB); a body is never smaller than it.
        try check((1_024...(16 << 20)).contains(api.maxBodyBytes), "api.max_body_bytes", "must be in 1024...16777216")
        try check((1...1_000_000).contains(api.maxOperationsPerBlock), "api.max_ops_per_block", "must be in 1...1000000")
        try check((1...65_536).contains(api.maxKeyBytes), "api.max_key_bytes", "must be in 1...65536")
        try check((0...(16 << 20)).contains(api.maxValueBytes), "api.max_value_bytes", "must be in 0...16777216")
        try check((1...65_536).contains(api.maxInflightCommits), "api.max_inflight_commits", "must be in 1...65536")
        try check((1...1_048_576).contains(api.maxConnections), "api.max_connections", "must be in 1...1048576")
        try check((100...3_600_000).contains(api.requestHeadTimeoutMilliseconds), "api.request_head_timeout_ms", "must be in 100...3600000")
        try check((100...3_600_000).contains(api.requestBodyTimeoutMilliseconds), "api.request_body_timeout_ms", "must be in 100...3600000")
        try check((100...3_600_000).contains(api.idleTimeoutMilliseconds), "api.idle_timeout_ms", "must be in 100...3600000")
        try check(
            api.maxBodyBytesInFlight >= api.maxBodyBytes && api.maxBodyBytesInFlight <= 1 << 36, "api.max_body_bytes_in_flight",
            "must be at least api.max_body_bytes (\(api.maxBodyBytes)) and at most 68719476736")
        try check(Self.logLevels.contains(logging.level), "logging.level", "must be one of \(Self.logLevels.joined(separator: ", ")), got \(quoted(logging.level))")
        try check(snapshot.directory.map { !$0.isEmpty } ?? true, "snapshot.dir", "must not be empty (leave it out for <data_dir>/snapshots)")
        try check(snapshot.intervalHours <= 24 * 365, "snapshot.interval_hours", "must be at most 8760")
        try check((1...10_000).contains(snapshot.keep), "snapshot.keep", "must be in 1...10000")
        if let offsite = snapshot.offsite {
            if case .failure(let error) = OffsiteLocation.parse(offsite) { try check(false, "snapshot.offsite", error.message) }
        }
        try validateSync(file: file)
    }

    private func validateSync(file: String) throws(NodeConfigurationError) {
        func check(_ condition: Bool, _ key: String, _ message: String) throws(NodeConfigurationError) {
            if !condition { throw NodeConfigurationError(file: file, key: key, message) }
        }
        try check(sync.peers.count <= 64, "sync.peers", "at most 64 peers, got \(sync.peers.count)")
        for peer in sync.peers {
            try check(Self.isPeerURL(peer), "sync.peers", "\(quoted(peer)) is not http://HOST:PORT")
        }
        try check(Set(sync.peers).count == sync.peers.count, "sync.peers", "a peer is listed twice")
        try check(sync.quorum >= 0 && sync.quorum <= sync.peers.count, "sync.quorum", "must be in 0...\(sync.peers.count) (the number of peers), got \(sync.quorum)")
        try check(
            (sync.trustHeight == 0) == sync.trustMetaRoot.isEmpty, "sync.trust_meta_root",
            "trust_height and trust_meta_root come together (a height and its MetaRoot), or neither")
        try check(sync.trustMetaRoot.isEmpty || Hash32(hex: sync.trustMetaRoot) != nil, "sync.trust_meta_root", "must be 64 hex digits")
        try check(!sync.follow || !sync.peers.isEmpty, "sync.follow", "a follower needs sync.peers")
        try check((64...4_096).contains(sync.chunkKiB), "sync.chunk_kib", "must be in 64...4096, got \(sync.chunkKiB)")
    }

    /// `http://HOST:PORT` with nothing after the port.
    static func isPeerURL(_ text: String) -> Bool {
        guard text.hasPrefix("http://"), let (host, port) = parseListen(String(text.dropFirst(7))) else { return false }
        return (1...65_535).contains(port) && !host.contains("/")
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    static let chainIDCharacters = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-".unicodeScalars)

    /// Parses `HOST:PORT` (`[v6]:PORT` for IPv6).
    public static func parseListen(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    // MARK: Derived

    public var layout: DataDirectoryLayout { DataDirectoryLayout(dataDirectory: node.dataDirectory, walDirectory: wal.walDirectory) }
    public var walDirectory: String { layout.wal }
    public var snapshotDirectory: String { snapshot.directory ?? layout.defaultSnapshots }

    /// The engine's configuration.
    public var engineConfiguration: EngineConfiguration {
        var configuration = EngineConfiguration(dataDirectory: node.dataDirectory)
        configuration.chainID = node.chainID
        configuration.laneCount = node.laneCount
        configuration.walDirectory = wal.walDirectory
        configuration.walRetentionHours = wal.retentionHours
        configuration.archive = node.archive
        configuration.wal.fsyncPolicy = wal.fsyncPolicy
        configuration.wal.syncIntervalMilliseconds = wal.syncIntervalMilliseconds
        configuration.wal.syncBytes = wal.syncBytes
        configuration.wal.segmentSizeBytes = wal.segmentSizeMegabytes << 20
        configuration.wal.recoveryMode = wal.recoveryMode
        return configuration
    }

    // MARK: The file's shape (every key optional)

    // Integers are decoded as Int and range-checked here: TOMLKit traps on a negative value
    // decoded into an unsigned type, and bad input must get a message, not a crash.
    struct RawFile: Decodable {
        var node: RawNode?
        var wal: RawWAL?
        var api: RawAPI?
        var logging: RawLogging?
        var snapshot: RawSnapshot?
        var sync: RawSync?
    }

    struct RawSync: Decodable {
        var peers: [String]?
        var quorum: Int?
        var trust_height: Int?
        var trust_meta_root: String?
        var follow: Bool?
        var mode: String?
        var chunk_kib: Int?
    }

    struct RawNode: Decodable {
        var data_dir: String?
        var chain_id: String?
        var lanes: Int?
        var archive: Bool?
    }

    struct RawWAL: Decodable {
        var wal_dir: String?
        var wal_fsync_policy: String?
        var wal_sync_interval_ms: Int?
        var wal_sync_bytes: Int?
        var wal_segment_size_mb: Int?
        var wal_retention_hours: Int?
        var wal_recovery_mode: String?
    }

    struct RawAPI: Decodable {
        var listen: String?
        var max_body_bytes: Int?
        var max_ops_per_block: Int?
        var max_key_bytes: Int?
        var max_value_bytes: Int?
        var max_inflight_commits: Int?
        var max_connections: Int?
        var request_head_timeout_ms: Int?
        var request_body_timeout_ms: Int?
        var idle_timeout_ms: Int?
        var max_body_bytes_in_flight: Int?
    }

    struct RawLogging: Decodable {
        var level: String?
        var format: String?
    }

    struct RawSnapshot: Decodable {
        var dir: String?
        var interval_hours: Int?
        var keep: Int?
        var offsite: String?
    }

    private mutating func apply(_ raw: RawFile, file: String) throws(NodeConfigurationError) {
        func choice<T: RawRepresentable & CaseIterable>(_ text: String, _ key: String, _ type: T.Type) throws(NodeConfigurationError) -> T
        where T.RawValue == String {
            guard let value = T(rawValue: text) else {
                let allowed = T.allCases.map(\.rawValue).joined(separator: " | ")
                throw NodeConfigurationError(file: file, key: key, "\(quoted(text)) is not one of \(allowed)")
            }
            return value
        }
        func unsigned(_ value: Int, _ key: String) throws(NodeConfigurationError) -> UInt64 {
            guard value >= 0 else { throw NodeConfigurationError(file: file, key: key, "must not be negative, got \(value)") }
            return UInt64(value)
        }
        if let section = raw.node {
            if let value = section.data_dir { node.dataDirectory = value }
            if let value = section.chain_id { node.chainID = value }
            if let value = section.lanes { node.laneCount = value }
            if let value = section.archive { node.archive = value }
        }
        if let section = raw.wal {
            if let value = section.wal_dir { wal.walDirectory = value }
            if let value = section.wal_fsync_policy { wal.fsyncPolicy = try choice(value, "wal.wal_fsync_policy", FsyncPolicy.self) }
            if let value = section.wal_sync_interval_ms {
                wal.syncIntervalMilliseconds = try unsigned(value, "wal.wal_sync_interval_ms")
            }
            if let value = section.wal_sync_bytes { wal.syncBytes = try unsigned(value, "wal.wal_sync_bytes") }
            if let value = section.wal_segment_size_mb { wal.segmentSizeMegabytes = try unsigned(value, "wal.wal_segment_size_mb") }
            if let value = section.wal_retention_hours { wal.retentionHours = try unsigned(value, "wal.wal_retention_hours") }
            if let value = section.wal_recovery_mode {
                wal.recoveryMode = try choice(value, "wal.wal_recovery_mode", WALRecoveryMode.self)
            }
        }
        if let section = raw.api {
            if let value = section.listen {
                guard let (host, port) = Self.parseListen(value) else {
                    throw NodeConfigurationError(file: file, key: "api.listen", "\(quoted(value)) is not HOST:PORT")
                }
                api.listenHost = host
                api.listenPort = port
            }
            if let value = section.max_body_bytes { api.maxBodyBytes = value }
            if let value = section.max_ops_per_block { api.maxOperationsPerBlock = value }
            if let value = section.max_key_bytes { api.maxKeyBytes = value }
            if let value = section.max_value_bytes { api.maxValueBytes = value }
            if let value = section.max_inflight_commits { api.maxInflightCommits = value }
            if let value = section.max_connections { api.maxConnections = value }
            if let value = section.request_head_timeout_ms {
                api.requestHeadTimeoutMilliseconds = try unsigned(value, "api.request_head_timeout_ms")
            }
            if let value = section.request_body_timeout_ms {
                api.requestBodyTimeoutMilliseconds = try unsigned(value, "api.request_body_timeout_ms")
            }
            if let value = section.idle_timeout_ms { api.idleTimeoutMilliseconds = try unsigned(value, "api.idle_timeout_ms") }
            if let value = section.max_body_bytes_in_flight { api.maxBodyBytesInFlight = value }
        }
        if let section = raw.logging {
            if let value = section.level { logging.level = value }
            if let value = section.format { logging.format = try choice(value, "logging.format", LoggingSection.Format.self) }
        }
        if let section = raw.snapshot {
            if let value = section.dir { snapshot.directory = value }
            if let value = section.interval_hours { snapshot.intervalHours = try unsigned(value, "snapshot.interval_hours") }
            if let value = section.keep { snapshot.keep = value }
            if let value = section.offsite { snapshot.offsite = value }
        }
        if let section = raw.sync {
            if let value = section.peers { sync.peers = value }
            if let value = section.quorum { sync.quorum = value }
            if let value = section.trust_height { sync.trustHeight = try unsigned(value, "sync.trust_height") }
            if let value = section.trust_meta_root { sync.trustMetaRoot = value }
            if let value = section.follow { sync.follow = value }
            if let value = section.mode { sync.mode = try choice(value, "sync.mode", SyncMode.self) }
            if let value = section.chunk_kib { sync.chunkKiB = value }
        }
    }
}

/// A configuration that cannot be used: the file (or "command line"), the key, and why.
/// The node exits with code 78 (EX_CONFIG).
public struct NodeConfigurationError: Error, Sendable, CustomStringConvertible {
    public var file: String
    /// `section.key`, when one key is to blame.
    public var key: String?
    public var message: String

    public init(file: String, key: String?, _ message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    init(decoding error: DecodingError, file: String) {
        func name(_ path: [any CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .typeMismatch(let type, let context):
            self.init(file: file, key: name(context.codingPath), "expected a value of type \(type)")
        case .valueNotFound(let type, let context):
            self.init(file: file, key: name(context.codingPath), "missing a value of type \(type)")
        case .keyNotFound(let key, let context):
            self.init(file: file, key: name(context.codingPath + [key]), "missing")
        case .dataCorrupted(let context):
            self.init(file: file, key: name(context.codingPath), context.debugDescription)
        @unknown default:
            self.init(file: file, key: nil, "\(error)")
        }
    }

    public var description: String {
        if let key { return "configuration error in \(file): \(key): \(message)" }
        return "configuration error in \(file): \(message)"
    }
}
