import FaultFS

/// What a node can serve its peers from `from` on: the blocks, or — when `from` is below what
/// the log still holds — the oldest height it can serve, so the peer can go elsewhere.
public enum ServedBlocks: Sendable, Equatable {
    case blocks([SyncBlock])
    /// `from` is below what the log holds; blocks from `oldestServableHeight` on can be served
    /// (nil when the log holds no whole block at all).
    case belowRetention(oldestServableHeight: UInt64?)
}

/// Reads committed blocks back out of the log as `SyncBlock`s, for peers: the commit records
/// from the meta partition, then each touched lane's records in one forward pass per lane
/// (`WALRecordReader.records`). Read-only; safe beside a running engine for heights it has made
/// durable. A record that is held but does not agree with its commit record (height, lane root)
/// is damage and throws: a node never serves a block it cannot vouch for.
public enum BlockRangeReader {
    /// Blocks `from`…`through` (at most `BlockRangeCodec.blocksMax`) whose encoded range stays
    /// within `rangeBytesMax`, except that the first block is always whole. Lane records are read
    /// with the same byte budget, so a request costs at most about that many bytes of reading
    /// (plus whole segments, which reads come in). `belowRetention` only when `from` is below the
    /// oldest servable height; a height that is held but cannot be read whole is an error.
    public static func read(
        fileSystem: any FileSystem, walDirectory: String, laneCount: Int, from: UInt64, through: UInt64, rangeBytesMax: Int
    ) throws(EngineError) -> ServedBlocks {
        precondition(from >= 1 && through >= from && through - from < UInt64(BlockRangeCodec.blocksMax), "a range of 1...blocksMax blocks")
        let commits = try commitRecords(fileSystem: fileSystem, walDirectory: walDirectory, heights: from...through)
        var blocks: [SyncBlock] = []
        var rangeBytes = BlockRangeCodec.headerBytes + BlockRangeCodec.trailerBytes
        var laneOperations: [[LSN: [BlockOperation]]] = Array(repeating: [:], count: laneCount)
        // Bounded by the commit records read (at most blocksMax).
        blocks: for commit in commits {
            guard commit.lanes.count == laneCount else {
                throw EngineError(.wal, height: commit.height, "the commit record names \(commit.lanes.count) lanes, the chain has \(laneCount)")
            }
            var lanes: [SyncBlock.Lane] = []
            for (lane, entry) in commit.lanes.enumerated() {
                guard let lsn = entry.lsn else { continue }
                if laneOperations[lane][lsn] == nil {
                    laneOperations[lane] = try laneRecords(
                        fileSystem: fileSystem, walDirectory: walDirectory, lane: lane, commits: commits, from: lsn, atOrAfter: commit.height,
                        payloadBytesMax: max(1, rangeBytesMax - rangeBytes))
                }
                guard let operations = laneOperations[lane][lsn] else { break blocks }
                lanes.append(SyncBlock.Lane(lane: lane, operations: operations))
            }
            let block = SyncBlock(
                height: commit.height, metaRoot: commit.metaRoot, previousMetaRoot: commit.previousMetaRoot,
                laneRoots: commit.lanes.map(\.laneRoot), lanes: lanes)
            guard blocks.isEmpty || rangeBytes + block.encodedBytes <= rangeBytesMax else { break }
            blocks.append(block)
            rangeBytes += block.encodedBytes
        }
        guard blocks.isEmpty else { return .blocks(blocks) }
        let oldest = try oldestServableHeight(fileSystem: fileSystem, walDirectory: walDirectory, laneCount: laneCount)
        guard let oldest, from >= oldest else { return .belowRetention(oldestServableHeight: oldest) }
        throw EngineError(.wal, height: from, "height \(from) is held (the oldest servable is \(oldest)) but its records cannot be read whole")
    }

