import CRocksDBBridge
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The kind of a RocksDB failure: its `Status::Code` (and, for an I/O error, the subcode the
/// engine acts on), as the bridge reports it.
public enum RocksDBStatusCode: Int32, Sendable {
    case notFound = 1
    case corruption = 2
    case notSupported = 3
    case invalidArgument = 4
    case ioError = 5
    case noSpace = 6
    case pathNotFound = 7
    case busy = 8
    case incomplete = 9
    case shutdownInProgress = 10
    case other = 11
}

/// An error from RocksDB, with the operation that failed, the path of the database, RocksDB's
/// status code and its text.
public struct RocksDBError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var code: RocksDBStatusCode
    public var message: String

    public var description: String { "RocksDB \(operation) on \(path): \(message)" }

    /// RocksDB found data that does not verify (a block or file checksum, a malformed MANIFEST
    /// or CURRENT): damage on the media, or a bad read.
    /// Also an open that fails because the MANIFEST that CURRENT names does not exist: CURRENT
    /// carries no checksum, so a flipped bit in it names a file that was never written.
    public var isCorruption: Bool {
        code == .corruption || (operation == "open" && code == .pathNotFound && message.contains("/MANIFEST-"))
    }

    /// Throws unless the bridge's `status` is OK; `message` holds RocksDB's text otherwise.
    static func check(_ status: Int32, _ message: [CChar], _ operation: String, _ path: String) throws(RocksDBError) {
        guard status != RVB_DB_OK else { return }
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        throw RocksDBError(operation: operation, path: path, code: RocksDBStatusCode(rawValue: status) ?? .other, message: text)
    }

    /// A buffer for the bridge's message, zeroed.
    static func messageBuffer() -> [CChar] { [CChar](repeating: 0, count: Int(RVB_MESSAGE_BYTES)) }
}

/// One RocksDB database (one lane's state), opened through a `RocksDBEnvironment`.
///
/// Configuration: RocksDB's own WAL is off for every write — the engine's WAL is the log, and a
/// lane's state becomes durable only through `flush()` (SST files and MANIFEST synced by
/// RocksDB). Statistics dumps and the info log are off. Compaction is RocksDB's automatic
/// background compaction, except on a simulation environment: there it is off and the owner
/// calls `compact()`, so that RocksDB's file operations happen only while a caller waits and a
/// simulated run is a function of its seed.
///
/// Thread-safe for reads and writes (RocksDB's guarantee). `close()` must be called once, after
/// every other call has returned; afterwards any call traps.
public final class RocksDatabase: @unchecked Sendable {
    // @unchecked: the handle is used only through RocksDB's thread-safe API; `closed` guards the
    // lifetime.
    public let path: String
    /// nil: RocksDB's own default environment (its POSIX file I/O, not the FileSystem layer).
    private let environment: RocksDBEnvironment?
    private let database: OpaquePointer
    private let closed = Atomic<Bool>(false)
    /// RocksDB compacts on its own in the background; when false, only `compact()` does.
    public let compactsAutomatically: Bool

    /// Opens (creating if missing) the database at `path`, with its file I/O through
    /// `environment` (the FileSystem bridge), or through RocksDB's default POSIX environment when
    /// it is nil (used to measure what the bridge costs). The other options are the bridge's
    /// fixed choices (`database.cpp`): closing never flushes, no background retry after an I/O
    /// error, paranoid checks, no compression.
    /// - Parameter readOnly: opens without writing anything (offline inspection); writes fail.
    /// - Parameter syncedWAL: RocksDB's own WAL on, every write synced (`sync=true`). The engine
    ///   never uses it (its own WAL comes first); the benchmark compares against it.
    public init(
        path: String, environment: RocksDBEnvironment?, createIfMissing: Bool = true, readOnly: Bool = false,
        syncedWAL: Bool = false, writeBufferBytes: UInt64 = RocksDatabase.writeBufferBytesDefault
    ) throws(RocksDBError) {
        self.path = path
        self.environment = environment
        let compactsAutomatically = !(environment?.isSimulation ?? false)
        var options = rvb_open_options(
            create_if_missing: createIfMissing ? 1 : 0, read_only: readOnly ? 1 : 0,
            auto_compactions: compactsAutomatically ? 1 : 0, synced_wal: syncedWAL ? 1 : 0, write_buffer_bytes: writeBufferBytes)
        var message = RocksDBError.messageBuffer()
        var opened: OpaquePointer?
        let status = rvb_db_open(path, environment.map { UnsafeMutableRawPointer($0.pointer) }, &options, &opened, &message)
        try RocksDBError.check(status, message, "open", path)
        guard let opened else { preconditionFailure("rvb_db_open returned OK without a handle") }
        database = opened
        self.compactsAutomatically = compactsAutomatically
    }

