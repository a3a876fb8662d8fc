import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import Foundation
import Logging
import Node
import Offsite

extension RivellumNode.Snapshot {
    /// `snapshot drill --from PATH|URI [--peer URL]`.
    struct Drill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a snapshot on a scratch standby, verify it, sync it forward from a peer, and compare roots with the peer's.",
            discussion: """
                --from is a snapshot directory or an off-site URI (file:///path, s3://bucket/prefix; --name picks the snapshot, default the \
                newest). Without --peer the node running on --data-dir is the peer. Exit codes: 0 passed; 65 the snapshot is damaged or \
                tampered, the peer is on another chain, or the roots differ; 69 the standby could not be brought forward (the peer is \
                unreachable, or no longer holds the blocks after the snapshot). README, "Restore drills", says what to do.
                """)

        @Option(help: "A snapshot directory, or file:///path or s3://bucket/prefix.")
        var from: String

        @Option(help: "With an off-site --from: the snapshot's name (default: the newest).")
        var name: String?

        @Option(help: "The peer to bring the standby forward from (http://host:port; default: the node running on --data-dir).")
        var peer: String?

        @Option(help: "The running node's data directory (for its address, when there is no --peer).")
        var dataDir: String?

        @Option(help: "The scratch directory for the standby (default: a new one under the temporary directory).")
        var scratch: String?

        @Flag(help: "Keep the scratch directory afterwards.")
        var keep = false

        @OptionGroup var output: OutputOptions

        func validate() throws {
            if let name, !SnapshotManifest.isPlainName(name) { throw ValidationError("--name: \(name) is not a snapshot name") }
        }

        func run() async throws {
            let isURI = from.hasPrefix("file://") || from.hasPrefix("s3://")
            let source = isURI ? RestoreDrill.Source(uri: from, name: name) : RestoreDrill.Source(path: absolutePath(from))
            guard let peerURL = peer ?? dataDir.flatMap({ localNodeURL(dataDirectory: $0) }) else {
                printError("rivellum-node snapshot drill: give --peer http://host:port, or --data-dir of a running node")
                throw ExitCode(ExitCodes.usage)
            }
            let scratchPath = absolutePath(scratch ?? NSTemporaryDirectory() + "rivellum-drill-\(ProcessInfo.processInfo.processIdentifier)-\(CommandClock.system.nowSeconds)")
            let report = try await runOffsite("snapshot drill") {
                try await RestoreDrill.run(source: source, peer: peerURL, scratch: scratchPath, keep: keep, logger: Logger(label: "rivellum_drill"))
            }
            output.print(DrillDocument(report)) { DrillDocument.text(report) }
            switch report.verdict {
            case .passed: return
            case .cannotCatchUp: throw ExitCode(ExitCodes.unavailable)
            case .snapshotDamaged, .peerOnAnotherChain, .rootsDiffer: throw ExitCode(ExitCodes.dataError)
            }
        }
    }
}

/// `snapshot drill --json`.
struct DrillDocument: Codable {
    var verdict: String
    var passed: Bool
    var detail: String
    var snapshot: String
    var snapshotHeight: UInt64?
    var comparedHeight: UInt64?
    var restoreSeconds: Double
    var syncSeconds: Double
    var blocksReplayed: UInt64
    var gapBlocks: UInt64?
    var scratch: String
    var kept: Bool

    enum CodingKeys: String, CodingKey {
        case verdict, passed, detail, snapshot, scratch, kept
        case snapshotHeight = "snapshot_height"
        case comparedHeight = "compared_height"
        case restoreSeconds = "restore_seconds"
        case syncSeconds = "sync_seconds"
        case blocksReplayed = "blocks_replayed"
        case gapBlocks = "gap_blocks"
    }

    init(_ report: DrillReport) {
        verdict = report.verdict.rawValue
        passed = report.verdict == .passed
        detail = report.detail
        snapshot = report.snapshotName
        snapshotHeight = report.snapshotHeight
        comparedHeight = report.comparedHeight
        restoreSeconds = report.restoreSeconds
        syncSeconds = report.syncSeconds
        blocksReplayed = report.blocksReplayed
        gapBlocks = report.gapBlocks
        scratch = report.scratchDirectory
        kept = report.kept
    }

    static func text(_ report: DrillReport) -> String {
        let head = report.verdict == .passed ? "drill passed" : "drill FAILED (\(report.verdict.rawValue))"
        var lines = ["\(head): snapshot \(report.snapshotName) at height \(report.snapshotHeight.map(String.init) ?? "?")", "  \(report.detail)"]
        lines.append(
            String(format: "  restore %.2f s, sync %.2f s, %llu blocks replayed, gap %@ blocks", report.restoreSeconds, report.syncSeconds, report.blocksReplayed,
                report.gapBlocks.map(String.init) ?? "?"))
        lines.append("  scratch \(report.scratchDirectory)" + (report.kept ? " (kept)" : " (removed)"))
        return lines.joined(separator: "\n")
    }
}
