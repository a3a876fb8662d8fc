import FaultFS

/// The file that fixes a data directory's chain id and lane count at its creation:
/// `GENESIS`, text lines `format=1`, `chain_id=<id>`, `lanes=<n>`, then `crc32c=<hex>` over the
/// lines before it. Written atomically (temporary file, sync, rename, directory sync).
enum Genesis {
    static let fileName = "GENESIS"

    static func encode(chainID: String, laneCount: Int) -> [UInt8] {
        let body = "format=1\nchain_id=\(chainID)\nlanes=\(laneCount)\n"
        let crc = CRC32C.checksum(Array(body.utf8))
        return Array((body + "crc32c=\(String(crc, radix: 16))\n").utf8)
    }

    /// The chain id and lane count a data directory was created with; `nil` when it has no
    /// genesis file (never initialised).
    static func read(fileSystem: any FileSystem, dataDirectory: String) throws(EngineError) -> (chainID: String, laneCount: Int)? {
        let path = PathComponents.join(dataDirectory, fileName)
        let bytes: [UInt8]
        do {
            guard try fileSystem.exists(path) else { return nil }
            bytes = try fileSystem.readFile(path)
        } catch {
            throw EngineError(.storage, path: path, "reading the genesis file: \(error)")
        }
        var fields: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let chainID = fields["chain_id"], let lanes = fields["lanes"].flatMap({ Int($0) }),
            bytes == encode(chainID: chainID, laneCount: lanes)
        else {
            throw EngineError(.corruptState, path: path, "the genesis file is damaged")
        }
        return (chainID, lanes)
    }

    /// Creates the genesis file in an empty data directory, or checks that the existing one
    /// matches the configuration.
    static func ensure(fileSystem: any FileSystem, configuration: EngineConfiguration) throws(EngineError) {
        let path = PathComponents.join(configuration.dataDirectory, fileName)
        let expected = encode(chainID: configuration.chainID, laneCount: configuration.laneCount)
        do {
            guard try fileSystem.exists(path) else {
                try fileSystem.writeFileAtomically(path, bytes: expected)
                return
            }
            let found = try fileSystem.readFile(path)
            guard found == expected else {
                let text = String(decoding: found, as: UTF8.self).split(separator: "\n").prefix(3).joined(separator: ", ")
                throw EngineError(
                    .genesisMismatch, path: path,
                    "the data directory holds \(text); the configuration says chain_id=\(configuration.chainID), lanes=\(configuration.laneCount)")
            }
        } catch let error as EngineError {
            throw error
        } catch {
            throw EngineError(.storage, path: path, "reading or writing the genesis file: \(error)")
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
            return try fileSystem.lockFile(PathComponents.join(dataDirectory, "LOCK"))
        } catch {
            throw EngineError(
                error.code == .locked ? .locked : .storage, path: dataDirectory,
                error.code == .locked
                    ? "a node is running on this data directory; stop it first" : "locking the data directory: \(error)")
        }
    }
}
