import Engine
import FaultFS

/// The snapshot oracle both the engine swarm and the scenarios run.
enum SnapshotOracle {
    /// I6 after a recovery (run with faults off): every snapshot that `create` reported made is still
    /// listed by the catalog and verifies in full, as `snapshot verify` runs it — whatever crashes
    /// and power losses came after. Only where corruption at rest struck its files (which the
    /// simulated file system knows, file by file) may it fail, and then verify must refuse it,
    /// naming a struck file (or a directory of the snapshot holding one). A catalog that does not read is excused only when it was struck.
    /// Whether `path` is `root` or lies under it.
    static func names(_ path: String, within root: String) -> Bool {
        path == root || path.hasPrefix(root + "/")
    }

    static func checkCatalogued(_ snapshots: [(path: String, height: Int)], fileSystem: SimulatedFileSystem, dataDirectory: String) -> OracleViolation? {
        guard !snapshots.isEmpty else { return nil }
        let catalogPath = PathComponents.join(dataDirectory, SnapshotCatalog.fileName)
        var catalog: SnapshotCatalog?
        do {
            catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: dataDirectory)
        } catch where !fileSystem.filesDamagedAtRest(under: catalogPath).isEmpty {
            catalog = nil
        } catch {
            return OracleViolation(.snapshot, expected: "the snapshot catalog reads after recovery", found: "\(error)")
        }
        for snapshot in snapshots {
            if let catalog, !catalog.snapshots.contains(where: { $0.path == snapshot.path }) {
                return OracleViolation(
                    .snapshot, expected: "the catalog lists snapshot \(snapshot.path), which create reported made",
                    found: "listed: \(catalog.snapshots.map(\.path))")
            }
            let struck = fileSystem.filesDamagedAtRest(under: snapshot.path)
            do {
                _ = try SnapshotVerifier.verify(fileSystem: fileSystem, path: snapshot.path)
            } catch where error.kind != .io && names(error.path, within: snapshot.path) && struck.contains(where: { names(error.path, within: $0) || names($0, within: error.path) }) {
                continue  // Refused by name: corruption at rest struck \(struck).
            } catch {
                let excuse = struck.isEmpty ? "no corruption at rest struck it" : "damage struck \(struck), but the refusal does not name the snapshot"
                return OracleViolation(
                    .snapshot, expected: "snapshot \(snapshot.path) (height \(snapshot.height)), reported made, exists and verifies (\(excuse))",
                    found: "\(error)")
            }
        }
        return nil
    }

}
