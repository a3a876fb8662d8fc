import FaultFS

/// Reads records of a partition by LSN while the log is live: a run of consecutive records in
/// one forward pass over the segments (serving block ranges to peers), or one record (old block
/// headers, `wal inspect`, restore). Read-only and tolerant: it finds the segment whose header
/// covers the first LSN and walks frames forward across segments; it stops at the first frame
/// that does not decode, belongs elsewhere or breaks the LSN run, so damage, a retired segment
/// or a tail being written gives fewer records, never wrong ones (verifying the log is
/// `WALVerifier`'s job). Records at or below a partition's durable LSN are whole and stable.
public enum WALRecordReader {
    /// One record as stored.
    public struct Record: Sendable {
        public var header: WALFrameHeader
        public var payload: [UInt8]
    }

    /// The record at `lsn` of `partition`, or `nil` when the log no longer (or never) holds it.
    public static func record(
        fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID, lsn: LSN
    ) throws(WALError) -> Record? {
        guard lsn >= 1 else { return nil }
        return try records(fileSystem: fileSystem, walDirectory: walDirectory, partition: partition, lsns: lsn...lsn).first
    }

    /// The records with LSNs `lsns.lowerBound`, `+1`, … in order, as far as the log holds them
    /// without a break, up to `lsns.upperBound`; stops after the record that takes the payloads
    /// past `payloadBytesMax` (so at least one record comes back when the first is held). Empty
    /// when the first LSN is not held (retired, or never written).
    public static func records(
        fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID, lsns: ClosedRange<LSN>,
        payloadBytesMax: Int = .max
    ) throws(WALError) -> [Record] {
        precondition(lsns.lowerBound >= 1 && payloadBytesMax > 0, "LSNs start at 1 and a read has a positive bound")
        let directory = WriteAheadLog.partitionDirectory(walDirectory, partition)
        let files = try WALScanner(fileSystem: fileSystem, directory: directory, partition: partition).segmentFiles()
        guard let start = try startSegment(files, for: lsns.lowerBound, fileSystem: fileSystem, partition: partition) else { return [] }
        var collected: [Record] = []
        var payloadBytes = 0
        var next = lsns.lowerBound
        // Bounded by the segment files; each segment's walk is bounded by its size.
        for file in files[start...] {
            let bytes: [UInt8]
            do {
                bytes = try fileSystem.readFile(file.path)
            } catch {
                throw WALError.io(error, partition: partition, "reading \(file.path)")
            }
            let ended = walk(bytes, partition: partition, next: &next, through: lsns.upperBound) { record in
                collected.append(record)
                payloadBytes += record.payload.count
                return payloadBytes < payloadBytesMax
            }
            if ended { break }
        }
        assert(collected.indices.allSatisfy { collected[$0].header.lsn == lsns.lowerBound + LSN($0) }, "the records run on without a gap")
        return collected
    }

    /// The index in `files` of the newest segment whose header's first LSN is at most `lsn`.
    private static func startSegment(
        _ files: [(index: UInt64, path: String)], for lsn: LSN, fileSystem: any FileSystem, partition: WALPartitionID
    ) throws(WALError) -> Int? {
        // Newest first; bounded by the number of segment files.
        for position in files.indices.reversed() {
            guard let header = try segmentHeader(fileSystem: fileSystem, path: files[position].path, partition: partition) else { continue }
            if header.firstLSN <= lsn { return position }
        }
        return nil
    }

    /// The segment's header when it verifies and names `partition`; nil otherwise.
    static func segmentHeader(fileSystem: any FileSystem, path: String, partition: WALPartitionID) throws(WALError) -> WALSegmentHeader? {
        let head: [UInt8]
        do {
            let handle = try fileSystem.openFile(path, options: .readOnly)
            defer { try? handle.close() }
            head = try handle.read(at: 0, count: WALFormat.segmentHeaderBytes)
        } catch {
            throw WALError.io(error, partition: partition, "reading \(path)")
        }
        guard case .success(let (header, _)) = WALSegmentHeader.decode(head), header.partition == partition else { return nil }
        return header
    }

    /// Walks one segment's frames, handing `take` each record from `next` through `last`;
    /// returns true when the read is over (the last LSN reached, `take` said stop, or a frame
    /// that breaks the run), false when the segment simply ended and the next one may continue.
    private static func walk(
        _ bytes: [UInt8], partition: WALPartitionID, next: inout LSN, through last: LSN, take: (Record) -> Bool
    ) -> Bool {
        bytes.withUnsafeBytes { buffer -> Bool in
            var offset = WALFormat.segmentHeaderBytes
            // Bounded: every round advances by one frame or leaves.
            while offset < buffer.count {
                guard case .frame(let frame) = WALFrameCodec.decode(buffer, at: offset), frame.partition == partition, frame.lsn <= next else {
                    // Zero padding ends a segment cleanly; anything else ends the read.
                    return !WALFrameCodec.isAllZero(buffer, offset, buffer.count)
                }
                offset += frame.frameLength
                guard frame.lsn == next else { continue }
                let start = offset - frame.frameLength + WALFormat.frameHeaderBytes
                let keepGoing = take(Record(header: frame, payload: Array(buffer[start..<(start + frame.payloadLength)])))
                next += 1
                if next > last || !keepGoing { return true }
            }
            return false
        }
    }
}
