import Engine
import FaultFS

/// An operator restoring one lane on its own (lanes are restored independently): the lane's
/// directory in the data directory is replaced by that lane's directory of a snapshot — this
/// chain's at another height, or another chain's. Run with the engine stopped; durable when it
/// returns (every file and directory synced). The next start must converge (the log brings an
/// older lane of this chain forward) or refuse naming the lane.
enum LaneSwap {
    static func replace(lane: Int, in dataDirectory: String, from snapshotPath: String, fileSystem: any FileSystem) throws(FileSystemError) {
        let target = DataDirectoryLayout(dataDirectory: dataDirectory).lane(lane)
        let source = SnapshotLayout.lane(snapshotPath, lane)
        let entries = try fileSystem.walkTree(source)
        try fileSystem.removeTree(target)
        try fileSystem.createDirectories(target)
        for entry in entries {
            let to = PathComponents.join(target, entry.path)
            if entry.status.kind == .directory {
                try fileSystem.createDirectories(to)
                continue
            }
            let handle = try fileSystem.openFile(to, options: OpenOptions(creation: .createNew, writable: true))
            do {
                try handle.write(try fileSystem.readFile(PathComponents.join(source, entry.path)), at: 0)
                try handle.sync()
            } catch {
                try? handle.close()
                throw error
            }
            try handle.close()
        }
        for entry in entries.reversed() where entry.status.kind == .directory { try fileSystem.syncDirectory(PathComponents.join(target, entry.path)) }
        try fileSystem.syncDirectory(target)
        try fileSystem.syncDirectory(PathComponents.parent(of: target))
    }
}
