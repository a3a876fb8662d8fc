import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import Node

extension RivellumNode {
    struct WAL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wal", abstract: "Inspect the write-ahead log offline.", subcommands: [Verify.self, Inspect.self])
    }
}

extension RivellumNode.WAL {
    /// Scans every partition read-only and prints ranges and damage. Exit codes: 0 clean, 65
    /// (EX_DATAERR) mid-log damage, 1 torn tail only (recovery would drop it), 74 (EX_IOERR)
    /// when the log cannot be read.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify every WAL partition; writes nothing.")

        @OptionGroup var options: ConfigurationOptions

        @OptionGroup var output: OutputOptions

        func run() throws {
            let directory = try options.load().walDirectory
            let reports: [WALPartitionVerifyReport]
            do {
                reports = try WALVerifier.verify(fileSystem: PosixFileSystem(), directory: directory)
            } catch {
                printError("rivellum-node wal verify: \(error)")
                throw ExitCode(ExitCodes.ioError)
            }
            output.print(reports.map(WALVerifyDocument.init)) {
                reports.isEmpty ? "no WAL partitions in \(directory)" : reports.map(Self.text).joined(separator: "\n")
            }
            let verdicts = reports.compactMap(\.verdict)
            switch verdicts.contains(.midLog) ? .midLog : verdicts.first {
            case .midLog: throw ExitCode(ExitCodes.dataError)
            case .tornTail: throw ExitCode(ExitCodes.tornTailOnly)
            case nil: return
            }
        }

        static func text(_ report: WALPartitionVerifyReport) -> String {
            var line = "\(report.partition): \(report.segments.count) segment(s), LSN \(report.firstLSN)...\(report.lastLSN), \(report.records) record(s)"
            if let verdict = report.verdict { line += ", \(verdict.rawValue): \(report.evidence)" }
            return ([line] + report.damage.map { "  damage: \($0)" }).joined(separator: "\n")
        }
    }

    /// Lists each partition's segments (and, with `--records`, its records); writes nothing.
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List WAL segments and records; writes nothing.")

        @OptionGroup var options: ConfigurationOptions

        @Option(help: "Only this lane's partition (the meta partition is `--lane meta`).")
        var lane: String?

        @Option(help: "Also list up to this many records per partition.")
        var records: Int = 0

        @OptionGroup var output: OutputOptions

        func validate() throws {
            if let lane, lane != "meta", UInt32(lane) == nil { throw ValidationError("--lane must be a lane number or `meta`") }
            if records < 0 || records > 10_000_000 { throw ValidationError("--records must be in 0...10000000") }
        }

        func run() throws {
            let directory = try options.load().walDirectory
            let fileSystem = PosixFileSystem()
            var reports: [WALPartitionVerifyReport]
            do {
                reports = try WALVerifier.verify(fileSystem: fileSystem, directory: directory)
            } catch {
                printError("rivellum-node wal inspect: \(error)")
                throw ExitCode(ExitCodes.ioError)
            }
            if let lane {
                let wanted = lane == "meta" ? WALPartitionID.meta : WALPartitionID(rawValue: UInt32(lane)!)
                reports = reports.filter { $0.partition == wanted }
                guard !reports.isEmpty else {
                    printError("rivellum-node wal inspect: no partition \(lane) in \(directory)")
                    throw ExitCode(ExitCodes.noInput)
                }
            }
            reports.sort { $0.partition < $1.partition }
            var listings: [(report: WALPartitionVerifyReport, records: [WALRecordSummary])] = []
            for report in reports {
                var listed: [WALRecordSummary] = []
                if records > 0 {
                    do {
                        listed = try WALInspector.records(fileSystem: fileSystem, walDirectory: directory, partition: report.partition, limit: records)
                    } catch {
                        printError("rivellum-node wal inspect: \(error)")
                        throw ExitCode(ExitCodes.ioError)
                    }
                }
                listings.append((report, listed))
            }
            output.print(listings.map { WALInspectDocument($0.report, records: $0.records) }) {
                listings.map { WALInspectFormatter.table($0.report, records: $0.records) }.joined(separator: "\n")
            }
        }
    }
}
