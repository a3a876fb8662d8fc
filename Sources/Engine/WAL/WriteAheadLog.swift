import FaultFS

/// The write-ahead log of a node: one partition per lane plus the meta partition, each in its
/// own directory under `wal_dir` (`lane-0000/`, …, `meta/`).
///
/// Opening recovers every partition first (see `WALRecovery`), handing each trusted record to
/// the replay closure in LSN order per partition, and only then opens the writers. Durability of
/// appends is per partition and per policy: see `WALPartition`.
public final class WriteAheadLog: Sendable {
    public let directory: String
    public let partitions: [WALPartitionID: WALPartition]
    public let recoveryReports: [WALRecoveryReport]

    /// Recovers and opens the log.
    /// - Parameter replay: called for every trusted record, partition by partition in the order
    ///   of `partitionIDs`, in LSN order within each. It must not throw.
    public convenience init(
        fileSystem: any FileSystem, directory: String, partitionIDs: [WALPartitionID],
        configuration: WALConfiguration, clock: any WALClock,
        replay: (WALPartitionID, WALFrameHeader, UnsafeRawBufferPointer) -> Void = { _, _, _ in }
    ) throws(WALError) {
        let recovered = try Self.recover(
            fileSystem: fileSystem, directory: directory, partitionIDs: partitionIDs, mode: configuration.recoveryMode,
            mutations: configuration.mutations, policyWhenUnknown: configuration.fsyncPolicy, replay: replay)
        try self.init(fileSystem: fileSystem, directory: directory, configuration: configuration, clock: clock, recovered: recovered)
    }

    /// What recovering every partition found, ready to open writers on.
    public struct Recovered: Sendable {
        public var partitionIDs: [WALPartitionID]
        public var scans: [WALPartitionID: WALPartitionScan]
        public var reports: [WALRecoveryReport]
    }

    /// Recovers every partition (see `WALRecovery`) without opening writers, so a caller can
    /// decide what to keep (`discardRecords`) before anything new is written.
    public static func recover(
        fileSystem: any FileSystem, directory: String, partitionIDs: [WALPartitionID], mode: WALRecoveryMode,
        policyWhenUnknown: FsyncPolicy = .strict,
        replay: (WALPartitionID, WALFrameHeader, UnsafeRawBufferPointer) -> Void = { _, _, _ in }
    ) throws(WALError) -> Recovered {
        try recover(
            fileSystem: fileSystem, directory: directory, partitionIDs: partitionIDs, mode: mode, mutations: [],
            policyWhenUnknown: policyWhenUnknown, replay: replay)
    }

    /// `recover` with the simulator's deliberate bugs (`EngineMutation`), which only the engine's
    /// own configuration passes on.
    static func recover(
        fileSystem: any FileSystem, directory: String, partitionIDs: [WALPartitionID], mode: WALRecoveryMode,
        mutations: Set<EngineMutation>, policyWhenUnknown: FsyncPolicy,
        replay: (WALPartitionID, WALFrameHeader, UnsafeRawBufferPointer) -> Void
    ) throws(WALError) -> Recovered {
        precondition(Set(partitionIDs).count == partitionIDs.count, "duplicate partition ids")
        precondition(mode != .salvage, "salvage is read-only: use WriteAheadLog.salvage")
        var reports: [WALRecoveryReport] = []
        var scans: [WALPartitionID: WALPartitionScan] = [:]
        for partition in partitionIDs {
            let (report, scan) = try WALRecovery.recover(
                fileSystem: fileSystem, directory: partitionDirectory(directory, partition), partition: partition,
                mode: mode, mutations: mutations, policyWhenUnknown: policyWhenUnknown,
                replay: { header, payload in replay(partition, header, payload) })
            reports.append(report)
            scans[partition] = scan
        }
        return Recovered(partitionIDs: partitionIDs, scans: scans, reports: reports)
    }

    /// Opens the writers on a recovered log.
    public init(
        fileSystem: any FileSystem, directory: String, configuration: WALConfiguration, clock: any WALClock,
        recovered: Recovered, observer: (any WALObserver)? = nil
    ) throws(WALError) {
        self.directory = directory
        var writers: [WALPartitionID: WALPartition] = [:]
        for partition in recovered.partitionIDs {
            writers[partition] = try WALPartition(
                fileSystem: fileSystem, directory: Self.partitionDirectory(directory, partition), partition: partition,
                configuration: configuration, clock: clock, recovered: recovered.scans[partition]!,
                observer: observer)
        }
        partitions = writers
        recoveryReports = recovered.reports
    }

