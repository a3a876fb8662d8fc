import FaultFS

/// The file that fixes a data directory's chain id and lane count at its creation:
/// `GENESIS`, text lines `format=1`, `chain_id=<id>`, `lanes=<n>`, then `crc32c=<hex>` over the
/// lines before it. Written atomically (temporary file, sync, rename, directory sync).
enum Genesis {
    static let fileName = DataDirectoryLayout.genesisFileName

    static func encode(chainID: String, laneCount: Int) -> [UInt8] {
        let body = "format=1\nchain_id=\(chainID)\nlanes=\(laneCount)\n"
        let crc = CRC32C.checksum(Array(body.utf8))
        return Array((body + "crc32c=\(String(crc, radix: 16))\n").utf8)
    }

    /// The fields of a genesis file's bytes, `nil` unless its checksum line verifies.
    static func decode(_ bytes: [UInt8]) -> (chainID: String, laneCount: Int)? {
        var fields: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let chainID = fields["chain_id"], let lanes = fields["lanes"].flatMap({ Int($0) }),
            EngineConfiguration.laneCountRange.contains(lanes), bytes == encode(chainID: chainID, laneCount: lanes)
        else { return nil }
        return (chainID, lanes)
    }

    /// The chain id and lane count a data directory was created with; `nil` when it has no
    /// genesis file (never initialised). A file that does not verify after every re-read is
    /// damage (`corruptState`), never a mismatch.
    static func read(fileSystem: any FileSystem, dataDirectory: String) throws(EngineError) -> (chainID: String, laneCount: Int)? {
        let path = PathComponents.join(dataDirectory, fileName)
        let read: (bytes: [UInt8], verified: Bool)
        do {
            guard try fileSystem.exists(path) else { return nil }
            read = try fileSystem.readFile(path) { decode($0) != nil }
        } catch {
            throw EngineError(.storage, path: path, "reading the genesis file: \(error)")
        }
        guard read.verified, let genesis = decode(read.bytes) else {
            throw EngineError(.corruptState, path: path, "the genesis file is damaged (its checksum does not verify)")
        }
        return genesis
    }

    /// Creates the genesis file in an empty data directory, or checks that the existing one
    /// matches the configuration.
    static func ensure(fileSystem: any FileSystem, configuration: EngineConfiguration) throws(EngineError) {
        let path = PathComponents.join(configuration.dataDirectory, fileName)
        guard let found = try read(fileSystem: fileSystem, dataDirectory: configuration.dataDirectory) else {
            do {
                try fileSystem.writeFileAtomically(path, bytes: encode(chainID: configuration.chainID, laneCount: configuration.laneCount))
            } catch {
                throw EngineError(.storage, path: path, "writing the genesis file: \(error)")
            }
            return
        }
        guard found.chainID == configuration.chainID && found.laneCount == configuration.laneCount else {
            throw EngineError(
                .genesisMismatch, path: path,
                "the data directory holds chain_id=\(found.chainID), lanes=\(found.laneCount); "
                    + "the configuration says chain_id=\(configuration.chainID), lanes=\(configuration.laneCount)")
        }
    }
}

extension EngineConfiguration {
    /// Takes the chain id and lane count from the data directory's genesis when it has one
    /// (offline tools open whatever chain the directory holds); leaves them as they are
    /// otherwise. Returns whether a genesis was found.
    @discardableResult
    public mutating func adoptGenesis(fileSystem: any FileSystem) throws(EngineError) -> Bool {
        guard let genesis = try Genesis.read(fileSystem: fileSystem, dataDirectory: dataDirectory) else { return false }
        chainID = genesis.chainID
        laneCount = genesis.laneCount
        return true
    }
}

/// The data directory's lock file (`<data dir>/LOCK`, `flock`): one engine, or one offline
/// tool, per data directory at a time.
enum DataDirectoryLock {
    /// Takes the lock; `locked` while another process holds it.
    static func acquire(fileSystem: any FileSystem, dataDirectory: String) throws(EngineError) -> any FileLock {
        do {
            return try fileSystem.lockFile(DataDirectoryLayout(dataDirectory: dataDirectory).lock)
        } catch {
            throw EngineError(
                error.code == .locked ? .locked : .storage, path: dataDirectory,
                error.code == .locked
                    ? "a node is running on this data directory; stop it first" : "locking the data directory: \(error)")
        }
    }
}
