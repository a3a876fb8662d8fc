import CRocksDB
import CRocksDBBridge
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An error from RocksDB, with the operation that failed and the path of the database.
public struct RocksDBError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var message: String

    public var description: String { "RocksDB \(operation) on \(path): \(message)" }

    /// RocksDB found data that does not verify (a block or file checksum, a malformed MANIFEST
    /// or CURRENT): damage on the media, or a bad read.
    /// Also an open that fails because the MANIFEST that CURRENT names does not exist: CURRENT
    /// carries no checksum, so a flipped bit in it names a file that was never written.
    public var isCorruption: Bool {
        message.hasPrefix("Corruption")
            || (operation == "open" && message.contains("No such file or directory") && message.contains("/MANIFEST-"))
    }

    /// Takes ownership of a RocksDB error string (freed with `rocksdb_free`).
    static func check(_ error: UnsafeMutablePointer<CChar>?, _ operation: String, _ path: String) throws(RocksDBError) {
        guard let error else { return }
        let message = String(cString: error)
        rocksdb_free(error)
        throw RocksDBError(operation: operation, path: path, message: message)
    }
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
    // @unchecked: the C handles are used only through RocksDB's thread-safe API; `closed`
    // guards the lifetime.
    public let path: String
    /// nil: RocksDB's own default environment (its POSIX file I/O, not the FileSystem layer).
    private let environment: RocksDBEnvironment?
    private let database: OpaquePointer
    private let options: OpaquePointer
    private let writeOptions: OpaquePointer
    private let readOptions: OpaquePointer
    private let flushOptions: OpaquePointer
    private let closed = Atomic<Bool>(false)
    /// RocksDB compacts on its own in the background; when false, only `compact()` does.
    public let compactsAutomatically: Bool

    /// Opens (creating if missing) the database at `path`, with its file I/O through
    /// `environment` (the FileSystem bridge), or through RocksDB's default POSIX environment when
    /// it is nil (used to measure what the bridge costs).
    /// - Parameter readOnly: opens without writing anything (offline inspection); writes trap.
    /// - Parameter syncedWAL: RocksDB's own WAL on, every write synced (`sync=true`). The engine
    ///   never uses it (its own WAL comes first); the benchmark compares against it.
    public init(
        path: String, environment: RocksDBEnvironment?, createIfMissing: Bool = true, readOnly: Bool = false,
        syncedWAL: Bool = false
    ) throws(RocksDBError) {
        self.path = path
        self.environment = environment
        // Two options without a setter in the 7.8 C API, set through the options string:
        // - avoid_flush_during_shutdown: closing must never flush, because lane state becomes
        //   durable only through flush(), after the log that covers it;
        // - max_bgerror_resume_count=0: after an I/O error RocksDB must not retry in the
        //   background (a failed sync is fatal; the engine restarts and recovers instead).
        let base = rocksdb_options_create()!
        let options = rocksdb_options_create()!
        var optionsError: UnsafeMutablePointer<CChar>?
        rocksdb_get_options_from_string(base, "avoid_flush_during_shutdown=true;max_bgerror_resume_count=0", options, &optionsError)
        rocksdb_options_destroy(base)
        if let optionsError {
            let message = String(cString: optionsError)
            rocksdb_free(optionsError)
            rocksdb_options_destroy(options)
            throw RocksDBError(operation: "configure", path: path, message: message)
        }
        if let environment { rocksdb_options_set_env(options, environment.pointer) }
        rocksdb_options_set_create_if_missing(options, createIfMissing ? 1 : 0)
        rocksdb_options_set_paranoid_checks(options, 1)
        let compactsAutomatically = !(environment?.isSimulation ?? false)
        rocksdb_options_set_disable_auto_compactions(options, compactsAutomatically ? 0 : 1)
        rocksdb_options_set_stats_dump_period_sec(options, 0)
        rocksdb_options_set_stats_persist_period_sec(options, 0)
        rocksdb_options_set_max_file_opening_threads(options, 1)
        rocksdb_options_set_max_background_jobs(options, 2)
        rocksdb_options_set_write_buffer_size(options, 64 << 20)
        rocksdb_options_set_info_log_level(options, 5)  // HEADER_LEVEL: nothing routine
        rocksdb_options_set_compression(options, Int32(rocksdb_no_compression))
        var error: UnsafeMutablePointer<CChar>?
        let opened = readOnly ? rocksdb_open_for_read_only(options, path, 0, &error) : rocksdb_open(options, path, &error)
        do {
            try RocksDBError.check(error, "open", path)
        } catch {
            if let opened { rocksdb_close(opened) }
            rocksdb_options_destroy(options)
            throw error
        }
        guard let opened else {
            rocksdb_options_destroy(options)
            throw RocksDBError(operation: "open", path: path, message: "no handle and no error")
        }
        database = opened
        self.compactsAutomatically = compactsAutomatically
        self.options = options
        writeOptions = rocksdb_writeoptions_create()!
        if syncedWAL {
            rocksdb_writeoptions_set_sync(writeOptions, 1)
        } else {
            rocksdb_writeoptions_disable_WAL(writeOptions, 1)
        }
        readOptions = rocksdb_readoptions_create()!
        rocksdb_readoptions_set_verify_checksums(readOptions, 1)
        flushOptions = rocksdb_flushoptions_create()!
        rocksdb_flushoptions_set_wait(flushOptions, 1)
    }

    deinit {
        assert(closed.load(ordering: .acquiring), "RocksDatabase \(path) was not closed")
        if !closed.load(ordering: .acquiring) { release() }
    }

    private func checkOpen() {
        precondition(!closed.load(ordering: .acquiring), "RocksDatabase \(path) used after close")
    }

    /// The value at `key`, or nil. Block checksums are verified: damage throws, never returns
    /// wrong bytes.
    public func get(_ key: [UInt8]) throws(RocksDBError) -> [UInt8]? {
        checkOpen()
        var length = 0
        var error: UnsafeMutablePointer<CChar>?
        let value = key.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rocksdb_get(database, readOptions, $0.baseAddress, $0.count, &length, &error) }
        }
        try RocksDBError.check(error, "get", path)
        guard let value else { return nil }
        defer { rocksdb_free(value) }
        return Array(UnsafeRawBufferPointer(start: value, count: length))
    }

    /// Applies `batch` atomically (to the memtable; durable only after `flush()`).
    public func write(_ batch: RocksWriteBatch) throws(RocksDBError) {
        checkOpen()
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_write(database, writeOptions, batch.pointer, &error)
        try RocksDBError.check(error, "write", path)
    }

    /// Writes the memtable to SST files and waits: afterwards everything written is durable.
    /// Without automatic compaction (a simulation) it also waits for the flush thread's clean-up
    /// (obsolete-file deletion), which RocksDB does after waking the waiter; otherwise its unlinks
    /// would race with the caller's next I/O and a simulated run would not be a function of its
    /// seed.
    public func flush() throws(RocksDBError) {
        checkOpen()
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_flush(database, flushOptions, &error)
        if !compactsAutomatically { waitForBackgroundWork() }
        try RocksDBError.check(error, "flush", path)
    }

    /// Polls until no flush or compaction runs. Bounded: gives up after about ten seconds,
    /// which only a wedged RocksDB could reach. Only without automatic compaction, where nothing
    /// else starts background work.
    private func waitForBackgroundWork() {
        precondition(!compactsAutomatically, "waiting for background work that never ends")
        let pollsMax = 200_000
        for _ in 0..<pollsMax {
            var flushes: UInt64 = 0
            var compactions: UInt64 = 0
            let flushQuery = rocksdb_property_int(database, "rocksdb.num-running-flushes", &flushes)
            let compactionQuery = rocksdb_property_int(database, "rocksdb.num-running-compactions", &compactions)
            if flushQuery != 0 || compactionQuery != 0 || (flushes == 0 && compactions == 0) { return }
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
                var value: UInt64 = 0
                guard rocksdb_property_int(database, name, &value) == 0 else { return false }
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
        guard let text = rocksdb_property_value(database, name) else { return nil }
        defer { rocksdb_free(text) }
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
        var message = [CChar](repeating: 0, count: Int(RVB_MESSAGE_BYTES))
        let code = rvb_compact_all(UnsafeMutableRawPointer(database), &message)
        if !compactsAutomatically { waitForBackgroundWork() }
        guard code == RVB_OK else {
            throw RocksDBError(operation: "compact", path: path, message: message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
    }

    /// Every key-value pair whose key starts with `prefix`, in key order.
    public func scan(prefix: [UInt8], _ visit: ([UInt8], [UInt8]) throws -> Void) throws {
        checkOpen()
        let iterator = rocksdb_create_iterator(database, readOptions)!
        defer { rocksdb_iter_destroy(iterator) }
        prefix.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rocksdb_iter_seek(iterator, $0.baseAddress, $0.count) }
        }
        // Bounded by the number of keys in the database.
        while rocksdb_iter_valid(iterator) != 0 {
            var keyLength = 0
            var valueLength = 0
            let keyPointer = rocksdb_iter_key(iterator, &keyLength)!
            let key = Array(UnsafeRawBufferPointer(start: keyPointer, count: keyLength))
            guard key.starts(with: prefix) else { break }
            let valuePointer = rocksdb_iter_value(iterator, &valueLength)
            let value = valueLength == 0 ? [] : Array(UnsafeRawBufferPointer(start: valuePointer, count: valueLength))
            try visit(key, value)
            rocksdb_iter_next(iterator)
        }
        var error: UnsafeMutablePointer<CChar>?
        rocksdb_iter_get_error(iterator, &error)
        try RocksDBError.check(error, "iterate", path)
    }

    /// A hard-link checkpoint of the database in `directory` (which must not exist), flushed
    /// first so it holds everything written.
    public func checkpoint(to directory: String) throws(RocksDBError) {
        checkOpen()
        var error: UnsafeMutablePointer<CChar>?
        let checkpoint = rocksdb_checkpoint_object_create(database, &error)
        try RocksDBError.check(error, "checkpoint", path)
        defer { rocksdb_checkpoint_object_destroy(checkpoint) }
        rocksdb_checkpoint_create(checkpoint, directory, 0, &error)
        try RocksDBError.check(error, "checkpoint", directory)
    }

    /// Closes the database without flushing: what was not flushed is gone, exactly as after a
    /// crash (the engine's WAL replays it).
    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        release()
    }

    private func release() {
        rocksdb_close(database)
        rocksdb_options_destroy(options)
        rocksdb_writeoptions_destroy(writeOptions)
        rocksdb_readoptions_destroy(readOptions)
        rocksdb_flushoptions_destroy(flushOptions)
    }
}

/// A RocksDB write batch: puts and deletes applied together or not at all.
public final class RocksWriteBatch {
    let pointer: OpaquePointer

    public init() {
        pointer = rocksdb_writebatch_create()!
    }

    deinit {
        rocksdb_writebatch_destroy(pointer)
    }

    public func put(_ key: [UInt8], _ value: [UInt8]) {
        key.withUnsafeBufferPointer { keyBuffer in
            value.withUnsafeBufferPointer { valueBuffer in
                keyBuffer.withMemoryRebound(to: CChar.self) { keyChars in
                    valueBuffer.withMemoryRebound(to: CChar.self) { valueChars in
                        rocksdb_writebatch_put(pointer, keyChars.baseAddress, keyChars.count, valueChars.baseAddress, valueChars.count)
                    }
                }
            }
        }
    }

    public func delete(_ key: [UInt8]) {
        key.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { rocksdb_writebatch_delete(pointer, $0.baseAddress, $0.count) }
        }
    }

    public var count: Int { Int(rocksdb_writebatch_count(pointer)) }
}
