import ArgumentParser
import Engine
import FaultFS
import Foundation
import NodeHarness

extension RivellumBench {
    /// State sync over loopback against `curl` fetching the same files from the same node in
    /// the same run: a source chain with a snapshot of about `--megabytes` is built once and
    /// copied to 3 real `rivellum-node run` peers (which offer that snapshot); a fresh data
    /// directory is state-synced from 1 and from 3 of them (`rivellum-node sync --mode
    /// snapshot`, the time its `state_synced` event reports: download, per-file SHA-256, full
    /// verification and install), and `curl --parallel` fetches every file of the snapshot from
    /// one peer in the same 4 MiB ranges. Rounds alternate; medians are reported. Asserts nothing.
    struct StateSyncComparison: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "state-sync", abstract: "State sync from 1 and 3 peers over loopback against curl fetching the same files.")

        @Option(help: "The snapshot's size, about (MiB).") var megabytes = 1_024
        @Option(help: "Rounds per side (alternating).") var rounds = 3
        @Option(help: "The rivellum-node binary (default: next to this one).") var node: String?

        static let valueBytes = 32 << 10
        static let operationsPerBlock = 8
        static let rangeBytes = 4 << 20

        func validate() throws {
            guard megabytes >= 1, rounds >= 1 else { throw ValidationError("counts must be positive") }
        }

        func run() throws {
            let binary = node ?? NodeProcess.siblingBinary()
            try withScratchDirectory { scratch in
                let manifest = try Self.buildSource(at: scratch + "/source", bytes: megabytes << 20)
                var peers: [NodeProcess] = []
                defer { for peer in peers { _ = peer.terminate() } }
                for index in 0..<3 {
                    _ = system("cp -a '\(scratch)/source' '\(scratch)/peer-\(index)'")
                    peers.append(
                        try NodeProcess.start(
                            binary: binary, arguments: ["--data-dir", "\(scratch)/peer-\(index)", "--log-level", "error"], logPath: "\(scratch)/peer-\(index).log"))
                }
                var curl: [Double] = [], one: [Double] = [], three: [Double] = []
                for round in 0..<rounds {
                    curl.append(try Self.curlSeconds(manifest: manifest, name: "s1", peer: peers[0], scratch: scratch))
                    one.append(try Self.stateSyncSeconds(binary: binary, into: "\(scratch)/round-\(round)-one", peers: Array(peers.prefix(1))))
                    three.append(try Self.stateSyncSeconds(binary: binary, into: "\(scratch)/round-\(round)-three", peers: peers))
                }
                report(manifest: manifest, curl: median(curl), one: median(one), three: median(three))
            }
        }

        func report(manifest: SnapshotManifest, curl: Double, one: Double, three: Double) {
            let bytes = Double(manifest.totalBytes)
            func line(_ name: String, _ seconds: Double) -> String {
                String(format: "  %@: %.1f MB/s (%.2f s), %.2fx curl", name, bytes / seconds / 1e6, seconds, curl / seconds)
            }
            print("state-sync: a snapshot of \(manifest.files.count) files, \(manifest.totalBytes) bytes, \(rounds) rounds (medians); goal >= 0.8x curl")
            print(String(format: "  curl --parallel (2 at a time) of the same files in 4 MiB ranges from one peer: %.1f MB/s (%.2f s)", bytes / curl / 1e6, curl))
            print(line("state sync from 1 peer (download, SHA-256 per file, full verify, install)", one))
            print(line("state sync from 3 peers", three))
        }

        /// A chain of incompressible values of about `bytes`, and a verified, catalogued snapshot of it (`snapshots/s1`).
        static func buildSource(at path: String, bytes: Int) throws -> SnapshotManifest {
            var configuration = EngineConfiguration(dataDirectory: path)
            configuration.chainID = "rivellum-dev"
            configuration.laneCount = 4
            configuration.wal.fsyncPolicy = .devFast
            let engine = try Engine(fileSystem: PosixFileSystem(), configuration: configuration, clock: SystemClock())
            defer { try? engine.close() }
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15
            var value = [UInt8](repeating: 0, count: valueBytes)
            let blocks = max(1, bytes / (valueBytes * operationsPerBlock))
            for height in 1...blocks {
                let operations = (0..<operationsPerBlock).map { index in
                    fill(&value, state: &state)
                    return BlockOperation(key: Array("key-\(height)-\(index)".utf8), value: value)
                }
                _ = try engine.commit(operations)
            }
            return try SnapshotCreator.createVerifiedAndRecorded(
                engine: engine, fileSystem: PosixFileSystem(), outputPath: path + "/snapshots/s1", nowSeconds: UInt64(Date().timeIntervalSince1970),
                hashingConcurrency: 2)
        }

        /// Fills `value` with xorshift words (fast, and nothing RocksDB can compress).
        static func fill(_ value: inout [UInt8], state: inout UInt64) {
            value.withUnsafeMutableBytes { raw in
                for word in 0..<(raw.count / 8) {
                    state ^= state << 13
                    state ^= state >> 7
                    state ^= state << 17
                    raw.storeBytes(of: state, toByteOffset: word * 8, as: UInt64.self)
                }
            }
        }

        /// `rivellum-node sync --mode snapshot` into a fresh directory; the seconds its `state_synced` event reports.
        static func stateSyncSeconds(binary: String, into path: String, peers: [NodeProcess]) throws -> Double {
            defer { _ = system("rm -rf '\(path)'") }
            return try SyncComparison.syncEventMilliseconds(binary: binary, arguments: ["--data-dir", path, "--mode", "snapshot"], peers: peers, event: "state_synced")
        }

        /// `curl --parallel --parallel-max 2` of every file of the snapshot from `peer`, in the
        /// ranges state sync asks for, to /dev/null.
        static func curlSeconds(manifest: SnapshotManifest, name: String, peer: NodeProcess, scratch: String) throws -> Double {
            var entries: [String] = []
            for file in manifest.files where file.sizeBytes > 0 {
                for offset in stride(from: UInt64(0), to: file.sizeBytes, by: rangeBytes) {
                    let last = min(offset + UInt64(rangeBytes), file.sizeBytes) - 1
                    // Each transfer its own options (`next`): its URL, range, output, failure on 4xx, and its size written out.
                    entries.append(
                        "url = \"http://127.0.0.1:\(peer.port)/v1/sync/snapshots/\(name)/file?path=\(file.path)\"\nrange = \"\(offset)-\(last)\"\n"
                            + "output = \"/dev/null\"\nfail\nwrite-out = \"%{size_download}\\\\n\"\n")
                }
            }
            let config = entries.joined(separator: "next\n")
            let configPath = scratch + "/curl.cfg"
            try config.write(toFile: configPath, atomically: true, encoding: .utf8)
            let counts = scratch + "/curl.counts"
            let started = nowSeconds()
            let status = system("curl -s --no-progress-meter --parallel --parallel-max 2 -K '\(configPath)' > '\(counts)'")
            let elapsed = nowSeconds() - started
            let fetched = try String(contentsOfFile: counts, encoding: .utf8).split(separator: "\n").compactMap { UInt64($0) }.reduce(0, +)
            guard status == 0, fetched == manifest.totalBytes else { throw ValidationError("curl exited \(status) after \(fetched) of \(manifest.totalBytes) bytes") }
            return elapsed
        }
    }
}
