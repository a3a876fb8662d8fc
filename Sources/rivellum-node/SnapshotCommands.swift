import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import Foundation
import Node
import PeerSync

#if canImport(Glibc)
import Glibc
#endif

extension RivellumNode {
    struct Snapshot: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create, list, verify, restore and prune snapshots.",
            subcommands: [Create.self, List.self, Verify.self, Restore.self, Prune.self, Push.self, Pull.self, Drill.self])
    }
}

/// The exit code for a snapshot error: 65 damaged, tampered, hostile, incomplete, another
/// chain's, or a WAL that cannot continue; 69 a node holds the data directory; 73 the target
/// exists; 74 I/O; 64 a bad request.
func exitCode(for error: SnapshotError) -> Int32 {
    switch error.kind {
    case .damaged, .hostile, .incomplete, .wrongChain, .walGap: ExitCodes.dataError
    case .locked: ExitCodes.unavailable
    case .exists: ExitCodes.cantCreate
    case .io, .engine: ExitCodes.ioError
    case .invalid, .notOffered, .rangeNotSatisfiable, .rangeRequired: ExitCodes.usage
    }
}

func fail(_ command: String, _ error: SnapshotError) -> ExitCode {
    printError("rivellum-node \(command): \(error)")
    return ExitCode(exitCode(for: error))
}

/// Progress on standard error when it is a terminal: bytes, rate; quiet otherwise.
struct ProgressPrinter {
    let label: String
    let started = CommandClock.system.nowDate
    let enabled = isatty(2) == 1

    func report(_ progress: SnapshotCreator.Progress) {
        guard enabled else { return }
        let seconds = max(CommandClock.system.nowDate.timeIntervalSince(started), 0.001)
        let rate = Double(progress.bytesDone) / seconds / 1_048_576
        let line = String(
            format: "\r%@ %d/%d files, %.1f/%.1f MiB, %.1f MiB/s", label, progress.filesDone, progress.filesTotal,
            Double(progress.bytesDone) / 1_048_576, Double(progress.bytesTotal) / 1_048_576, rate)
        printError(line, newline: progress.filesDone == progress.filesTotal)
    }
}

