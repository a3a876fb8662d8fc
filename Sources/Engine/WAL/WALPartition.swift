import FaultFS

/// Counters of one partition's writer, for metrics and tests.
public struct WALPartitionStatistics: Sendable, Equatable {
    public var appendBatches: UInt64 = 0
    public var recordsAppended: UInt64 = 0
    public var bytesAppended: UInt64 = 0
    public var syncs: UInt64 = 0
    public var segmentsRolled: UInt64 = 0
    /// Appenders that found their records already covered by another appender's sync.
    public var syncsShared: UInt64 = 0

    public init() {}
}

/// One fdatasync of a WAL partition, as reported to a `WALObserver`.
public struct WALSyncEvent: Sendable {
    public var partition: WALPartitionID
    /// How long the sync call took.
    public var durationNanoseconds: UInt64
    /// Records the sync made durable (the group-commit batch size).
    public var records: UInt64
    public var bytes: UInt64
}

/// Receives the WAL's sync events (for metrics). Called on the syncing thread with the
/// partition's lock held: it must be quick and must not call back into the log.
public protocol WALObserver: Sendable {
    func walSynced(_ event: WALSyncEvent)
}

/// The writer of one WAL partition: appends record batches to the current segment, rolls
/// segments, and makes records durable according to the fsync policy.
///
/// Thread-safe. Appends are written in LSN order under one lock. Durability:
/// - `strict`: `commit(through:)` returns only after an fdatasync that started after the records
///   were written has succeeded. Concurrent committers share syncs: one leads, the others wait
///   and find themselves covered (group commit).
/// - `balanced`: `commit(through:)` syncs only when `syncBytes` are unsynced or
///   `syncIntervalMilliseconds` have passed; `tick()` does the same from a timer. `durableLSN`
///   says what is certain.
/// - `dev_fast`: records are written to the OS per batch and never synced.
///
/// A failed write or sync puts the partition into a failed state: every later call throws
/// `failed` and nothing is retried; the engine must restart and recover.
public final class WALPartition: @unchecked Sendable {
    // @unchecked: every mutable field below is guarded by `lock`.
    public let partition: WALPartitionID
    public let directory: String
    public let configuration: WALConfiguration
    private let fileSystem: any FileSystem
    private let clock: any WALClock
    private let observer: (any WALObserver)?
    private let lock = ConditionLock()

    private var handle: (any FileHandle)?
    private var segmentIndex: UInt64
    private var segmentSizeBytes: UInt64
    private var segmentRecordCount: UInt64
    private var lastLSN: LSN
    private var closingChecksum: UInt32
    private var durableLSNValue: LSN
    private var syncInProgress = false
    private var failure: WALError?
    private var isClosed = false
    private var unsyncedBytes: UInt64 = 0
    private var lastSyncNanoseconds: UInt64
    private var statisticsValue = WALPartitionStatistics()
    private var encodeBuffer: [UInt8] = []
    /// dev_fast: segments rolled without a sync, synced by the next `checkpointSync()`.
    private var unsyncedRolledPaths: [String] = []

    /// Opens the writer after recovery: continues the last scanned segment, or starts a new one
    /// when there is none, it is full, or it was written under another fsync policy.
    public init(
        fileSystem: any FileSystem, directory: String, partition: WALPartitionID, configuration: WALConfiguration,
        clock: any WALClock, recovered scan: WALPartitionScan, observer: (any WALObserver)? = nil
    ) throws(WALError) {
        precondition(configuration.segmentSizeBytes > UInt64(WALFormat.segmentHeaderBytes), "segment too small")
        precondition(configuration.recoveryMode != .salvage, "a salvaged log is read-only")
        self.fileSystem = fileSystem
        self.directory = directory
        self.partition = partition
        self.configuration = configuration
        self.clock = clock
        self.observer = observer
        lastLSN = scan.lastLSN
        closingChecksum = scan.closingChecksum
        durableLSNValue = scan.lastLSN
        lastSyncNanoseconds = clock.nowNanoseconds()
        let tail = scan.segments.last { $0.header != nil && !($0.path == scan.damage?.path && scan.damage?.offset == 0) }
        segmentIndex = tail?.index ?? 0
        segmentSizeBytes = tail?.validEndOffset ?? 0
        segmentRecordCount = tail.map { ($0.lastLSN >= $0.header!.firstLSN) ? $0.lastLSN - $0.header!.firstLSN + 1 : 0 } ?? 0
        do {
            try fileSystem.createDirectories(directory)
            if let tail, tail.header!.fsyncPolicy == configuration.fsyncPolicy,
                tail.validEndOffset < configuration.segmentSizeBytes
            {
                handle = try fileSystem.openFile(tail.path, options: .readWrite)
            } else {
                try startSegment(index: segmentIndex + 1)
            }
        } catch {
            throw WALError.io(error, partition: partition, "opening the log for writing in \(directory)")
        }
    }

