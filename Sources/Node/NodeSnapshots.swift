import Engine
import FaultFS
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Snapshots taken by the running node: on request (`POST /v1/admin/snapshots`, which
/// `rivellum-node snapshot create` uses while the node runs) and on a schedule (`[snapshot]
/// interval_hours`, keeping the newest `keep`). One at a time; each is verified after it is
/// written and recorded in the data directory's catalog.
public final class NodeSnapshots: Sendable {
    let engine: Engine
    let configuration: NodeConfiguration
    let metrics: NodeMetrics
    let logger: Logger
    let clock: any WALClock
    private let busy = Mutex(false)

    /// - Parameter clock: names snapshots and dates catalog entries (the system clock in production).
    public init(engine: Engine, configuration: NodeConfiguration, metrics: NodeMetrics, logger: Logger, clock: any WALClock) {
        self.clock = clock
        self.engine = engine
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
    }

    /// `snapshot-YYYYmmdd-HHMMSS` (UTC) in the snapshot directory.
    public static func defaultName(at date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(
            format: "snapshot-%04d%02d%02d-%02d%02d%02d", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!, parts.second!)
    }

    /// Creates, verifies and records a snapshot at `outputPath` (default: a new name in the
    /// snapshot directory). Blocking; refuses with `invalid` while another is being taken.
    public func create(outputPath: String?) throws(SnapshotError) -> (path: String, manifest: SnapshotManifest, seconds: Double) {
        let path = outputPath ?? PathComponents.join(configuration.snapshotDirectory, Self.defaultName(at: clock.nowDate))
        let acquired = busy.withLock { taken -> Bool in
            guard !taken else { return false }
            taken = true
            return true
        }
        guard acquired else { throw SnapshotError(.invalid, path: path, "another snapshot is being taken; try again when it is done") }
        defer { busy.withLock { $0 = false } }
        let started = ContinuousClock.now
        let fileSystem = PosixFileSystem()
        do {
            let manifest = try SnapshotCreator.createVerifiedAndRecorded(
                engine: engine, fileSystem: fileSystem, outputPath: path, nowSeconds: clock.nowSeconds,
                hashingConcurrency: ProcessInfo.processInfo.activeProcessorCount)
            let elapsed = ContinuousClock.now - started
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            metrics.snapshotsCreated.increment()
            metrics.snapshotDuration.recordNanoseconds(Int64(seconds * 1e9))
            logger.info(
                "snapshot created",
                metadata: [
                    "path": "\(path)", "height": "\(manifest.height)", "meta_root": "\(manifest.metaRoot)",
                    "bytes": "\(manifest.totalBytes)", "seconds": "\(seconds)",
                ])
            return (path, manifest, seconds)
        } catch {
            metrics.countError("snapshot_\(error.kind.rawValue)")
            logger.error("snapshot failed", metadata: ["path": "\(path)", "error": "\(error)"])
            throw error
        }
    }

    /// The scheduled part: keeps the newest `keep` snapshots of the catalog.
    func prune() {
        do {
            let fileSystem = PosixFileSystem()
            let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: configuration.node.dataDirectory)
            let decision = SnapshotPruner.decide(
                catalog: catalog, keep: configuration.snapshot.keep, olderThanSeconds: nil,
                nowSeconds: clock.nowSeconds, force: false)
            try SnapshotPruner.apply(decision, fileSystem: fileSystem, dataDirectory: configuration.node.dataDirectory)
            for removed in decision.remove { logger.info("snapshot pruned", metadata: ["path": "\(removed.path)"]) }
        } catch {
            logger.error("snapshot prune failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Takes a snapshot every `[snapshot] interval_hours` (off when 0) and prunes to `keep`.
struct SnapshotScheduleService: Service {
    let snapshots: NodeSnapshots
    let intervalHours: UInt64

    func run() async throws {
        guard intervalHours > 0 else {
            try? await gracefulShutdown()
            return
        }
        let interval = Duration.seconds(Int64(intervalHours) * 3_600)
        await cancelWhenGracefulShutdown {
            // Bounded: one snapshot per interval until shutdown (which cancels the sleep).
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { break }
                if let created = try? snapshots.create(outputPath: nil) { await snapshots.pushOffsite(path: created.path) }
                snapshots.prune()
            }
        }
    }
}

extension WALClock {
    /// Whole seconds since the Unix epoch.
    public var nowSeconds: UInt64 { nowNanoseconds() / 1_000_000_000 }

    /// The clock's time as a `Date`.
    public var nowDate: Date { Date(timeIntervalSince1970: Double(nowNanoseconds()) / 1e9) }
}

/// What a snapshot `create` reports, the same from the running node (`POST /v1/admin/snapshots`)
/// and from the offline command: JSON with snake_case keys.
public struct SnapshotCreated: Codable, Sendable, Equatable {
    public var path: String
    public var height: UInt64
    public var metaRoot: String
    public var files: Int
    public var bytes: UInt64
    public var seconds: Double
    public var verified: Bool

    enum CodingKeys: String, CodingKey {
        case path, height, files, bytes, seconds, verified
        case metaRoot = "meta_root"
    }

    public init(path: String, manifest: SnapshotManifest, seconds: Double) {
        self.path = path
        height = manifest.height
        metaRoot = "\(manifest.metaRoot)"
        files = manifest.files.count
        bytes = manifest.totalBytes
        self.seconds = seconds
        verified = true
    }

    /// The line a terminal shows.
    public func summary(takenBy: String) -> String {
        "snapshot \(path) at height \(height) meta_root \(metaRoot), \(files) files, \(bytes) bytes, verified, "
            + "in \(String(format: "%.2f", seconds)) s (\(takenBy))"
    }
}
