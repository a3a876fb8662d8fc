import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import Foundation
import Node
import Offsite

/// Runs an off-site operation, mapping its errors to exit codes and messages.
func runOffsite<Result: Sendable>(_ command: String, _ body: () async throws -> Result) async throws -> Result {
    do {
        return try await body()
    } catch let error as ObjectStoreError {
        printError("rivellum-node \(command): \(error)")
        throw ExitCode(OffsiteStores.exitCode(for: error))
    } catch let error as SnapshotError {
        throw fail(command, error)
    } catch let error as FileSystemError {
        printError("rivellum-node \(command): \(error)")
        throw ExitCode(ExitCodes.ioError)
    }
}

extension RivellumNode.Snapshot {
    /// `snapshot push --data-dir D --name NAME --to URI`.
    struct Push: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a snapshot off-site (file:///path or s3://bucket/prefix): verified first, only new files uploaded, each read back.",
            discussion: """
                Files are stored by SHA-256 (objects/<sha256>), so a file several snapshots share is uploaded once; the manifest goes up \
                last, so a partial push is never listed. S3 uses the standard AWS settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                AWS_REGION, AWS_PROFILE, ~/.aws/) and AWS_ENDPOINT_URL for S3-compatible stores. Exit codes: 65 damaged, 66 no such \
                snapshot, 69 the store is unavailable, 74 I/O, 77 the store refused, 78 a bad URI or settings.
                """)

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "The snapshot's name (as `snapshot list` shows it).")
        var name: String

        @Option(help: "file:///path or s3://bucket/prefix.")
        var to: String

        @Flag(help: "Read back and hash every object the store already holds (not only its size); upload again any that changed.")
        var verifyExisting = false

        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard SnapshotManifest.isPlainName(name) else { throw ValidationError("--name: \(name) is not a snapshot name") }
        }

        func run() async throws {
            let configuration = try options.load()
            let path = try snapshotPath(configuration)
            let report = try await runOffsite("snapshot push") {
                try await OffsiteStores.withStore(uri: to) { store in
                    try await OffsiteSnapshots.push(
                        snapshotPath: path, name: name, store: store, fileSystem: PosixFileSystem(), nowSeconds: CommandClock.system.nowSeconds,
                        verifyExisting: verifyExisting)
                }
            }
            output.print(OffsitePushDocument(report, to: to)) {
                "pushed \(name) to \(to): \(report.filesUploaded) files (\(report.bytesUploaded) bytes) uploaded and read back, "
                    + "\(report.filesAlreadyStored) (\(report.bytesAlreadyStored) bytes) already stored"
            }
        }

        /// The catalogued snapshot of that name, else `<snapshot dir>/<name>`.
        func snapshotPath(_ configuration: NodeConfiguration) throws -> String {
            let fileSystem = PosixFileSystem()
            let catalog = try? SnapshotCatalog.load(fileSystem: fileSystem, dataDirectory: configuration.node.dataDirectory)
            if let entry = catalog?.snapshots.last(where: { PathComponents.name(of: $0.path) == name }) { return entry.path }
            let path = PathComponents.join(configuration.snapshotDirectory, name)
            guard (try? fileSystem.exists(path)) == true else {
                printError("rivellum-node snapshot push: no snapshot \(name) in the catalog of \(configuration.node.dataDirectory) or in \(configuration.snapshotDirectory)")
                throw ExitCode(ExitCodes.noInput)
            }
            return path
        }
    }

    /// `snapshot pull --from URI --name NAME --out PATH`.
    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a snapshot from off-site into PATH: every object checked against the manifest, then the whole snapshot verified.",
            discussion: "Nothing is left at PATH unless all of it verified. Exit codes as for push; 73 PATH exists.")

        @Option(help: "file:///path or s3://bucket/prefix.")
        var from: String

        @Option(help: "The snapshot's name (as `snapshot list --offsite` shows it).")
        var name: String

        @Option(help: "Where to put the snapshot (must not exist).")
        var out: String

        @OptionGroup var output: OutputOptions

        func validate() throws {
            guard SnapshotManifest.isPlainName(name) else { throw ValidationError("--name: \(name) is not a snapshot name") }
        }

        func run() async throws {
            let target = absolutePath(out)
            let report = try await runOffsite("snapshot pull") {
                try await OffsiteStores.withStore(uri: from) { store in
                    try await OffsiteSnapshots.pull(store: store, name: name, outPath: target, fileSystem: PosixFileSystem())
                }
            }
            output.print(OffsitePullDocument(report)) {
                "pulled \(name) into \(target): \(report.files) files (\(report.bytes) bytes) verified, height \(report.height) meta_root \(report.metaRoot)"
            }
        }
    }
}

/// `snapshot list --offsite URI`.
func listOffsite(_ uri: String, output: OutputOptions) async throws {
    let listed = try await runOffsite("snapshot list") { try await OffsiteStores.withStore(uri: uri) { try await OffsiteSnapshots.list(store: $0) } }
    output.print(listed.map(OffsiteListedDocument.init)) {
        var lines = ["name                         height      meta_root          size           created (UTC)"]
        for entry in listed {
            guard let manifest = entry.manifest else {
                lines.append("\(entry.name)  damaged: its manifest does not decode")
                continue
            }
            lines.append(
                entry.name.padding(toLength: 28, withPad: " ", startingAt: 0) + " " + String(manifest.height).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + " " + String(manifest.metaRoot.prefix(16)) + "   " + String(manifest.totalBytes).padding(toLength: 14, withPad: " ", startingAt: 0) + " "
                    + SnapshotFormatter.timestamp(manifest.createdAt))
        }
        if listed.isEmpty { lines.append("(no snapshots)") }
        return lines.joined(separator: "\n")
    }
}

/// `snapshot prune --offsite URI --keep N`.
func pruneOffsite(_ uri: String, keep: Int, dryRun: Bool) async throws {
    guard keep >= 1 else {
        printError("rivellum-node snapshot prune: --offsite keeps at least one snapshot (--keep 1 or more)")
        throw ExitCode(ExitCodes.usage)
    }
    if dryRun {
        let listed = try await runOffsite("snapshot prune") { try await OffsiteStores.withStore(uri: uri) { try await OffsiteSnapshots.list(store: $0) } }
        for entry in listed.dropFirst(keep) { print("would remove \(entry.name) from \(uri)") }
        if listed.count <= keep { print("nothing to remove") }
        return
    }
    let report = try await runOffsite("snapshot prune") {
        try await OffsiteStores.withStore(uri: uri) { try await OffsiteSnapshots.prune(store: $0, keep: keep, nowSeconds: CommandClock.system.nowSeconds) }
    }
    for name in report.removed { print("removed \(name) from \(uri)") }
    for name in report.kept { print("keep \(name)") }
    print("\(report.objectsRemoved) objects (\(report.bytesRemoved) bytes) no kept snapshot needs were removed")
}
