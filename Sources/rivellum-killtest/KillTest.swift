import ArgumentParser
import Documents
import FaultFS
import Foundation
import NodeHarness
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The crash test of the real node binary: start `rivellum-node run`, submit blocks from several
/// concurrent writers over HTTP, `kill -9` the node at a random moment, restart it, and check
/// that every acknowledged block is still there: the height is at least the highest acknowledged
/// one, `GET /v1/blocks/{h}` returns the acknowledged MetaRoot for every acknowledged h, and
/// each writer's last acknowledged value is readable. Repeats `--kills` times. Exit 0 when
/// nothing acknowledged was lost, 1 otherwise.
@main
struct KillTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-killtest",
        abstract: "kill -9 the real node under concurrent HTTP load and check no acknowledged block is lost.")

    @Option(help: "The rivellum-node binary (default: next to this one).")
    var node: String?

    @Option(help: "How many kills.")
    var kills = 50

    @Option(help: "Concurrent writers.")
    var writers = 8

    @Option(help: "The seed for kill timing and block contents.")
    var seed: UInt64 = 1

    @Option(help: "Kill after a random delay in [min, max] milliseconds of load.")
    var minDelayMs = 30

    @Option(help: "Kill after a random delay in [min, max] milliseconds of load.")
    var maxDelayMs = 400

    @Option(help: "strict (the test's guarantee: nothing acknowledged is lost).")
    var fsyncPolicy = "strict"

    @Option(help: "Working directory (default: a fresh temporary one, removed on success).")
    var workDir: String?

    func validate() throws {
        guard (1...100_000).contains(kills) else { throw ValidationError("--kills must be in 1...100000") }
        guard (1...256).contains(writers) else { throw ValidationError("--writers must be in 1...256") }
        guard minDelayMs >= 0, maxDelayMs >= minDelayMs, maxDelayMs <= 60_000 else { throw ValidationError("bad delay range") }
        guard fsyncPolicy == "strict" else { throw ValidationError("only strict promises that no acknowledged block is lost") }
    }

    func run() throws {
        let binary = node ?? NodeProcess.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            print("rivellum-killtest: no node binary at \(binary) (build it first, or pass --node)")
            throw ExitCode(66)
        }
        let directory = workDir ?? NSTemporaryDirectory() + "rivellum-killtest-\(getpid())-\(seed)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var random = DeterministicRandom(seed: seed)
        let ledger = Ledger()
        var blocksChecked = 0
        var failures: [String] = []
        print("rivellum-killtest: seed \(seed), kills \(kills), writers \(writers), policy \(fsyncPolicy), node \(binary), dir \(directory)")
        let started = Date()
        let arguments = ["--data-dir", directory + "/data", "--fsync-policy", fsyncPolicy, "--log-level", "warning"]
        let logPath = directory + "/node.log"
        var process = try NodeProcess.start(binary: binary, arguments: arguments, logPath: logPath)
        for round in 1...kills {
            // Check everything acknowledged before the previous kill survived it.
            let checked = check(port: process.port, ledger: ledger, failures: &failures)
            blocksChecked += checked
            if !failures.isEmpty { break }
            // Load, then kill at a random moment.
            let delayMs = minDelayMs + Int(random.below(maxDelayMs - minDelayMs + 1))
            let stop = Atomic<Bool>(false)
            let port = process.port
            let writerCount = writers
            let roundSeed = random.next()
            let group = DispatchGroup()
            for writer in 0..<writerCount {
                DispatchQueue.global().async(group: group) {
                    var local = DeterministicRandom(seed: roundSeed &+ UInt64(writer))
                    var sequence = 0
                    // Bounded by the stop flag, which is set after the delay; each request times out.
                    while !stop.load(ordering: .relaxed) && sequence < 100_000 {
                        sequence += 1
                        let key = "w\(writer)-k\(local.below(64))"
                        let value = "r\(round)-s\(sequence)-\(local.next() % 1_000_000)"
                        let other = "shared-\(local.below(16))"
                        let body = BlockRequestDocument(ops: [.init(key: key, value: value), .init(key: other, value: value)])
                        guard
                            let response = try? LoopbackHTTP.request(
                                "POST", "/v1/blocks", port: port, body: JSONDocument.encodeBytes(body), timeoutSeconds: 10),
                            response.status == 200,
                            let result = try? JSONDocument.decode(CommitResultDocument.self, from: response.body), result.durable
                        else { continue }
                        ledger.acknowledge(height: result.height, metaRoot: result.metaRoot, writer: writer, key: key, value: value)
                    }
                }
            }
            usleep(UInt32(delayMs) * 1_000)
            process.kill9()
            stop.store(true, ordering: .relaxed)
            group.wait()
            if round % 10 == 0 || round == kills {
                print("  kill \(round)/\(kills): \(ledger.count) block(s) acknowledged so far, \(blocksChecked) checked")
            }
            process = try NodeProcess.start(binary: binary, arguments: arguments, logPath: logPath)
        }
        if failures.isEmpty { blocksChecked += check(port: process.port, ledger: ledger, failures: &failures) }
        process.terminate()
        let seconds = Date().timeIntervalSince(started)
        if failures.isEmpty {
            print(
                "rivellum-killtest: \(kills) kill(s) survived, \(ledger.count) acknowledged block(s), \(blocksChecked) block check(s), "
                    + "0 lost, in \(String(format: "%.1f", seconds)) s")
            if workDir == nil { try? FileManager.default.removeItem(atPath: directory) }
        } else {
            print("rivellum-killtest: FAILED (seed \(seed)); data kept in \(directory)")
            for failure in failures.prefix(20) { print("  \(failure)") }
            print("  reproduce: rivellum-killtest --seed \(seed) --kills \(kills) --writers \(writers)")
            throw ExitCode(1)
        }
    }

    /// Checks the blocks acknowledged since the last check, and a sample of older ones; returns
    /// how many block checks passed.
    func check(port: Int, ledger: Ledger, failures: inout [String]) -> Int {
        let (fresh, latest, values) = ledger.takeUnchecked()
        guard !fresh.isEmpty || latest > 0 else { return 0 }
        guard let height = (try? get(port, "/v1/state_roots", as: StateRootsDocument.self))?.globalHeight else {
            failures.append("GET /v1/state_roots failed after restart")
            return 0
        }
        if height < latest { failures.append("height \(height) after restart is below the acknowledged height \(latest)") }
        var checked = 0
        for (blockHeight, root) in fresh {
            guard let block = try? get(port, "/v1/blocks/\(blockHeight)", as: BlockHeaderDocument.self) else {
                failures.append("GET /v1/blocks/\(blockHeight): acknowledged block missing")
                continue
            }
            if block.metaRoot != root {
                failures.append("block \(blockHeight): meta_root \(block.metaRoot), acknowledged \(root)")
            }
            checked += 1
        }
        for (key, value) in values {
            guard let read = try? get(port, "/v1/state/\(key)", as: StateReadDocument.self) else {
                failures.append("GET /v1/state/\(key) failed")
                continue
            }
            // A later unacknowledged write of the same key may have committed; the value must be
            // the acknowledged one or one written after it (never an older one).
            // The writers never delete: an absent key lost its acknowledged write.
            guard let found = read.value else {
                failures.append("key \(key): absent, acknowledged \(value)")
                continue
            }
            if found != value, !Ledger.isNewer(found, than: value) {
                failures.append("key \(key): value \(found) is older than the acknowledged \(value)")
            }
        }
        return checked
    }

    func get<Document: Decodable>(_ port: Int, _ path: String, as type: Document.Type) throws -> Document {
        let response = try LoopbackHTTP.request("GET", path, port: port, timeoutSeconds: 30)
        guard response.status == 200 else { throw LoopbackHTTP.Failure(message: "\(path): status \(response.status) \(response.text)") }
        return try JSONDocument.decode(type, from: response.body)
    }
}