    /// The highest LSN written (handed to the OS).
    public var writtenLSN: LSN { lock.withLock { lastLSN } }

    /// The highest LSN known durable: everything at or below it survives a power loss.
    public var durableLSN: LSN { lock.withLock { durableLSNValue } }

    public var statistics: WALPartitionStatistics { lock.withLock { statisticsValue } }

    /// Appends `payloads` as consecutive records in one write and returns their LSNs. The records
    /// are in the OS page cache, not durable: call `commit(through:)`.
    public func append(_ payloads: [[UInt8]], recordType: UInt8 = 1) throws(WALError) -> ClosedRange<LSN> {
        precondition(!payloads.isEmpty, "an empty batch")
        for payload in payloads where payload.count > WALFormat.recordBytesMax {
            throw WALError(
                kind: .recordTooLarge, partition: partition, damage: nil, cause: nil,
                message: "a record of \(payload.count) bytes exceeds \(WALFormat.recordBytesMax)")
        }
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        let batchBytes = payloads.reduce(0) { $0 + WALFormat.frameLength(payloadLength: $1.count) }
        if segmentRecordCount > 0 && segmentSizeBytes + UInt64(batchBytes) > configuration.segmentSizeBytes {
            try rollSegment()
        }
        encodeBuffer.removeAll(keepingCapacity: true)
        var checksum = closingChecksum
        for (position, payload) in payloads.enumerated() {
            checksum = payload.withUnsafeBytes { bytes in
                WALFrameCodec.encode(
                    payload: bytes, lsn: lastLSN + 1 + UInt64(position), syncedThroughLSN: durableLSNValue,
                    partition: partition, segmentIndex: segmentIndex, recordType: recordType, into: &encodeBuffer)
            }
        }
        do {
            try handle!.append(encodeBuffer)
        } catch {
            // The file now holds an unknown prefix of the batch: the in-memory view is no
            // longer the file's, so the partition stops here.
            throw fail(WALError.io(error, partition: partition, "appending \(payloads.count) record(s)"))
        }
        let first = lastLSN + 1
        lastLSN += UInt64(payloads.count)
        closingChecksum = checksum
        segmentSizeBytes += UInt64(encodeBuffer.count)
        segmentRecordCount += UInt64(payloads.count)
        unsyncedBytes += UInt64(encodeBuffer.count)
        statisticsValue.appendBatches += 1
        statisticsValue.recordsAppended += UInt64(payloads.count)
        statisticsValue.bytesAppended += UInt64(encodeBuffer.count)
        return first...lastLSN
    }