    deinit {
        assert(closed.load(ordering: .acquiring), "RocksDatabase \(path) was not closed")
        if !closed.load(ordering: .acquiring) { rvb_db_close(database) }
    }

    private func checkOpen() {
        precondition(!closed.load(ordering: .acquiring), "RocksDatabase \(path) used after close")
    }

    /// The value at `key`, or nil. Block checksums are verified: damage throws, never returns
    /// wrong bytes.
    public func get(_ key: [UInt8]) throws(RocksDBError) -> [UInt8]? {
        checkOpen()
        var length = 0
        var value: UnsafeMutablePointer<CChar>?
        var message = RocksDBError.messageBuffer()
        let status = key.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rvb_db_get(database, $0.baseAddress, $0.count, &value, &length, &message) }
        }
        if status == RVB_DB_NOT_FOUND { return nil }
        try RocksDBError.check(status, message, "get", path)
        guard let value else { return [] }
        defer { free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: length))
    }

    /// Applies `batch` atomically (to the memtable; durable only after `flush()`).
    public func write(_ batch: RocksWriteBatch) throws(RocksDBError) {
        checkOpen()
        var message = RocksDBError.messageBuffer()
        try RocksDBError.check(rvb_db_write(database, batch.pointer, &message), message, "write", path)
    }

    /// Writes the memtable to SST files and waits: afterwards everything written is durable.
    /// Without automatic compaction (a simulation) it also waits for the flush thread's clean-up
    /// (obsolete-file deletion), which RocksDB does after waking the waiter; otherwise its unlinks
    /// would race with the caller's next I/O and a simulated run would not be a function of its
    /// seed.
    public func flush() throws(RocksDBError) {
        checkOpen()
        var message = RocksDBError.messageBuffer()
        let status = rvb_db_flush(database, &message)
        if !compactsAutomatically { waitForBackgroundWork() }
        try RocksDBError.check(status, message, "flush", path)
    }

    /// RocksDB's memtable size (`write_buffer_size`) unless the caller chooses: 64 MiB.
    public static let writeBufferBytesDefault: UInt64 = 64 << 20

    /// What the memtables hold now: the active one's bytes and how many immutable ones wait
    /// to be flushed (RocksDB switches memtables, and flushes on its own, once the active one
    /// outgrows the write buffer). Nil when RocksDB does not answer.
    public var memtables: (activeBytes: UInt64, immutable: UInt64)? {
        checkOpen()
        guard let active = integerProperty("rocksdb.cur-size-active-mem-table"), let immutable = integerProperty("rocksdb.num-immutable-mem-table")
        else { return nil }
        return (active, immutable)
    }

    /// An integer property, or nil when RocksDB does not answer it.
    private func integerProperty(_ name: String) -> UInt64? {
        var value: UInt64 = 0
        return rvb_db_property_int(database, name, &value) == 1 ? value : nil
    }

    /// Polls until no flush or compaction runs. Bounded: gives up after about ten seconds,
    /// which only a wedged RocksDB could reach. Only without automatic compaction, where nothing
    /// else starts background work.
    private func waitForBackgroundWork() {
        precondition(!compactsAutomatically, "waiting for background work that never ends")
        let pollsMax = 200_000
        for _ in 0..<pollsMax {
            guard let flushes = integerProperty("rocksdb.num-running-flushes"),
                let compactions = integerProperty("rocksdb.num-running-compactions"),
                flushes > 0 || compactions > 0
            else { return }
            usleep(50)
        }
    }

    /// Waits until RocksDB has no flush or compaction running or pending (with automatic
    /// compaction a flush may start a compaction that rewrites the lane's files) or until the
    /// `deadline`. Returns false at the deadline, or when RocksDB does not
    /// answer one of the properties (so that a caller never takes "unknown" for "idle").
    /// Without automatic compaction "compaction pending" never clears and is not asked.
    /// Bounded: polls every millisecond until the deadline.
    public func waitUntilQuiescent(until deadline: ContinuousClock.Instant) -> Bool {
        checkOpen()
        var names = ["rocksdb.num-running-flushes", "rocksdb.num-running-compactions", "rocksdb.mem-table-flush-pending"]
        if compactsAutomatically { names.append("rocksdb.compaction-pending") }
        while true {
            var busy = false
            for name in names {
                guard let value = integerProperty(name) else { return false }
                busy = busy || value > 0
            }
            if !busy { return true }
            if ContinuousClock.now >= deadline { return false }
            usleep(1_000)
        }
    }

    /// The text of a RocksDB property (`rocksdb.sstables`, `rocksdb.stats`, ...), or nil when
    /// RocksDB does not know it.
    public func property(_ name: String) -> String? {
        checkOpen()
        guard let text = rvb_db_property_text(database, name) else { return nil }
        defer { free(text) }
        return String(cString: text)
    }

    /// The number of SST files in level 0: every flush adds one, and a read may have to look
    /// in each. Nil when RocksDB does not report it.
    public var levelZeroFileCount: Int? {
        // A text property: RocksDB has no integer form of it.
        property("rocksdb.num-files-at-level0").flatMap { Int(String($0.filter(\.isNumber))) }
    }

    /// Compacts the whole key range and waits, including for the compaction thread's clean-up
    /// (see `flush()`). Durability: the new files and the MANIFEST edit that swaps them in are
    /// synced by RocksDB before the old files are deleted; a crash at any point leaves either
    /// the old set or the new one. A failure leaves the database in RocksDB's background-error
    /// state: writes fail until it is reopened.
    public func compact() throws(RocksDBError) {
        checkOpen()
        var message = RocksDBError.messageBuffer()
        let status = rvb_db_compact_all(database, &message)
        if !compactsAutomatically { waitForBackgroundWork() }
        try RocksDBError.check(status, message, "compact", path)
    }

    /// Every key-value pair whose key starts with `prefix`, in key order.
    public func scan(prefix: [UInt8], _ visit: ([UInt8], [UInt8]) throws -> Void) throws {
        checkOpen()
        let iterator = rvb_iterator_create(database)!
        defer { rvb_iterator_destroy(iterator) }
        prefix.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rvb_iterator_seek(iterator, $0.baseAddress, $0.count) }
        }
        // Bounded by the number of keys in the database.
        while rvb_iterator_valid(iterator) != 0 {
            var keyLength = 0
            var valueLength = 0
            let keyPointer = rvb_iterator_key(iterator, &keyLength)!
            let key = Array(UnsafeRawBufferPointer(start: keyPointer, count: keyLength))
            guard key.starts(with: prefix) else { break }
            let valuePointer = rvb_iterator_value(iterator, &valueLength)
            let value = valueLength == 0 ? [] : Array(UnsafeRawBufferPointer(start: valuePointer, count: valueLength))
            try visit(key, value)
            rvb_iterator_next(iterator)
        }
        var message = RocksDBError.messageBuffer()
        try RocksDBError.check(rvb_iterator_status(iterator, &message), message, "iterate", path)
    }

    /// A hard-link checkpoint of the database in `directory` (which must not exist), flushed
    /// first so it holds everything written.
    public func checkpoint(to directory: String) throws(RocksDBError) {
        checkOpen()
        var message = RocksDBError.messageBuffer()
        try RocksDBError.check(rvb_db_checkpoint(database, directory, &message), message, "checkpoint", directory)
    }

    /// Closes the database without flushing: what was not flushed is gone, exactly as after a
    /// crash (the engine's WAL replays it).
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        rvb_db_close(database)
    }
}

