import FaultFS

/// Deletes WAL segments that are no longer needed.
public enum WALRetention {
    /// Deletes, oldest first, whole segments of one partition whose records are all below
    /// `lsn` and that were created at least `retentionHours` before `nowSeconds`. Never deletes
    /// the last two segments (the active one and the one its header chains to), and stops at the
    /// first segment that must stay, so the kept segments remain one contiguous chain. The
    /// directory is synced after the unlinks. Returns the deleted paths.
    public static func deleteSegments(
        fileSystem: any FileSystem, directory: String, partition: WALPartitionID, below lsn: LSN,
        retentionHours: UInt64, nowSeconds: UInt64
    ) throws(WALError) -> [String] {
        let scanner = WALScanner(fileSystem: fileSystem, directory: directory, partition: partition)
        let firstIndex = try scanner.firstSegmentIndex()
        let files = try scanner.segmentFiles().filter { $0.index >= firstIndex }
        guard files.count > 2 else { return [] }
        var headers: [WALSegmentHeader] = []
        for file in files {
            do {
                let handle = try fileSystem.openFile(file.path, options: .readOnly)
                defer { try? handle.close() }
                let bytes = try handle.read(at: 0, count: WALFormat.segmentHeaderBytes)
                guard case .success(let (header, _)) = WALSegmentHeader.decode(bytes) else { break }
                headers.append(header)
            } catch {
                throw WALError.io(error, partition: partition, "reading the header of \(file.path)")
            }
        }
        var deleted: [String] = []
        let cutoffSeconds = retentionHours * 3_600
        // Candidates: every segment but the last two; a segment's last LSN is the next one's
        // first LSN minus one.
        var deletable = 0
        for position in 0..<max(0, min(headers.count, files.count) - 2) {
            let lastLSN = headers[position + 1].firstLSN - 1
            guard lastLSN < lsn, headers[position].createdAtSeconds + cutoffSeconds <= nowSeconds else { break }
            deletable += 1
        }
        guard deletable > 0 else { return [] }
        // The marker moves first (durably), so a crash part-way never leaves a chain whose
        // start recovery would mistake for a missing segment.
        do {
            try fileSystem.writeFileAtomically(
                PathComponents.join(directory, WALScanner.firstSegmentMarkerName),
                bytes: WALScanner.encodeFirstSegmentMarker(index: files[deletable].index))
        } catch {
            throw WALError.io(error, partition: partition, "writing the first-segment marker in \(directory)")
        }
        for position in 0..<deletable {
            do {
                try fileSystem.removeFile(files[position].path)
            } catch {
                throw WALError.io(error, partition: partition, "deleting \(files[position].path)")
            }
            deleted.append(files[position].path)
        }
        if !deleted.isEmpty {
            Probe.walSegmentsRetired.hit()
            do {
                try fileSystem.syncDirectory(directory)
            } catch {
                throw WALError.io(error, partition: partition, "syncing \(directory) after deleting segments")
            }
        }
        return deleted
    }
}
