import Engine
import FaultFS

/// Damage on the media, placed where a scenario needs it: the last frame of a WAL partition's
/// newest segment, found by walking the frames' length fields.
enum WALDamage {
    /// The newest segment of the partition in `walDirectory` and the offset of its last frame.
    static func lastFrame(fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID) throws -> (path: String, offset: Int) {
        let directory = WriteAheadLog.partitionDirectory(walDirectory, partition)
        guard let name = try fileSystem.listDirectory(directory).filter({ $0.hasSuffix(".wal") }).sorted().last else {
            throw FileSystemError(.notFound, operation: "finding the newest segment", path: directory)
        }
        let bytes = try fileSystem.readFile(directory + "/" + name)
        var offset = WALFormat.segmentHeaderBytes
        var last = offset
        // Bounded by the segment size: every frame is at least a header long.
        while offset + WALFormat.frameHeaderBytes <= bytes.count {
            last = offset
            offset += WALFormat.frameLength(payloadLength: bytes.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)) })
        }
        return (directory + "/" + name, last)
    }

    /// Overwrites `bytes` at `offset` of `path` durably (damage on the media, not in the cache).
    static func overwrite(fileSystem: any FileSystem, _ path: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try fileSystem.openFile(path, options: .readWrite)
        defer { try? handle.close() }
        try handle.write(bytes, at: UInt64(offset))
        try handle.sync()
    }

    /// Flips one bit in the payload of the partition's last frame, durably; returns its path.
    @discardableResult
    static func rotLastFrame(fileSystem: any FileSystem, walDirectory: String, partition: WALPartitionID) throws -> String {
        let (path, offset) = try lastFrame(fileSystem: fileSystem, walDirectory: walDirectory, partition: partition)
        let byte = offset + WALFormat.frameHeaderBytes + 3
        try overwrite(fileSystem: fileSystem, path, at: byte, with: [try fileSystem.readFile(path)[byte] ^ 0x04])
        return path
    }
}