    /// Removes every record after `lsn` from a recovered partition (records of blocks that never
    /// committed): whole segments move aside as `<segment>.uncommitted-0`, the bytes cut from the
    /// segment that keeps `lsn` are copied to `<segment>.uncommitted-<offset>`, and everything is
    /// synced. Updates the partition's recovery state (rescanned) and returns how many bytes
    /// were moved out of the log. Idempotent.
    @discardableResult
    public static func discardRecords(
        fileSystem: any FileSystem, directory: String, partition: WALPartitionID, after lsn: LSN,
        recovered: inout Recovered
    ) throws(WALError) -> UInt64 {
        var discardedBytes: UInt64 = 0
        let partitionDirectory = partitionDirectory(directory, partition)
        let scanner = WALScanner(fileSystem: fileSystem, directory: partitionDirectory, partition: partition)
        let firstIndex = try scanner.firstSegmentIndex()
        let files = try scanner.segmentFiles().filter { $0.index >= firstIndex }
        do throws(FileSystemError) {
            for file in files.reversed() {
                // The chain's first segment never moves aside, even when every record in it is
                // past `lsn`: its header (previous last LSN) is the only thing that says where
                // the partition starts, which is above 0 after a snapshot restore or retention.
                // Moved aside, the partition would read as empty and restart at LSN 1. Its
                // records are cut off instead, down to the header.
                let movable = file.index != files.first!.index
                // A bad read is read again (bounded); one that never settles is an error, never
                // a reason to keep uncommitted records.
                let read = try fileSystem.readFile(file.path) { bytes in
                    guard let firstLSN = headerFirstLSN(bytes) else { return false }
                    return (movable && firstLSN > lsn) || firstOffset(after: lsn, in: bytes) != nil
                }
                guard read.verified, let firstLSN = headerFirstLSN(read.bytes) else {
                    throw FileSystemError(.ioError, operation: "discard", path: file.path, detail: "the segment does not read back as recovery verified it")
                }
                let bytes = read.bytes
                if movable && firstLSN > lsn {
                    try fileSystem.rename(file.path, to: file.path + ".uncommitted-0")
                    discardedBytes += UInt64(bytes.count)
                    continue
                }
                if let cut = firstOffset(after: lsn, in: bytes)! {
                    try cutTail(of: file.path, bytes: bytes, at: cut, fileSystem: fileSystem)
                    discardedBytes += UInt64(bytes.count - cut)
                }
                break
            }
            try fileSystem.syncDirectory(partitionDirectory)
        } catch {
            throw WALError.io(error, partition: partition, "discarding records after LSN \(lsn)")
        }
        let (report, scan) = try WALRecovery.recover(
            fileSystem: fileSystem, directory: partitionDirectory, partition: partition, mode: .tolerateTornTail,
            replay: { _, _ in })
        // Exactly at `lsn`: above it, records were left behind; below it, the partition lost
        // its starting position and its writer would reuse LSNs the lane has applied.
        guard scan.lastLSN == lsn else {
            throw WALError(
                kind: .io, partition: partition, damage: nil, cause: nil,
                message: "the log ends at LSN \(scan.lastLSN) after discarding the records after LSN \(lsn)")
        }
        recovered.scans[partition] = scan
        if let index = recovered.reports.firstIndex(where: { $0.partition == partition }) {
            recovered.reports[index].lastLSN = report.lastLSN
        }
        if discardedBytes > 0 { Probe.walUncommittedDiscarded.hit() }
        return discardedBytes
    }

    /// Where the first record after `lsn` starts in a segment's bytes: `.some(nil)` when the
    /// segment ends at or before it, `nil` when the bytes do not settle it (the walk stopped at a
    /// frame that does not verify — recovery verified these frames, so that is a bad read, and
    /// the segment is read again).
    private static func firstOffset(after lsn: LSN, in bytes: [UInt8]) -> Int?? {
        bytes.withUnsafeBytes { buffer -> Int?? in
            var offset = WALFormat.segmentHeaderBytes
            // Bounded by the segment size.
            while offset < buffer.count {
                guard case .frame(let frame) = WALFrameCodec.decode(buffer, at: offset) else {
                    // Zero padding is where the data ends; anything else is a bad read.
                    return buffer[offset...].allSatisfy { $0 == 0 } ? .some(nil) : nil
                }
                if frame.lsn > lsn { return .some(offset) }
                offset += frame.frameLength
            }
            return .some(nil)
        }
    }

    private static func headerFirstLSN(_ bytes: [UInt8]) -> LSN? {
        guard case .success(let (header, _)) = WALSegmentHeader.decode(bytes) else { return nil }
        return header.firstLSN
    }

    /// Copies the segment's bytes from `cut` on to `<segment>.uncommitted-<cut>` (synced), then
    /// truncates the segment at `cut` (synced): the records are kept beside the log, never lost.
    private static func cutTail(of path: String, bytes: [UInt8], at cut: Int, fileSystem: any FileSystem) throws(FileSystemError) {
        let copy = try fileSystem.openFile(path + ".uncommitted-\(cut)", options: OpenOptions(creation: .createIfMissing, writable: true, truncate: true))
        try copy.write(Array(bytes[cut...]), at: 0)
        try copy.sync()
        try copy.close()
        let segment = try fileSystem.openFile(path, options: .readWrite)
        try segment.truncate(to: UInt64(cut))
        try segment.sync()
        try segment.close()
    }

    public static func partitionDirectory(_ directory: String, _ partition: WALPartitionID) -> String {
        PathComponents.join(directory, partition.directoryName)
    }

    public func partition(_ id: WALPartitionID) -> WALPartition {
        guard let partition = partitions[id] else { preconditionFailure("no WAL partition \(id)") }
        return partition
    }

    /// Closes every partition (syncing first unless dev_fast). Returns the first error, after
    /// trying them all.
    public func close() throws(WALError) {
        var firstError: WALError?
        for id in partitions.keys.sorted() {
            do {
                try partitions[id]!.close()
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    /// Reads a log in salvage mode: skips damaged regions, reports each, changes nothing.
    public static func salvage(
        fileSystem: any FileSystem, directory: String, partitionIDs: [WALPartitionID],
        replay: (WALPartitionID, WALFrameHeader, UnsafeRawBufferPointer) -> Void
    ) throws(WALError) -> [WALRecoveryReport] {
        var reports: [WALRecoveryReport] = []
        for partition in partitionIDs {
            let (report, _) = try WALRecovery.recover(
                fileSystem: fileSystem, directory: partitionDirectory(directory, partition), partition: partition,
                mode: .salvage, replay: { header, payload in replay(partition, header, payload) })
            reports.append(report)
        }
        return reports
    }
}
