import ArgumentParser
import Engine
import FaultFS

/// The node's operator CLI. So far: offline WAL verification. The daemon (`run`), snapshots and
/// `status` are being built (see the open issues).
@main
struct RivellumNode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-node",
        abstract: "Rivellum node: storage engine daemon and operator tools.",
        subcommands: [WAL.self])
}

extension RivellumNode {
    struct WAL: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wal", abstract: "Inspect the write-ahead log offline.", subcommands: [Verify.self])
    }
}

extension RivellumNode.WAL {
    /// Scans every partition read-only and prints ranges and damage. Exit codes: 0 clean, 65
    /// (EX_DATAERR) mid-log damage, 1 torn tail only (recovery would drop it), 74 (EX_IOERR)
    /// when the log cannot be read.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify every WAL partition; writes nothing.")

        @Option(help: "The node's data directory; the WAL is <data-dir>/wal unless --wal-dir says otherwise.")
        var dataDir: String = "./rivellum-data"

        @Option(help: "The WAL directory (wal_dir).")
        var walDir: String?

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func run() throws {
            let directory = walDir ?? PathComponents.join(dataDir, "wal")
            let reports: [WALPartitionVerifyReport]
            do {
                reports = try WALVerifier.verify(fileSystem: PosixFileSystem(), directory: directory)
            } catch {
                printError("rivellum-node wal verify: \(error)")
                throw ExitCode(74)
            }
            var worst: WALDamageVerdict?
            var lines: [String] = []
            for report in reports {
                if report.verdict == .midLog || worst == nil { worst = report.verdict ?? worst }
                if json {
                    let damage = report.damage.map { "{\"class\":\(jsonString($0.damageClass.rawValue)),\"path\":\(jsonString($0.path)),\"offset\":\($0.offset),\"expected_lsn\":\($0.expectedLSN)}" }
                    lines.append(
                        "{\"partition\":\(jsonString(report.partition.description)),\"segments\":\(report.segments.count),"
                            + "\"first_lsn\":\(report.firstLSN),\"last_lsn\":\(report.lastLSN),\"records\":\(report.records),"
                            + "\"verdict\":\(report.verdict.map { jsonString($0.rawValue) } ?? "null"),\"damage\":[\(damage.joined(separator: ","))]}")
                } else {
                    var line = "\(report.partition): \(report.segments.count) segment(s), LSN \(report.firstLSN)...\(report.lastLSN), \(report.records) record(s)"
                    if let verdict = report.verdict { line += ", \(verdict.rawValue): \(report.evidence)" }
                    lines.append(line)
                    for damage in report.damage { lines.append("  damage: \(damage)") }
                }
            }
            if json {
                print("[" + lines.joined(separator: ",") + "]")
            } else {
                print(lines.isEmpty ? "no WAL partitions in \(directory)" : lines.joined(separator: "\n"))
            }
            switch worst {
            case .midLog: throw ExitCode(65)
            case .tornTail: throw ExitCode(1)
            case nil: return
            }
        }
    }
}

func printError(_ text: String) {
    var standardError = StandardErrorStream()
    print(text, to: &standardError)
}

struct StandardErrorStream: TextOutputStream {
    mutating func write(_ string: String) {
        let bytes = Array(string.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