    /// The commit records of `heights` as far as the meta partition holds them without a break.
    static func commitRecords(fileSystem: any FileSystem, walDirectory: String, heights: ClosedRange<UInt64>) throws(EngineError) -> [CommitRecord] {
        let records: [WALRecordReader.Record]
        do {
            records = try WALRecordReader.records(fileSystem: fileSystem, walDirectory: walDirectory, partition: .meta, lsns: heights)
        } catch {
            throw EngineError.wal(error)
        }
        return try records.map { (record) throws(EngineError) -> CommitRecord in
            guard record.header.recordType == EngineRecordType.commit.rawValue, let commit = CommitRecord.decode(record.payload),
                commit.height == record.header.lsn
            else {
                throw EngineError(.wal, height: record.header.lsn, "the meta partition's record at LSN \(record.header.lsn) is not the commit record of that height")
            }
            return commit
        }
    }

    /// The lane's records for the blocks of `commits` from LSN `from` on (heights up to the end of
    /// `commits`), read in one pass, each checked against its commit record.
    private static func laneRecords(
        fileSystem: any FileSystem, walDirectory: String, lane: Int, commits: [CommitRecord], from: LSN, atOrAfter height: UInt64,
        payloadBytesMax: Int
    ) throws(EngineError) -> [LSN: [BlockOperation]] {
        let wanted = commits.filter { $0.height >= height }.compactMap { commit in commit.lanes[lane].lsn.map { ($0, commit) } }
        guard let last = wanted.last?.0 else { return [:] }
        let records: [WALRecordReader.Record]
        do {
            records = try WALRecordReader.records(
                fileSystem: fileSystem, walDirectory: walDirectory, partition: .lane(lane), lsns: from...last, payloadBytesMax: payloadBytesMax)
        } catch {
            throw EngineError.wal(error)
        }
        let byLSN = Dictionary(uniqueKeysWithValues: wanted)
        var operations: [LSN: [BlockOperation]] = [:]
        for record in records {
            guard let commit = byLSN[record.header.lsn] else { continue }
            guard record.header.recordType == EngineRecordType.laneBlock.rawValue, let decoded = LaneBlockRecord.decode(record.payload),
                decoded.height == commit.height, decoded.laneRoot == commit.lanes[lane].laneRoot
            else {
                throw EngineError(
                    .wal, lane: lane, height: commit.height,
                    "lane \(lane)'s record at LSN \(record.header.lsn) does not match the commit record of height \(commit.height)")
            }
            operations[record.header.lsn] = decoded.operations
        }
        return operations
    }

    /// The lowest height whose commit record and lane records the log still holds: the first
    /// commit record held whose every lane record is at or after its lane's first held LSN. Reads
    /// the meta partition forward from its oldest segment until one qualifies.
    public static func oldestServableHeight(fileSystem: any FileSystem, walDirectory: String, laneCount: Int) throws(EngineError) -> UInt64? {
        var firstLaneLSN: [LSN] = []
        for lane in 0..<laneCount {
            guard let first = try firstHeldLSN(fileSystem: fileSystem, walDirectory: walDirectory, partition: .lane(lane)) else { return nil }
            firstLaneLSN.append(first)
        }
        guard var height = try firstHeldLSN(fileSystem: fileSystem, walDirectory: walDirectory, partition: .meta) else { return nil }
        // Bounded: by the meta partition's records, a thousand at a time.
        while true {
            let commits = try commitRecords(fileSystem: fileSystem, walDirectory: walDirectory, heights: height...(height + 1_023))
            let servable = commits.first { commit in
                commit.lanes.count == laneCount
                    && commit.lanes.enumerated().allSatisfy { lane, entry in entry.lsn.map { $0 >= firstLaneLSN[lane] } ?? true }
            }
            if let servable {
                return servable.height
            }
            guard commits.count == 1_024 else { return nil }
            height += 1_024
        }
    }

    /// The first LSN a partition's oldest segment holds (its header's), nil when it holds none.
    static func firstHeldLSN(fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID) throws(EngineError) -> LSN? {
        do {
            let scanner = WALScanner(fileSystem: fileSystem, directory: WriteAheadLog.partitionDirectory(walDirectory, partition), partition: partition)
            let first = try scanner.firstSegmentIndex()
            for file in try scanner.segmentFiles() where file.index >= first {
                if let header = try WALRecordReader.segmentHeader(fileSystem: fileSystem, path: file.path, partition: partition) {
                    return header.firstLSN
                }
            }
            return nil
        } catch {
            throw EngineError.wal(error)
        }
    }
}
