import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import Foundation
import Logging
import Node
import PeerSync

#if canImport(Glibc)
import Glibc
#endif

extension RivellumNode {
    /// `rivellum-node sync`: the offline, one-shot form of peer sync (README, "Recovery").
    struct Sync: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sync a stopped node's data directory from its peers, then exit (0 when caught up).",
            discussion: """
                Blocks are verified against a quorum of peers (or the trust anchor) before anything is written. \
                Progress: a line on a terminal, JSON events (one per line) otherwise or under --json. Exit codes: 0 caught up, \
                65 a fork, 69 no quorum answered for --stall-timeout-seconds (or a node runs on the directory), 75 stopped by a \
                signal before catching up (run again: it resumes), 78 configuration, 79 state sync needed.
                """)

        @OptionGroup var options: ConfigurationOptions

        @Option(name: .customLong("peer"), help: "A peer's URL (http://host:port); repeat for several (replaces sync.peers).")
        var peers: [String] = []

        @Option(help: "Stop at this height instead of the peers' height.")
        var toHeight: UInt64?

        @Option(help: "Peers that must agree on a MetaRoot (sync.quorum; 0 = a majority).")
        var quorum: Int?

        @OptionGroup var chain: NewChainOptions

        @OptionGroup var modeOption: SyncModeOption

        @Option(help: "Give up (exit 69) when no quorum of peers has answered for this long.")
        var stallTimeoutSeconds = 300

        @Option(help: "trace | debug | info | notice | warning | error | critical (logging.level; default warning here).")
        var logLevel = "warning"

        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard stallTimeoutSeconds >= 1 && stallTimeoutSeconds <= 86_400 else {
                throw ValidationError("--stall-timeout-seconds must be 1...86400")
            }
        }

        func run() async throws {
            let configuration = try options.load { (configuration) throws(NodeConfigurationError) in
                if !peers.isEmpty { configuration.sync.peers = peers }
                if let quorum { configuration.sync.quorum = quorum }
                chain.apply(to: &configuration)
                try modeOption.apply(to: &configuration)
                configuration.sync.follow = false
                configuration.logging.level = logLevel
                guard !configuration.sync.peers.isEmpty else {
                    throw NodeConfigurationError(file: "command line", key: "--peer", "sync needs at least one peer (--peer or sync.peers)")
                }
            }
            NodeLogHandler.bootstrap(level: configuration.logging.level, format: configuration.logging.format)
            let printer = SyncProgressPrinter(json: output.json || isatty(1) != 1)
            do {
                let outcome = try await NodeRunner.syncOnce(
                    configuration: configuration, clock: CommandClock.system, logger: Logger(label: "rivellum_sync"), heightMax: toHeight,
                    stallSeconds: stallTimeoutSeconds, onProgress: printer.report, onEvent: printer.report)
                printer.finish(outcome)
                if case .interrupted = outcome { throw ExitCode(ExitCodes.interrupted) }
            } catch let exit as NodeExit {
                printError(exit.message)
                throw ExitCode(exit.exitCode)
            }
        }
    }
}

/// `--mode auto|blocks|snapshot` (sync.mode), for `sync` and `run`.
struct SyncModeOption: ParsableArguments {
    @Option(help: "auto | blocks | snapshot (sync.mode): auto state-syncs an empty data directory, or one the peers' retention left behind.")
    var mode: String?

    func apply(to configuration: inout NodeConfiguration) throws(NodeConfigurationError) {
        guard let mode else { return }
        guard let chosen = SyncMode(rawValue: mode) else {
            throw NodeConfigurationError(file: "command line", key: "--mode", "\(mode) is not one of auto | blocks | snapshot")
        }
        configuration.sync.mode = chosen
    }
}

/// Prints sync progress: a line rewritten in place on a terminal (height, blocks/s, MB/s,
/// ETA), or one JSON event per report otherwise.
struct SyncProgressPrinter: Sendable {
    let json: Bool

    func report(_ progress: SyncProgress) {
        let document = SyncEventDocument(event: "progress", progress)
        if json {
            writeText(JSONDocument.encode(document) + "\n", to: 1)
        } else {
            printError("\r" + Self.line(document), newline: false)
        }
    }

    /// The choice between blocks and state sync, and state sync's progress.
    func report(_ event: SyncModeEvent) {
        let document = SyncModeEventDocument(event)
        if json {
            writeText(JSONDocument.encode(document) + "\n", to: 1)
            return
        }
        switch event {
        case .chose(let step, let reason): printError("sync: \(document.next ?? "\(step)"): \(reason)")
        case .stateSyncProgress(let progress):
            printError(String(format: "\rstate sync %@  %.1f/%.1f MB", progress.phase.rawValue, Double(progress.bytesDownloaded) / 1e6, Double(progress.snapshotBytes) / 1e6), newline: false)
        case .stateSynced(let report):
            printError("\nstate synced: snapshot \(report.name) at height \(report.height), \(report.bytesDownloaded) bytes downloaded\(report.resumed ? " (resumed)" : "")")
        }
    }

    func finish(_ outcome: SyncOutcome) {
        switch outcome {
        case .caughtUp(let progress):
            let document = SyncEventDocument(event: "caught_up", progress)
            if json { writeText(JSONDocument.encode(document) + "\n", to: 1) } else {
                printError("\r" + Self.line(document))
                writeText("caught up at height \(progress.height)\n", to: 1)
            }
        case .interrupted(let height, let progress):
            if json {
                let document = progress.map { SyncEventDocument(event: "interrupted", $0) } ?? SyncEventDocument(interruptedAt: height)
                writeText(JSONDocument.encode(document) + "\n", to: 1)
            } else {
                printError("")
                writeText("stopped at height \(height) before catching up; run sync again to resume\n", to: 1)
            }
        }
    }

    static func line(_ event: SyncEventDocument) -> String {
        let target = event.targetHeight.map { "/\($0)" } ?? "/?"
        let eta = event.etaSeconds.map { String(format: "%.0f s", $0) } ?? "-"
        return String(
            format: "height %llu%@  %.0f blocks/s  %.2f MB/s  ETA %@  (%@)", event.height, target, event.blocksPerSecond, event.megabytesPerSecond,
            eta, event.phase)
    }
}