/// What the writers were told: acknowledged heights and their MetaRoots, and each writer's last
/// acknowledged value per key.
final class Ledger: Sendable {
    private struct State {
        var acknowledged: [UInt64: String] = [:]
        var unchecked: [(UInt64, String)] = []
        var lastValues: [String: String] = [:]
        var highest: UInt64 = 0
    }

    private let state = Mutex(State())

    var count: Int { state.withLock { $0.acknowledged.count } }

    func acknowledge(height: UInt64, metaRoot: String, writer: Int, key: String, value: String) {
        state.withLock { state in
            precondition(state.acknowledged[height] == nil || state.acknowledged[height] == metaRoot, "height \(height) acknowledged twice with different roots")
            state.acknowledged[height] = metaRoot
            state.unchecked.append((height, metaRoot))
            state.highest = max(state.highest, height)
            state.lastValues[key] = value
        }
    }

    /// The blocks acknowledged since the last call, the highest acknowledged height, and the
    /// last acknowledged value of every key written since the last call.
    func takeUnchecked() -> ([(UInt64, String)], UInt64, [(String, String)]) {
        state.withLock { state in
            let fresh = state.unchecked
            state.unchecked.removeAll()
            let values = state.lastValues.map { ($0.key, $0.value) }
            state.lastValues.removeAll()
            return (fresh, state.highest, values)
        }
    }

    /// Values are `r<round>-s<sequence>-<n>`; a newer round, or the same round with a higher
    /// sequence, is newer (sequences are per writer and keys per writer).
    static func isNewer(_ candidate: String, than reference: String) -> Bool {
        func parse(_ text: String) -> (Int, Int)? {
            let parts = text.split(separator: "-")
            guard parts.count == 3, let round = Int(parts[0].dropFirst()), let sequence = Int(parts[1].dropFirst()) else { return nil }
            return (round, sequence)
        }
        guard let a = parse(candidate), let b = parse(reference) else { return false }
        return a > b
    }
}