/// `http://HOST:PORT` of the node running on `dataDirectory`, from its `node.api` file.
func localNodeURL(dataDirectory: String) -> String? {
    let addressFile = PathComponents.join(dataDirectory, NodeRunner.apiAddressFileName)
    guard let text = try? String(contentsOfFile: addressFile, encoding: .utf8),
        let (host, port) = NodeConfiguration.parseListen(text.trimmingCharacters(in: .whitespacesAndNewlines))
    else { return nil }
    let loopback = host == "0.0.0.0" || host == "localhost" ? "127.0.0.1" : host
    return "http://\(loopback):\(port)"
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

extension RivellumNode.Snapshot {
    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a snapshot at a block boundary (asks the running node, or opens the data directory itself).")

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "Where to write the snapshot (default: <snapshot dir>/snapshot-YYYYmmdd-HHMMSS).")
        var out: String?

        @OptionGroup var output: OutputOptions

        func run() async throws {
            let configuration = try options.load()
            let fileSystem = PosixFileSystem()
            let dataDirectory = configuration.node.dataDirectory
            let outputPath = absolutePath(out ?? PathComponents.join(configuration.snapshotDirectory, NodeSnapshots.defaultName(at: CommandClock.system.nowDate)))
            guard (try? fileSystem.exists(DataDirectoryLayout(dataDirectory: dataDirectory).genesis)) == true else {
                printError("rivellum-node snapshot create: \(dataDirectory) holds no node data (no GENESIS)")
                throw ExitCode(ExitCodes.noInput)
            }
            let lock: any FileLock
            do {
                lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: dataDirectory)
            } catch let error where error.kind == .locked {
                try await createOnline(dataDirectory: dataDirectory, outputPath: outputPath)
                return
            } catch {
                throw fail("snapshot create", error)
            }
            try? lock.unlock()
            // Offline: open the engine (recovering), snapshot, close.
            var engineConfiguration = configuration.engineConfiguration
            let engine: Engine
            do {
                guard try engineConfiguration.adoptGenesis(fileSystem: fileSystem) else {
                    printError("rivellum-node snapshot create: \(dataDirectory) holds no genesis (never started)")
                    throw ExitCode(ExitCodes.noInput)
                }
                engine = try Engine(fileSystem: fileSystem, configuration: engineConfiguration, clock: CommandClock.system)
            } catch let error as EngineError {
                printError("rivellum-node snapshot create: \(error)")
                throw ExitCode(NodeExit.exitCode(for: error))
            }
            let printer = ProgressPrinter(label: "hashing")
            do {
                let manifest = try SnapshotCreator.createVerifiedAndRecorded(
                    engine: engine, fileSystem: fileSystem, outputPath: outputPath, nowSeconds: CommandClock.system.nowSeconds,
                    hashingConcurrency: ProcessInfo.processInfo.activeProcessorCount, progress: printer.report)
                try engine.close()
                report(path: outputPath, manifest: manifest, seconds: CommandClock.system.nowDate.timeIntervalSince(printer.started))
            } catch let error as SnapshotError {
                engine.abandon()
                throw fail("snapshot create", error)
            } catch {
                engine.abandon()
                printError("rivellum-node snapshot create: \(error)")
                throw ExitCode(ExitCodes.ioError)
            }
        }

        func createOnline(dataDirectory: String, outputPath: String) async throws {
            guard let baseURL = localNodeURL(dataDirectory: dataDirectory) else {
                printError("rivellum-node snapshot create: a node holds \(dataDirectory) but its \(NodeRunner.apiAddressFileName) does not say where it listens")
                throw ExitCode(ExitCodes.unavailable)
            }
            let body = JSONDocument.encodeBytes(SnapshotRequestDocument(out: outputPath))
            let request = PeerRequest(
                .post, baseURL: baseURL, path: "/v1/admin/snapshots", body: Array(body),
                contentType: "application/json", timeoutSeconds: 3_600, responseBytesMax: 1 << 20)
            let response: PeerResponse
            do {
                response = try await HTTPPeerTransport.withTransport { transport async throws(PeerTransportError) in
                    try await transport.exchange(request)
                }
            } catch {
                printError("rivellum-node snapshot create: asking the node at \(baseURL): \(error)")
                throw ExitCode(ExitCodes.unavailable)
            }
            guard response.status == 200, let created = try? JSONDocument.decode(SnapshotCreated.self, from: response.body) else {
                printError("rivellum-node snapshot create: the node answered \(response.status): \(response.text)")
                throw ExitCode(response.status == 409 ? ExitCodes.cantCreate : ExitCodes.ioError)
            }
            output.print(created) { created.summary(takenBy: "taken by the running node") }
        }

        func report(path: String, manifest: SnapshotManifest, seconds: Double) {
            let created = SnapshotCreated(path: path, manifest: manifest, seconds: seconds)
            output.print(created) { created.summary(takenBy: "offline") }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List snapshots (including partial or broken ones), or those kept off-site (--offsite).")

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "List the snapshots in this off-site store instead (file:///path or s3://bucket/prefix).")
        var offsite: String?

        @OptionGroup var output: OutputOptions

        func run() async throws {
            if let offsite { return try await listOffsite(offsite, output: output) }
            let configuration = try options.load()
            let listings: [SnapshotListing]
            do {
                listings = try SnapshotListing.list(
                    fileSystem: PosixFileSystem(), dataDirectory: configuration.node.dataDirectory,
                    snapshotDirectory: configuration.snapshotDirectory, walDirectory: configuration.walDirectory)
            } catch {
                throw fail("snapshot list", error)
            }
            output.print(listings.map(SnapshotListingDocument.init)) { SnapshotFormatter.table(listings) }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every file against the manifest and recompute every lane root and the MetaRoot; writes nothing.")

        @Option(help: "The snapshot directory.")
        var from: String

        @Option(help: "Also record the result in this data directory's catalog.")
        var dataDir: String?

        @OptionGroup var output: OutputOptions

        func run() throws {
            let fileSystem = PosixFileSystem()
            let path = absolutePath(from)
            let printer = ProgressPrinter(label: "verifying")
            do {
                let report = try SnapshotVerifier.verify(
                    fileSystem: fileSystem, path: path, hashingConcurrency: ProcessInfo.processInfo.activeProcessorCount,
                    progress: printer.report)
                if let dataDir {
                    try SnapshotCatalog.record(
                        fileSystem: fileSystem, dataDirectory: dataDir, path: path, manifest: report.manifest,
                        verifiedAt: CommandClock.system.nowSeconds)
                }
                output.print(SnapshotVerifyDocument(path: path, report: report)) {
                    "ok: \(path): \(report.filesChecked) files (\(report.bytesChecked) bytes) match the manifest; "
                        + "\(report.lanesChecked) lane roots and the MetaRoot \(report.manifest.metaRoot) recomputed at height \(report.manifest.height)"
                }
            } catch {
                if output.json { print(JSONDocument.encode(SnapshotVerifyDocument(path: path, error: error))) }
                throw fail("snapshot verify", error)
            }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restore a snapshot into a stopped node's data directory; the next start replays the WAL after it.")

        @Option(help: "The snapshot directory.")
        var from: String

        @OptionGroup var options: ConfigurationOptions

        @Flag(help: "Print the plan and change nothing.")
        var dryRun = false

        @Flag(help: "Move a WAL that cannot continue from the snapshot aside and start a new one (blocks after the snapshot must come from peers).")
        var resetWAL = false

        @Flag(help: "Delete the old lane state instead of keeping it beside the data directory.")
        var deleteOld = false

        func run() throws {
            let configuration = try options.load()
            let fileSystem = PosixFileSystem()
            let dataDirectory = configuration.node.dataDirectory
            let lock: any FileLock
            do {
                lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: dataDirectory)
            } catch {
                throw fail("snapshot restore", error)
            }
            defer { try? lock.unlock() }
            do {
                // Finish (or roll back) an earlier restore that a crash interrupted.
                try RestoreJournal.complete(fileSystem: fileSystem, dataDirectory: dataDirectory, clock: CommandClock.system)
                let plan = try SnapshotRestorer.plan(
                    fileSystem: fileSystem, snapshotPath: absolutePath(from), dataDirectory: dataDirectory,
                    walDirectory: configuration.walDirectory, resetWAL: resetWAL,
                    id: NodeSnapshots.defaultName(at: CommandClock.system.nowDate).replacingOccurrences(of: "snapshot-", with: ""),
                    hashingConcurrency: ProcessInfo.processInfo.activeProcessorCount)
                print(plan.description)
                if dryRun {
                    print("dry run: nothing changed")
                    return
                }
                let printer = ProgressPrinter(label: "copying")
                try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: deleteOld, clock: CommandClock.system, progress: printer.report)
                print("restored height \(plan.manifest.height); start the node to replay the WAL after it")
            } catch {
                throw fail("snapshot restore", error)
            }
        }
    }

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove old snapshots; never the newest verified one without --force. --offsite URI --keep N prunes an off-site store.")

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "Prune this off-site store instead (file:///path or s3://bucket/prefix): keep the newest --keep N.")
        var offsite: String?

        @Option(help: "Keep the newest N snapshots.")
        var keep: Int?

        @Option(help: "Remove snapshots older than this: 30d, 12h, 90m or seconds.")
        var olderThan: String?

        @Flag(help: "Print what would be removed and change nothing.")
        var dryRun = false

        @Flag(help: "Allow removing the newest verified snapshot.")
        var force = false

        func validate() throws {
            guard keep != nil || olderThan != nil else { throw ValidationError("give --keep N and/or --older-than DURATION") }
            if offsite != nil, keep == nil || olderThan != nil || force { throw ValidationError("--offsite takes --keep N (and --dry-run) only") }
            if let keep, keep < 0 { throw ValidationError("--keep must not be negative") }
            if let olderThan, Self.seconds(olderThan) == nil { throw ValidationError("--older-than: \(olderThan) is not like 30d, 12h, 90m or 3600") }
        }

        static func seconds(_ text: String) -> UInt64? {
            let units: [Character: UInt64] = ["d": 86_400, "h": 3_600, "m": 60, "s": 1]
            if let unit = text.last, let factor = units[unit], let value = UInt64(text.dropLast()) { return value * factor }
            return UInt64(text)
        }

        func run() async throws {
            if let offsite, let keep { return try await pruneOffsite(offsite, keep: keep, dryRun: dryRun) }
            let configuration = try options.load()
            let fileSystem = PosixFileSystem()
            do {
                let catalog = try SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: configuration.node.dataDirectory)
                let decision = SnapshotPruner.decide(
                    catalog: catalog, keep: keep, olderThanSeconds: olderThan.flatMap(Self.seconds),
                    nowSeconds: CommandClock.system.nowSeconds, force: force)
                for entry in decision.remove { print("\(dryRun ? "would remove" : "remove") \(entry.path) (height \(entry.height))") }
                for (name, reason) in decision.protected { print("keep \(name): \(reason)") }
                if decision.remove.isEmpty { print("nothing to remove") }
                if !dryRun { try SnapshotPruner.apply(decision, fileSystem: fileSystem, dataDirectory: configuration.node.dataDirectory) }
            } catch {
                throw fail("snapshot prune", error)
            }
        }
    }
}

enum SnapshotFormatter {
    static func table(_ listings: [SnapshotListing]) -> String {
        let widths = [28, 10, 10, 18, 14, 21, 21, 0]
        var lines = [pad(["name", "state", "height", "meta_root", "size", "created (UTC)", "last verified", "restorable to"], widths)]
        for listing in listings {
            lines.append(
                pad(
                    [
                        listing.name, listing.state.rawValue, listing.height.map(String.init) ?? "-",
                        listing.metaRoot.map { String($0.prefix(16)) } ?? "-", listing.sizeBytes.map(String.init) ?? "-",
                        listing.createdAt.map(timestamp) ?? "-",
                        listing.lastVerifiedAt.flatMap { $0 > 0 ? timestamp($0) : nil } ?? (listing.verified ? "yes" : "never"),
                        listing.restorableToHeight.map { "height \($0)" } ?? "-",
                    ], widths))
            if let problem = listing.problem { lines.append("  \(problem)") }
        }
        if listings.isEmpty { lines.append("(no snapshots)") }
        return lines.joined(separator: "\n")
    }

    static func timestamp(_ seconds: UInt64) -> String {
        Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(.iso8601.year().month().day().time(includingFractionalSeconds: false))
    }
}
