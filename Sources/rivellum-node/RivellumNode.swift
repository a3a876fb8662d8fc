import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import Logging
import Node

/// The node's command line: the daemon (`run`) and the offline operator tools. Exit codes
/// (README): 0 ok, 1 torn tail only (`wal verify`), 64 usage, 65 data damage, 66 no data
/// directory, 69 node running (or port taken), 73 snapshot target exists, 74 I/O, 78 configuration.
@main
struct RivellumNode: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-node",
        abstract: "Rivellum node: storage engine daemon and operator tools.",
        subcommands: [Run.self, Status.self, Sync.self, Snapshot.self, WAL.self, Config.self])
}

/// Flags shared by every command that reads the configuration; flags override the file.
struct ConfigurationOptions: ParsableArguments {
    @Option(help: "A TOML configuration file (default: the embedded defaults; see `rivellum-node config default`).")
    var config: String?

    @Option(help: "The data directory (node.data_dir).")
    var dataDir: String?

    @Option(help: "The WAL directory (wal.wal_dir; default <data-dir>/wal).")
    var walDir: String?

    /// The configuration file overlaid with the flags, validated; exits 78 on any problem.
    func load(_ adjust: (inout NodeConfiguration) throws(NodeConfigurationError) -> Void = { _ in }) throws -> NodeConfiguration {
        do {
            var configuration = try config.map { path throws(NodeConfigurationError) in try NodeConfiguration.load(path: path) }
                ?? NodeConfiguration.defaults
            if let dataDir { configuration.node.dataDirectory = dataDir }
            if let walDir { configuration.wal.walDirectory = walDir }
            try adjust(&configuration)
            try configuration.validate(file: config.map { "\($0) (with command-line flags)" } ?? "command line")
            return configuration
        } catch {
            printError("rivellum-node: \(error)")
            throw ExitCode(ExitCodes.config)
        }
    }
}

/// The chain a new data directory is created for; flags override the file.
struct NewChainOptions: ParsableArguments {
    @Option(help: "The chain id for a new data directory (node.chain_id).")
    var chainID: String?

    @Option(help: "The lane count for a new data directory (node.lanes).")
    var lanes: Int?

    func apply(to configuration: inout NodeConfiguration) {
        if let chainID { configuration.node.chainID = chainID }
        if let lanes { configuration.node.laneCount = lanes }
    }
}

extension RivellumNode {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the node: recover, serve the HTTP API, stop cleanly on SIGTERM/SIGINT.",
            discussion: "With no --config the embedded defaults apply (data in ./rivellum-data, API on 127.0.0.1:7070).")

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "The API's HOST:PORT (api.listen).")
        var listen: String?

        @Option(help: "strict | balanced | dev_fast (wal.wal_fsync_policy).")
        var fsyncPolicy: String?

        @OptionGroup var chain: NewChainOptions

        @OptionGroup var modeOption: SyncModeOption

        @Option(help: "trace | debug | info | notice | warning | error | critical (logging.level).")
        var logLevel: String?

        @Option(help: "json | pretty (logging.format).")
        var logFormat: String?

        func run() async throws {
            let configuration = try options.load { (configuration) throws(NodeConfigurationError) in
                if let listen {
                    guard let (host, port) = NodeConfiguration.parseListen(listen) else {
                        throw NodeConfigurationError(file: "command line", key: "--listen", "\(listen) is not HOST:PORT")
                    }
                    configuration.api.listenHost = host
                    configuration.api.listenPort = port
                }
                if let fsyncPolicy {
                    guard let policy = FsyncPolicy(rawValue: fsyncPolicy) else {
                        throw NodeConfigurationError(file: "command line", key: "--fsync-policy", "\(fsyncPolicy) is not one of strict | balanced | dev_fast")
                    }
                    configuration.wal.fsyncPolicy = policy
                }
                chain.apply(to: &configuration)
                try modeOption.apply(to: &configuration)
                if let logLevel { configuration.logging.level = logLevel }
                if let logFormat {
                    guard let format = NodeConfiguration.LoggingSection.Format(rawValue: logFormat) else {
                        throw NodeConfigurationError(file: "command line", key: "--log-format", "\(logFormat) is not one of json | pretty")
                    }
                    configuration.logging.format = format
                }
            }
            NodeLogHandler.bootstrap(level: configuration.logging.level, format: configuration.logging.format)
            do {
                try await NodeRunner.run(configuration: configuration, clock: CommandClock.system, logger: Logger(label: "rivellum_node"))
            } catch let exit as NodeExit {
                printError(exit.message)
                throw ExitCode(exit.exitCode)
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a stopped node's height, roots, per-lane applied heights and WAL ranges; writes nothing.")

        @OptionGroup var options: ConfigurationOptions

        @OptionGroup var output: OutputOptions

        func run() throws {
            let configuration = try options.load()
            let status: DataDirectoryStatus
            do {
                status = try DataDirectoryStatus.read(
                    fileSystem: PosixFileSystem(), dataDirectory: configuration.node.dataDirectory,
                    walDirectory: configuration.walDirectory)
            } catch {
                printError("rivellum-node status: \(error)")
                throw ExitCode(error.kind == .notInitialised ? ExitCodes.noInput : NodeExit.exitCode(for: error))
            }
            output.print(DataDirectoryStatusDocument(status)) { StatusFormatter.table(status) }
        }
    }

    struct Config: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the embedded default configuration, or check a file.", subcommands: [Default.self, Check.self])

        struct Default: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Print the embedded default configuration (TOML).")
            func run() { print(NodeConfiguration.defaultTOML, terminator: "") }
        }

        struct Check: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Check a configuration file strictly; exit 78 on any problem.")
            @Argument(help: "The TOML file.") var file: String
            func run() throws {
                do {
                    _ = try NodeConfiguration.load(path: file)
                } catch {
                    printError("rivellum-node: \(error)")
                    throw ExitCode(ExitCodes.config)
                }
                print("\(file): ok")
            }
        }
    }
}

/// The one place the command-line tool takes the system's time: every command, the daemon and
/// the engines it opens read this clock (the simulator and the tests inject their own).
enum CommandClock {
    static let system: any WALClock = SystemClock()
}
