import FaultFS

/// What recovering one partition did.
public struct WALRecoveryReport: Sendable, CustomStringConvertible {
    public var partition: WALPartitionID
    public var mode: WALRecoveryMode
    public var firstLSN: LSN
    public var lastLSN: LSN
    public var recordsReplayed: UInt64
    public var bytesRead: UInt64
    /// The torn tail that was dropped, if any, with where its bytes were copied.
    public var droppedTornTail: WALDamage?
    public var forensicCopies: [String]
    /// Damage skipped in salvage mode (the result then has holes).
    public var skipped: [WALDamage]

    public var description: String {
        var text = "\(partition): LSN \(firstLSN)...\(lastLSN), \(recordsReplayed) records replayed"
        if let droppedTornTail { text += ", torn tail dropped (\(droppedTornTail))" }
        if !skipped.isEmpty { text += ", SALVAGE skipped \(skipped.count) damaged region(s)" }
        return text
    }
}

/// Recovers one partition: scans it, hands every trusted record to `replay`, then acts on the
/// first damage according to the recovery mode:
/// - `tolerateTornTail`: a torn tail is copied aside (`<segment>.torn-<offset>`), the segment
///   truncated and synced; mid-log damage throws `midLogDamage` and changes nothing.
/// - `absolute`: any damage throws `damageInAbsoluteMode` and changes nothing.
/// - `salvage`: damaged regions are skipped and reported; nothing on disk changes.
///
/// Afterwards every segment and the partition directory are synced, so state recovered from the
/// page cache after a process crash is durable before anything new is written (R12 of `docs/RULES.md`).
/// Idempotent, and safe to crash anywhere: a second run finds either the same damage or the
/// already truncated segment.
public enum WALRecovery {
    public static func recover(
        fileSystem: any FileSystem, directory: String, partition: WALPartitionID, mode: WALRecoveryMode,
        policyWhenUnknown: FsyncPolicy = .strict,
        replay: (WALFrameHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws(WALError) -> (WALRecoveryReport, WALPartitionScan) {
        try recover(
            fileSystem: fileSystem, directory: directory, partition: partition, mode: mode, mutations: [],
            policyWhenUnknown: policyWhenUnknown, replay: replay)
    }

    /// `recover` with the simulator's deliberate bugs (`EngineMutation`), which only the engine's
    /// own configuration passes on.
    static func recover(
        fileSystem: any FileSystem, directory: String, partition: WALPartitionID, mode: WALRecoveryMode,
        mutations: Set<EngineMutation>, policyWhenUnknown: FsyncPolicy,
        replay: (WALFrameHeader, UnsafeRawBufferPointer) throws -> Void
    ) throws(WALError) -> (WALRecoveryReport, WALPartitionScan) {
        let scanner = WALScanner(
            fileSystem: fileSystem, directory: directory, partition: partition, mutations: mutations, policyWhenUnknown: policyWhenUnknown)
        let scan: WALPartitionScan
        do {
            scan = try scanner.scan(mode: mode, visit: replay)
        } catch let error as WALError {
            throw error
        } catch {
            preconditionFailure("replay visitor threw \(error); it must not throw")
        }
        var report = WALRecoveryReport(
            partition: partition, mode: mode, firstLSN: scan.firstLSN, lastLSN: scan.lastLSN,
            recordsReplayed: scan.recordsRead, bytesRead: scan.bytesRead, droppedTornTail: nil, forensicCopies: [],
            skipped: scan.skipped)
        if let damage = scan.damage {
            switch (mode, scan.verdict!) {
            case (.absolute, _):
                throw WALError(
                    kind: .damageInAbsoluteMode, partition: partition, damage: damage, cause: nil,
                    message: "recovery mode absolute refuses any damage (\(scan.verdict!.rawValue): \(scan.evidence))")
            case (_, .midLog):
                Probe.walMidLogRefused.hit()
                throw WALError(
                    kind: .midLogDamage, partition: partition, damage: damage, cause: nil,
                    message: "mid-log damage after LSN \(scan.lastLSN), \(scan.evidence)")
            case (_, .tornTail):
                do {
                    report.forensicCopies = try dropTornTail(fileSystem: fileSystem, scan: scan, damage: damage)
                } catch {
                    throw WALError.io(error, partition: partition, "dropping the torn tail at \(damage.path)")
                }
                report.droppedTornTail = damage
                (damage.offset == 0 ? Probe.walTornSegmentHeaderDropped : Probe.walTornTailDropped).hit()
            }
        }
        if mode != .salvage && !mutations.active(.skipRecoverySync) {
            do {
                try makeDurable(fileSystem: fileSystem, scan: scan)
            } catch {
                throw WALError.io(error, partition: partition, "syncing recovered segments")
            }
        }
        return (report, scan)
    }

    /// Copies the torn bytes aside and cuts them off. A torn segment header moves the whole file
    /// aside; under dev_fast, later segments go aside too.
    static func dropTornTail(
        fileSystem: any FileSystem, scan: WALPartitionScan, damage: WALDamage
    ) throws(FileSystemError) -> [String] {
        var copies: [String] = []
        if damage.offset == 0 {
            copies.append(damage.path + ".torn-0")
            try fileSystem.rename(damage.path, to: damage.path + ".torn-0")
        } else {
            let copyPath = damage.path + ".torn-\(damage.offset)"
            let segment = try fileSystem.openFile(damage.path, options: .readWrite)
            do {
                let size = try segment.size()
                let torn = try segment.read(at: damage.offset, count: Int(size - damage.offset))
                let copy = try fileSystem.openFile(copyPath, options: OpenOptions(creation: .createIfMissing, writable: true, truncate: true))
                try copy.write(torn, at: 0)
                try copy.sync()
                try copy.close()
                try fileSystem.syncDirectory(scan.directory)
                try segment.truncate(to: damage.offset)
                try segment.sync()
            } catch {
                try? segment.close()
                throw error
            }
            try segment.close()
            copies.append(copyPath)
        }
        for path in scan.segmentsAfterDamage {
            copies.append(path + ".torn-0")
            try fileSystem.rename(path, to: path + ".torn-0")
        }
        try fileSystem.syncDirectory(scan.directory)
        return copies
    }

    /// Syncs every kept segment (cutting a clean all-zero tail) and the directory.
    static func makeDurable(fileSystem: any FileSystem, scan: WALPartitionScan) throws(FileSystemError) {
        for segment in scan.segments {
            if segment.path == scan.damage?.path && scan.damage?.offset == 0 { continue }
            let handle = try fileSystem.openFile(segment.path, options: .readWrite)
            do {
                if try handle.size() > segment.validEndOffset {
                    Probe.walCleanZeroTailTrimmed.hit()
                    try handle.truncate(to: segment.validEndOffset)
                }
                try handle.sync()
            } catch {
                try? handle.close()
                throw error
            }
            try handle.close()
        }
        if try fileSystem.exists(scan.directory) { try fileSystem.syncDirectory(scan.directory) }
    }
}
