import ArgumentParser
import Engine
import Foundation
import NodeHarness

extension RivellumBench {
    /// Off-site push and pull against an S3-protocol server on loopback (moto's standalone
    /// server), side by side with `aws s3 cp --recursive` of the same snapshot directory in the
    /// same run. A source chain with a snapshot of about `--megabytes` is built once; each round
    /// pushes it with `rivellum-node snapshot push` to a fresh prefix (so every file is uploaded,
    /// then read back and hashed), copies the directory with `aws s3 cp` to another prefix, then
    /// pulls both back (`snapshot pull` checks every object against the manifest and verifies the
    /// whole snapshot; `aws s3 cp` checks nothing). Each side is timed as a whole process, start
    /// to exit. Rounds alternate which side goes first; medians are reported. Asserts nothing.
    struct OffsiteComparison: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "offsite", abstract: "Off-site push and pull to an S3 server on loopback against aws s3 cp of the same files.")

        @Option(help: "The snapshot's size, about (MiB).") var megabytes = 256
        @Option(help: "Rounds per side (alternating).") var rounds = 3
        @Option(help: "The rivellum-node binary (default: next to this one).") var node: String?
        @Option(help: "The AWS CLI (PyPI's awscli).") var aws = "aws"

        static let bucket = "rivellum-bench"

        func validate() throws {
            guard megabytes >= 1, rounds >= 1 else { throw ValidationError("counts must be positive") }
        }

        /// Seconds per side, one entry per round.
        struct Timings {
            var push: [Double] = [], awsUpload: [Double] = [], pull: [Double] = [], awsDownload: [Double] = []
        }

        func run() throws {
            let binary = node ?? NodeProcess.siblingBinary()
            let moto = try MotoServer()
            defer { moto.stop() }
            let environment = ProcessInfo.processInfo.environment.merging(moto.environment) { $1 }
            let endpoint = ["--endpoint-url", moto.endpoint]
            let awsArguments = endpoint + ["--only-show-errors"]
            try withScratchDirectory { scratch in
                let source = scratch + "/source"
                let manifest = try StateSyncComparison.buildSource(at: source, bytes: megabytes << 20)
                _ = try Self.timedRun(aws, ["s3", "mb", "s3://\(Self.bucket)"] + endpoint, environment: environment)
                var timings = Timings()
                for round in 0..<rounds {
                    let ours = "s3://\(Self.bucket)/ours-\(round)", theirs = "s3://\(Self.bucket)/aws-\(round)"
                    let push = { try Self.timedRun(binary, ["snapshot", "push", "--data-dir", source, "--name", "s1", "--to", ours], environment: environment) }
                    let upload = { try Self.timedRun(aws, ["s3", "cp", "--recursive", source + "/snapshots/s1", theirs] + awsArguments, environment: environment) }
                    let pull = {
                        try Self.timedRun(binary, ["snapshot", "pull", "--from", ours, "--name", "s1", "--out", "\(scratch)/pull-\(round)"], environment: environment)
                    }
                    let download = { try Self.timedRun(aws, ["s3", "cp", "--recursive", theirs, "\(scratch)/aws-\(round)"] + awsArguments, environment: environment) }
                    if round % 2 == 0 {
                        timings.push.append(try push())
                        timings.awsUpload.append(try upload())
                        timings.pull.append(try pull())
                        timings.awsDownload.append(try download())
                    } else {
                        timings.awsUpload.append(try upload())
                        timings.push.append(try push())
                        timings.awsDownload.append(try download())
                        timings.pull.append(try pull())
                    }
                    try Self.checkSameBytes(manifest: manifest, pulled: "\(scratch)/pull-\(round)", copied: "\(scratch)/aws-\(round)")
                    _ = system("rm -rf '\(scratch)/pull-\(round)' '\(scratch)/aws-\(round)'")
                }
                report(manifest: manifest, timings)
            }
        }

        func report(manifest: SnapshotManifest, _ timings: Timings) {
            let bytes = Double(manifest.totalBytes)
            func line(_ name: String, _ seconds: Double, against baseline: Double) -> String {
                String(format: "  %@: %.1f MB/s (%.2f s), %.2fx aws s3 cp", name, bytes / seconds / 1e6, seconds, baseline / seconds)
            }
            func baseline(_ name: String, _ seconds: Double) -> String { String(format: "  %@: %.1f MB/s (%.2f s)", name, bytes / seconds / 1e6, seconds) }
            let push = median(timings.push), upload = median(timings.awsUpload), pull = median(timings.pull), download = median(timings.awsDownload)
            print("offsite: a snapshot of \(manifest.files.count) files, \(manifest.totalBytes) bytes, moto S3 server on loopback, \(rounds) rounds (medians, whole processes)")
            print(baseline("aws s3 cp --recursive, upload", upload))
            print(line("snapshot push (verify, upload, read back and hash each object, manifest last)", push, against: upload))
            print(baseline("aws s3 cp --recursive, download", download))
            print(line("snapshot pull (download, hash each object, full verify)", pull, against: download))
        }

        /// Runs `executable` with `arguments` to exit, as a baseline is run (exit 0, nothing on
        /// standard error); its wall-clock seconds.
        static func timedRun(_ executable: String, _ arguments: [String], environment: [String: String]) throws -> Double {
            try BaselineCommand.run([executable] + arguments, environment: environment)
        }

        /// Both sides brought back every file of the manifest, byte for byte the same size (the
        /// pull verified content; a wrong baseline would make the comparison meaningless).
        static func checkSameBytes(manifest: SnapshotManifest, pulled: String, copied: String) throws {
            for file in manifest.files {
                for root in [pulled, copied] {
                    let attributes = try FileManager.default.attributesOfItem(atPath: root + "/" + file.path)
                    guard (attributes[.size] as? NSNumber)?.uint64Value == file.sizeBytes else {
                        throw ValidationError("\(root)/\(file.path) is not \(file.sizeBytes) bytes")
                    }
                }
            }
        }
    }
}