/// A RocksDB write batch: puts and deletes applied together or not at all.
public final class RocksWriteBatch {
    let pointer: OpaquePointer

    public init() {
        pointer = rvb_batch_create()!
    }

    deinit {
        rvb_batch_destroy(pointer)
    }

    /// Adds a put. Traps if the batch would pass RocksDB's WriteBatch size limit (4 GiB), which a
    /// lane batch bounded by the block size never reaches: reaching it is a programmer error.
    public func put(_ key: [UInt8], _ value: [UInt8]) {
        let code = key.withUnsafeBufferPointer { keyBuffer in
            value.withUnsafeBufferPointer { valueBuffer in
                keyBuffer.withMemoryRebound(to: CChar.self) { keyChars in
                    valueBuffer.withMemoryRebound(to: CChar.self) { valueChars in
                        rvb_batch_put(pointer, keyChars.baseAddress, keyChars.count, valueChars.baseAddress, valueChars.count)
                    }
                }
            }
        }
        precondition(code == RVB_DB_OK, "RocksDB refused a batch put (code \(code)): the batch passed its size limit")
    }

    /// Adds a delete; traps on the same size limit as `put`.
    public func delete(_ key: [UInt8]) {
        let code = key.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rvb_batch_delete(pointer, $0.baseAddress, $0.count) }
        }
        precondition(code == RVB_DB_OK, "RocksDB refused a batch delete (code \(code)): the batch passed its size limit")
    }

    public var count: Int { rvb_batch_count(pointer) }
}