    /// Makes `lsn` as durable as the policy promises and returns whether it is durable now.
    /// `strict` always syncs (or shares a sync); `balanced` syncs only past its thresholds;
    /// `dev_fast` never does.
    @discardableResult
    public func commit(through lsn: LSN) throws(WALError) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        precondition(lsn <= lastLSN, "commit of LSN \(lsn) that was never appended (last \(lastLSN))")
        switch configuration.fsyncPolicy {
        case .strict:
            if configuration.mutations.active(.acknowledgeBeforeSync) {
                durableLSNValue = max(durableLSNValue, lsn)
            } else {
                try syncLocked(through: lsn)
            }
        case .balanced:
            if balancedSyncDue() { try syncLocked(through: lastLSN) }
        case .devFast:
            try checkUsable()
        }
        return durableLSNValue >= lsn
    }

    /// Syncs everything written so far under `strict` and `balanced` (used at shutdown). Under
    /// `dev_fast`, which never syncs, it only checks that the log is usable.
    public func sync() throws(WALError) {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        guard configuration.fsyncPolicy != .devFast else { return }
        try syncLocked(through: lastLSN)
    }

    /// Makes everything written durable whatever the policy — under `dev_fast` too, including
    /// segments rolled without a sync. The engine calls it before it flushes lane state, which
    /// must never become durable ahead of the log.
    public func checkpointSync() throws(WALError) {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        while syncInProgress { lock.wait() }
        for path in unsyncedRolledPaths {
            do {
                let rolled = try fileSystem.openFile(path, options: .readOnly)
                defer { try? rolled.close() }
                try rolled.sync()
            } catch {
                throw fail(WALError.io(error, partition: partition, "fdatasync of rolled segment \(path)"))
            }
        }
        unsyncedRolledPaths.removeAll()
        let started = clock.nowNanoseconds()
        do {
            try handle!.sync()
            if configuration.fsyncPolicy == .devFast { try fileSystem.syncDirectory(directory) }
        } catch {
            throw fail(WALError.io(error, partition: partition, "checkpoint sync of segment \(segmentIndex)"))
        }
        markSynced(through: lastLSN, bytes: unsyncedBytes, startedNanoseconds: started)
    }

    /// For `balanced`: syncs if the interval has passed with unsynced records. Call it from a
    /// timer at least every `syncIntervalMilliseconds`.
    public func tick() throws(WALError) {
        lock.lock()
        defer { lock.unlock() }
        guard configuration.fsyncPolicy == .balanced, balancedSyncDue() else { return }
        try syncLocked(through: lastLSN)
    }

    /// Syncs (when the policy syncs) and closes the segment. Later calls throw `closed`.
    public func close() throws(WALError) {
        lock.lock()
        defer { lock.unlock() }
        guard !isClosed else { return }
        if failure == nil && configuration.fsyncPolicy != .devFast && lastLSN > durableLSNValue {
            try syncLocked(through: lastLSN)
        }
        isClosed = true
        if let handle {
            self.handle = nil
            // Everything that needed to be durable has been synced; an EINTR on close loses
            // nothing and the descriptor is gone either way.
            try? handle.close()
        }
    }

    // MARK: Internals (lock held)

    private func checkUsable() throws(WALError) {
        if let failure { throw WALError(kind: .failed, partition: partition, damage: nil, cause: failure.cause, message: "the log failed earlier: \(failure.message)") }
        if isClosed { throw WALError(kind: .closed, partition: partition, damage: nil, cause: nil, message: "the log is closed") }
    }

    private func fail(_ error: WALError) -> WALError {
        if failure == nil { failure = error }
        if error.kind == .failed { Probe.walSyncFailed.hit() }
        lock.broadcast()
        return WALError(kind: .failed, partition: partition, damage: nil, cause: error.cause, message: error.message)
    }

    /// Records a successful sync that covered everything through `lsn` and `bytes` of the
    /// unsynced bytes counted when it started.
    private func markSynced(through lsn: LSN, bytes: UInt64, startedNanoseconds: UInt64) {
        statisticsValue.syncs += 1
        let now = clock.nowNanoseconds()
        if let observer, lsn > durableLSNValue || bytes > 0 {
            observer.walSynced(
                WALSyncEvent(
                    partition: partition, durationNanoseconds: now &- startedNanoseconds,
                    records: lsn > durableLSNValue ? lsn - durableLSNValue : 0, bytes: bytes))
        }
        durableLSNValue = max(durableLSNValue, lsn)
        unsyncedBytes -= min(unsyncedBytes, bytes)
        lastSyncNanoseconds = now
    }

    private func balancedSyncDue() -> Bool {
        guard unsyncedBytes > 0 else { return false }
        if unsyncedBytes >= configuration.syncBytes { return true }
        let elapsed = clock.nowNanoseconds() &- lastSyncNanoseconds
        return elapsed >= configuration.syncIntervalMilliseconds * 1_000_000
    }

    /// Group commit: returns once `durableLSN >= lsn`, leading a sync or waiting for one.
    private func syncLocked(through lsn: LSN) throws(WALError) {
        var leadCount = 0
        // Bounded: each round either returns, waits for the running sync (which ends), or
        // leads one sync that covers `lsn` (written records are all in the current segment or
        // in rolled segments that were synced when rolled).
        while durableLSNValue < lsn {
            try checkUsable()
            if syncInProgress {
                lock.wait()
                continue
            }
            precondition(leadCount == 0, "a led sync must cover every record written before it")
            leadCount += 1
            syncInProgress = true
            let target = lastLSN
            let bytes = unsyncedBytes
            let syncing = handle!
            lock.unlock()
            let started = clock.nowNanoseconds()
            var syncError: FileSystemError?
            do {
                try syncing.sync()
            } catch {
                syncError = error
            }
            lock.lock()
            syncInProgress = false
            if let syncError {
                throw fail(WALError.io(syncError, partition: partition, "fdatasync of segment \(segmentIndex)"))
            }
            markSynced(through: target, bytes: bytes, startedNanoseconds: started)
            lock.broadcast()
        }
        if leadCount == 0 && configuration.fsyncPolicy == .strict { statisticsValue.syncsShared += 1 }
    }

    /// Closes the full segment durably and starts the next one. The old segment is synced first
    /// (unless dev_fast) so a later segment never exists while an earlier tail could be lost.
    private func rollSegment() throws(WALError) {
        // Wait out a sync in flight on the old handle before replacing it.
        while syncInProgress { lock.wait() }
        try checkUsable()
        let old = handle!
        if configuration.fsyncPolicy != .devFast {
            let started = clock.nowNanoseconds()
            do {
                try old.sync()
            } catch {
                throw fail(WALError.io(error, partition: partition, "fdatasync of segment \(segmentIndex) before rolling"))
            }
            markSynced(through: lastLSN, bytes: unsyncedBytes, startedNanoseconds: started)
        }
        handle = nil
        try? old.close()
        if configuration.fsyncPolicy == .devFast {
            unsyncedRolledPaths.append(PathComponents.join(directory, WALScanner.segmentFileName(index: segmentIndex)))
        }
        do {
            try startSegment(index: segmentIndex + 1)
        } catch {
            throw fail(WALError.io(error, partition: partition, "starting segment \(segmentIndex + 1)"))
        }
        statisticsValue.segmentsRolled += 1
        Probe.walSegmentRolled.hit()
    }

    /// Creates segment `index` with its header, durable (file and directory synced) unless
    /// dev_fast.
    private func startSegment(index: UInt64) throws(FileSystemError) {
        let header = WALSegmentHeader(
            fsyncPolicy: configuration.fsyncPolicy, partition: partition, segmentIndex: index, firstLSN: lastLSN + 1,
            previousLastLSN: lastLSN, previousChecksum: closingChecksum,
            createdAtSeconds: clock.nowNanoseconds() / 1_000_000_000)
        let (bytes, checksum) = header.encoded()
        let path = PathComponents.join(directory, WALScanner.segmentFileName(index: index))
        // createNew: a segment file is never reused, so stale records can never look current.
        let created = try fileSystem.openFile(path, options: .createNew)
        do {
            try created.write(bytes, at: 0)
            if configuration.fsyncPolicy != .devFast {
                try created.sync()
                if !configuration.mutations.active(.skipSegmentRollDirectorySync) {
                    try fileSystem.syncDirectory(directory)
                }
            }
        } catch {
            try? created.close()
            throw error
        }
        handle = created
        segmentIndex = index
        segmentSizeBytes = UInt64(bytes.count)
        segmentRecordCount = 0
        closingChecksum = checksum
    }
}
