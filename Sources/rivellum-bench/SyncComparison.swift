import ArgumentParser
import Engine
import FaultFS
import Foundation
import NodeHarness

extension RivellumBench {
    /// Catch-up over loopback against the engine committing the same blocks locally: a source
    /// chain is built once, copied to 1 or 3 real `rivellum-node run` peers, and a fresh data
    /// directory is synced from them with `rivellum-node sync`; the baseline commits the same
    /// blocks with `Engine.commit(_:attested:)` in batches of the machine's size (one sync per
    /// batch), strict on both sides. Rounds alternate; medians are reported. Asserts nothing.
    struct SyncComparison: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sync", abstract: "Catch-up from 1 and 3 peers over loopback against local commits of the same blocks.")

        @Option(help: "Blocks in the source chain.") var blocks = 5_000
        @Option(help: "Operations per block.") var operationsPerBlock = 8
        @Option(help: "Value size in bytes.") var valueBytes = 128
        @Option(help: "Rounds per side (alternating).") var rounds = 3
        @Option(help: "The rivellum-node binary (default: next to this one).") var node: String?

        static let laneCount = 4
        static let batchBlocks = 256

        func validate() throws {
            guard blocks >= 1, operationsPerBlock >= 1, rounds >= 1 else { throw ValidationError("counts must be positive") }
        }

        func run() throws {
            let binary = node ?? NodeProcess.siblingBinary()
            try withScratchDirectory { scratch in
                let chain = try Self.buildSourceChain(at: scratch + "/source", blocks: blocks, operations: operationsPerBlock, valueBytes: valueBytes)
                let bytes = chain.reduce(0) { $0 + $1.encodedBytes }
                var peers: [NodeProcess] = []
                defer { for peer in peers { _ = peer.terminate() } }
                for index in 0..<3 {
                    _ = system("cp -a '\(scratch)/source' '\(scratch)/peer-\(index)'")
                    peers.append(
                        try NodeProcess.start(
                            binary: binary, arguments: ["--data-dir", "\(scratch)/peer-\(index)", "--log-level", "error"],
                            logPath: "\(scratch)/peer-\(index).log"))
                }
                var local: [Double] = [], onePeer: [Double] = [], threePeers: [Double] = []
                for round in 0..<rounds {
                    let target = "\(scratch)/round-\(round)"
                    local.append(try Self.commitLocally(chain, at: target + "-local"))
                    onePeer.append(try Self.syncSeconds(binary: binary, into: target + "-one", peers: Array(peers.prefix(1))))
                    threePeers.append(try Self.syncSeconds(binary: binary, into: target + "-three", peers: peers))
                }
                report(blocks: chain.count, bytes: bytes, local: median(local), one: median(onePeer), three: median(threePeers))
            }
        }

        func report(blocks: Int, bytes: Int, local: Double, one: Double, three: Double) {
            func line(_ name: String, _ seconds: Double) -> String {
                String(format: "  %@: %.0f blocks/s, %.2f MB/s (%.2f s), %.2fx local", name, Double(blocks) / seconds, Double(bytes) / seconds / 1e6, seconds, local / seconds)
            }
            print("sync: \(blocks) blocks of \(operationsPerBlock) ops x \(valueBytes) B on \(Self.laneCount) lanes, \(bytes) wire bytes, strict, \(rounds) rounds (medians)")
            print(line("local Engine.commit(_:attested:), \(Self.batchBlocks) blocks per sync", local))
            print(line("catch-up over loopback from 1 peer (rivellum-node sync)", one))
            print(line("catch-up over loopback from 3 peers (rivellum-node sync)", three))
        }

        static func engineConfiguration(_ path: String) -> EngineConfiguration {
            var configuration = EngineConfiguration(dataDirectory: path)
            configuration.chainID = "rivellum-dev"
            configuration.laneCount = laneCount
            configuration.archive = true
            return configuration
        }

        /// Commits the chain once and reads it back as peers are served it.
        static func buildSourceChain(at path: String, blocks: Int, operations: Int, valueBytes: Int) throws -> [SyncBlock] {
            let engine = try Engine(fileSystem: PosixFileSystem(), configuration: engineConfiguration(path), clock: SystemClock())
            defer { try? engine.close() }
            let value = [UInt8](repeating: 0x42, count: valueBytes)
            for height in 1...blocks {
                _ = try engine.commit((0..<operations).map { BlockOperation(key: Array("key-\((height * 7 + $0 * 13) % 20_000)".utf8), value: value) })
            }
            var chain: [SyncBlock] = []
            // Bounded: each range moves on by at least one block.
            while chain.count < blocks {
                guard case .blocks(let range) = try engine.servedBlocks(from: UInt64(chain.count + 1), maxBlocks: 1_024, rangeBytesMax: 16 << 20), !range.isEmpty
                else { throw ValidationError("the source engine did not serve block \(chain.count + 1)") }
                chain += range
            }
            return chain
        }

        static func commitLocally(_ chain: [SyncBlock], at path: String) throws -> Double {
            let engine = try Engine(fileSystem: PosixFileSystem(), configuration: engineConfiguration(path), clock: SystemClock())
            defer { try? engine.close() }
            let started = nowSeconds()
            for start in stride(from: 0, to: chain.count, by: batchBlocks) {
                let batch = Array(chain[start..<min(start + batchBlocks, chain.count)])
                _ = try engine.commit(batch, attested: Dictionary(uniqueKeysWithValues: batch.map { ($0.height, $0.metaRoot) }))
            }
            return nowSeconds() - started
        }

        /// Runs `rivellum-node sync --json` into a fresh directory; the seconds its caught-up event reports.
        static func syncSeconds(binary: String, into path: String, peers: [NodeProcess]) throws -> Double {
            try syncEventMilliseconds(binary: binary, arguments: ["--data-dir", path], peers: peers, event: "caught_up")
        }

        /// Runs `rivellum-node sync ARGUMENTS --json` against `peers`; the `elapsed_ms` of its first
        /// `event` event, in seconds (it must exit 0).
        static func syncEventMilliseconds(binary: String, arguments: [String], peers: [NodeProcess], event: String) throws -> Double {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["sync"] + arguments + ["--json", "--log-level", "error"] + peers.flatMap { ["--peer", "http://127.0.0.1:\($0.port)"] }
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            let events = text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            guard process.terminationStatus == 0, let found = events.first(where: { $0["event"] as? String == event }), let milliseconds = found["elapsed_ms"] as? Int
            else { throw ValidationError("sync exited \(process.terminationStatus): \(text.suffix(400))") }
            return Double(max(milliseconds, 1)) / 1_000
        }
    }
}
