import FaultFS

/// Reads single records of a partition by LSN, for serving old blocks and for `wal inspect`.
/// Read-only and tolerant: it looks up the segment whose header covers the LSN and walks its
/// frames; damage or a missing segment gives `nil` (verification is `WALVerifier`'s job).
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
        let directory = WriteAheadLog.partitionDirectory(walDirectory, partition)
        let scanner = WALScanner(fileSystem: fileSystem, directory: directory, partition: partition)
        // Newest first: the segment with the highest first LSN not above `lsn`. Bounded by the
        // number of segment files.
        for file in try scanner.segmentFiles().reversed() {
            let bytes: [UInt8]
            do {
                let handle = try fileSystem.openFile(file.path, options: .readOnly)
                defer { try? handle.close() }
                let head = try handle.read(at: 0, count: WALFormat.segmentHeaderBytes)
                guard case .success(let (header, _)) = WALSegmentHeader.decode(head), header.partition == partition else {
                    continue
                }
                guard header.firstLSN <= lsn else { continue }
                bytes = try fileSystem.readFile(file.path)
            } catch {
                throw WALError.io(error, partition: partition, "reading \(file.path)")
            }
            return bytes.withUnsafeBytes { buffer -> Record? in
                var offset = WALFormat.segmentHeaderBytes
                // Bounded: every round advances by one frame or leaves.
                while offset < buffer.count {
                    guard case .frame(let frame) = WALFrameCodec.decode(buffer, at: offset), frame.partition == partition,
                        frame.lsn <= lsn
                    else { return nil }
                    if frame.lsn == lsn {
                        let start = offset + WALFormat.frameHeaderBytes
                        return Record(header: frame, payload: Array(buffer[start..<(start + frame.payloadLength)]))
                    }
                    offset += frame.frameLength
                }
                return nil
            }
        }
        return nil
    }
}
