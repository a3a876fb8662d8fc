import FaultFS

/// What a stopped node's data directory holds, read without changing anything: the genesis,
/// each lane's durable applied position, and each WAL partition's range and damage.
public struct DataDirectoryStatus: Sendable {
    public struct Lane: Sendable {
        public var lane: Int
        /// The height whose state the lane's RocksDB holds durably.
        public var appliedHeight: UInt64
        public var appliedLSN: LSN
        public var laneRoot: Hash32
    }

    public var dataDirectory: String
    public var walDirectory: String
    public var chainID: String
    public var laneCount: Int
    public var lanes: [Lane]
    public var wal: [WALPartitionVerifyReport]
    /// The newest block the log holds a commit record for (recovery commits it if its lane
    /// records are complete), with its MetaRoot; `nil` when the log holds none.
    public var logHeight: UInt64
    public var logMetaRoot: Hash32?

    /// Reads the status of `dataDirectory`. Takes the data directory's lock for the duration, so
    /// it refuses (`locked`) while a node runs on it — unless the caller says it holds the lock
    /// itself (`lockHeld`). Throws `notInitialised`-style `storage` errors when the directory
    /// holds no genesis.
    public static func read(
        fileSystem: any FileSystem, dataDirectory: String, walDirectory: String? = nil, lockHeld: Bool = false
    ) throws(EngineError) -> DataDirectoryStatus {
        let walDirectory = DataDirectoryLayout(dataDirectory: dataDirectory, walDirectory: walDirectory).wal
        do {
            guard try fileSystem.exists(dataDirectory) else {
                throw EngineError(.notInitialised, path: dataDirectory, "the data directory does not exist")
            }
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError(.storage, path: dataDirectory, "\(error)")
        }
        let lock = lockHeld ? nil : try DataDirectoryLock.acquire(fileSystem: fileSystem, dataDirectory: dataDirectory)
        defer { try? lock?.unlock() }
        guard let genesis = try Genesis.read(fileSystem: fileSystem, dataDirectory: dataDirectory) else {
            throw EngineError(.notInitialised, path: dataDirectory, "the data directory holds no genesis (never started)")
        }
        var configuration = EngineConfiguration(dataDirectory: dataDirectory)
        configuration.laneCount = genesis.laneCount
        let environment = RocksDBEnvironment(fileSystem: fileSystem)
        var lanes: [Lane] = []
        for lane in 0..<genesis.laneCount {
            let directory = configuration.laneDirectory(lane)
            let store = try LaneStore.open(index: lane, path: directory, environment: environment, readOnly: true)
            defer { store.close() }
            let marker = try store.applied()
            lanes.append(Lane(lane: lane, appliedHeight: marker.height, appliedLSN: marker.lsn, laneRoot: marker.laneRoot))
        }
        let reports: [WALPartitionVerifyReport]
        do {
            reports = try WALVerifier.verify(fileSystem: fileSystem, directory: walDirectory)
        } catch {
            throw EngineError.wal(error)
        }
        let logHeight = reports.first { $0.partition.isMeta }?.lastLSN ?? 0
        var logMetaRoot: Hash32?
        if logHeight > 0 {
            do {
                if let record = try WALRecordReader.record(
                    fileSystem: fileSystem, walDirectory: walDirectory, partition: .meta, lsn: logHeight),
                    let commit = CommitRecord.decode(record.payload)
                {
                    logMetaRoot = commit.metaRoot
                }
            } catch {
                throw EngineError.wal(error)
            }
        }
        return DataDirectoryStatus(
            dataDirectory: dataDirectory, walDirectory: walDirectory, chainID: genesis.chainID, laneCount: genesis.laneCount,
            lanes: lanes, wal: reports, logHeight: logHeight, logMetaRoot: logMetaRoot)
    }
}

/// One record of the log as `wal inspect --records` lists it.
public struct WALRecordSummary: Sendable {
    public var lsn: LSN
    public var recordType: UInt8
    public var payloadBytes: Int
    /// The block height the record belongs to, when it decodes as an engine record.
    public var height: UInt64?
    public var operationCount: Int?
    /// Commit records: the block's MetaRoot.
    public var metaRoot: Hash32?
}

/// Lists the records of a partition read-only (every trusted record, damage skipped).
public enum WALInspector {
    public static func records(
        fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID, limit: Int
    ) throws(WALError) -> [WALRecordSummary] {
        precondition(limit >= 0)
        let scanner = WALScanner(
            fileSystem: fileSystem, directory: WriteAheadLog.partitionDirectory(walDirectory, partition), partition: partition)
        var summaries: [WALRecordSummary] = []
        do {
            _ = try scanner.scan(mode: .salvage) { header, payload in
                guard summaries.count < limit else { return }
                var summary = WALRecordSummary(lsn: header.lsn, recordType: header.recordType, payloadBytes: payload.count)
                if header.recordType == EngineRecordType.commit.rawValue, let commit = CommitRecord.decode(payload) {
                    summary.height = commit.height
                    summary.operationCount = Int(commit.operationCount)
                    summary.metaRoot = commit.metaRoot
                } else if header.recordType == EngineRecordType.laneBlock.rawValue, let lane = LaneBlockRecord.decode(payload) {
                    summary.height = lane.height
                    summary.operationCount = lane.operations.count
                }
                summaries.append(summary)
            }
        } catch let error as WALError {
            throw error
        } catch {
            preconditionFailure("the inspector's visitor does not throw: \(error)")
        }
        return summaries
    }
}
