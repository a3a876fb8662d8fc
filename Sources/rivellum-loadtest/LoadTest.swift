import ArgumentParser
import Foundation
import NodeHarness
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The load and abuse harness of the real node binary. For each fsync policy it starts
/// `rivellum-node run` on a fresh data directory and measures (a) `--writers` well-behaved
/// keep-alive writers posting blocks for `--seconds`, alone; (b) the same writers while
/// `--slow` connections are held open mid-request (half inside the head, half inside the
/// body); and (c) the node's resident memory and open descriptors before the slow connections
/// (after the writers' first phase warmed it), while they are held, and after they closed.
/// The figures are benchmarks, never assertions about speed. The run fails (exit 1) only when
/// the node does not start, dies, does not stop cleanly on SIGTERM, or a writer request fails
/// in either phase (the node must keep serving beside the slow connections).
@main
struct LoadTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rivellum-loadtest",
        abstract: "Keep-alive writers against the real node, alone and beside held slow connections, per fsync policy.",
        discussion: "Figures are benchmarks, not assertions: the run fails only if the node stops serving (errors), dies or does not stop cleanly.")

    static let allPolicies = ["strict", "balanced", "dev_fast"]

    @Option(help: "The rivellum-node binary (default: next to this one).")
    var node: String?

    @Option(help: "Concurrent writer threads, each with its own keep-alive connection.")
    var writers = 8

    @Option(help: "Seconds of load per phase.")
    var seconds = 5.0

    @Option(help: "Slow connections held open during the second phase.")
    var slow = 1_000

    @Option(name: .customLong("policy"), help: "An fsync policy to run (repeatable; default: strict, balanced and dev_fast).")
    var policies: [String] = []

    @Option(help: "Operations in each block.")
    var opsPerBlock = 4

    @Option(help: "Bytes in each operation's value.")
    var valueBytes = 64

    @Option(help: "Where to write the JSON results.")
    var jsonOut: String?

    func validate() throws {
        guard (1...256).contains(writers) else { throw ValidationError("--writers must be in 1...256") }
        guard seconds >= 0.1, seconds <= 600 else { throw ValidationError("--seconds must be in 0.1...600") }
        guard (0...100_000).contains(slow) else { throw ValidationError("--slow must be in 0...100000") }
        guard (1...10_000).contains(opsPerBlock) else { throw ValidationError("--ops-per-block must be in 1...10000") }
        guard (0...65_536).contains(valueBytes) else { throw ValidationError("--value-bytes must be in 0...65536") }
        for policy in policies where !Self.allPolicies.contains(policy) {
            throw ValidationError("--policy \(policy) is not one of \(Self.allPolicies.joined(separator: ", "))")
        }
    }

    /// The policies to run, in the order given, each once.
    var selectedPolicies: [String] {
        var seen = Set<String>()
        return (policies.isEmpty ? Self.allPolicies : policies).filter { seen.insert($0).inserted }
    }

    /// Head, body and idle timeouts long enough that the slow connections stay held for the run.
    var connectionTimeoutMilliseconds: Int { max(60_000, Int((4 * seconds * 1_000).rounded(.up))) }

    /// Connections the node must hold at once: the slow ones, the writers and some room.
    var maxConnections: Int { slow + writers + 64 }

    func run() throws {
        let binary = node ?? NodeProcess.siblingBinary()
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            print("rivellum-loadtest: no node binary at \(binary) (build it first, or pass --node)")
            throw ExitCode(66)
        }
        // The slow connections, the writers' sockets and a margin for everything else.
        let needed = UInt64(slow + writers + 64)
        let limit = raiseOpenFileLimit()
        guard limit >= needed else {
            print(
                "rivellum-loadtest: the open-file limit is \(limit) even after raising the soft limit to the hard one, "
                    + "but \(slow) slow connection(s) + \(writers) writer(s) + 64 need \(needed); lower --slow or raise the hard limit (ulimit -Hn)")
            throw ExitCode(1)
        }
        let date = ISO8601DateFormatter().string(from: Date())
        var results = LoadTestResults(date: date, commit: currentCommit())
        print(
            "rivellum-loadtest: policies \(selectedPolicies.joined(separator: ", ")), writers \(writers), \(Self.format(seconds)) s per phase, "
                + "\(slow) slow connection(s), \(opsPerBlock) op(s)/block, \(valueBytes)-byte values, node \(binary)")
        print("  (figures are benchmarks on this machine, not assertions; open-file limit \(limit), commit \(results.commit))")
        var outcomes: [PolicyOutcome] = []
        // Bounded: at most the three policies, each once.
        for policy in selectedPolicies {
            let outcome = runPolicy(policy, binary: binary)
            outcome.printTable(slow: slow)
            if let alone = outcome.alone {
                results.load.append(record(policy, "alone", alone))
            }
            if let withSlow = outcome.withSlow {
                results.load.append(record(policy, "with_slow", withSlow))
            }
            if let before = outcome.before, let during = outcome.during, let after = outcome.after {
                results.resources.append(ResourceRecord(policy: policy, before: before, during: during, after: after))
            }
            outcomes.append(outcome)
        }
        printSummary(outcomes)
        if let jsonOut {
            try results.write(to: jsonOut)
            print("results: \(jsonOut)")
        }
        let failures = outcomes.flatMap { outcome in outcome.failures.map { "\(outcome.policy): \($0)" } }
        if !failures.isEmpty {
            print("rivellum-loadtest: FAILED")
            for failure in failures { print("  \(failure)") }
            throw ExitCode(1)
        }
        print("rivellum-loadtest: ok")
    }

    func record(_ policy: String, _ phase: String, _ figures: PhaseFigures) -> LoadRecord {
        LoadRecord(
            policy: policy, writers: writers, seconds: seconds, slow: slow, phase: phase, blocksPerSecond: figures.blocksPerSecond,
            p50Milliseconds: figures.p50Milliseconds, p99Milliseconds: figures.p99Milliseconds, maxMilliseconds: figures.maxMilliseconds,
            errors: figures.errors)
    }

    /// The configuration file for one policy's node.
    func configuration(policy: String, dataDirectory: String) -> String {
        let timeout = connectionTimeoutMilliseconds
        return """
            # Written by rivellum-loadtest for one run.
            [node]
            data_dir = "\(Self.tomlEscaped(dataDirectory))"

            [wal]
            wal_fsync_policy = "\(policy)"

            [api]
            max_connections = \(maxConnections)
            max_inflight_commits = \(max(512, writers + 64))
            request_head_timeout_ms = \(timeout)
            request_body_timeout_ms = \(timeout)
            idle_timeout_ms = \(timeout)

            [logging]
            level = "warning"

            """
    }

    static func tomlEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }

    static func format(_ seconds: Double) -> String { String(format: "%g", seconds) }

    /// One policy: a fresh directory and node, the two phases and the three resource samples,
    /// then SIGTERM. The directory is removed afterwards.
    func runPolicy(_ policy: String, binary: String) -> PolicyOutcome {
        var outcome = PolicyOutcome(policy: policy)
        let directory = NSTemporaryDirectory() + "rivellum-loadtest-\(getpid())-\(policy)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let configPath = directory + "/node.toml"
        let logPath = directory + "/node.log"
        do {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try configuration(policy: policy, dataDirectory: directory + "/data").write(toFile: configPath, atomically: true, encoding: .utf8)
        } catch {
            outcome.failures.append("cannot prepare \(directory): \(error)")
            return outcome
        }
        let process: NodeProcess
        do {
            process = try NodeProcess.start(binary: binary, arguments: ["--config", configPath], logPath: logPath)
        } catch {
            outcome.failures.append("the node did not start: \(error)")
            outcome.logTail = tailLines(of: logPath, count: 20)
            return outcome
        }
        do {
            try measure(process, into: &outcome)
        } catch {
            outcome.failures.append(error.message)
        }
        if process.process.isRunning {
            let (status, clean) = Self.stop(process)
            if !clean {
                outcome.failures.append("the node did not stop within 30 s of SIGTERM; killed")
            } else if status != 0 {
                outcome.failures.append("the node exited with status \(status) after SIGTERM (expected 0)")
            }
        }
        if !outcome.failures.isEmpty { outcome.logTail = tailLines(of: logPath, count: 20) }
        return outcome
    }

    /// A failure that ends one policy's measurements.
    struct PolicyFailure: Error {
        var message: String
    }

    /// The two phases and the samples, on a running node.
    func measure(_ node: NodeProcess, into outcome: inout PolicyOutcome) throws(PolicyFailure) {
        let pid = node.process.processIdentifier
        func alive(_ moment: String) throws(PolicyFailure) {
            guard node.process.isRunning else {
                node.process.waitUntilExit()
                let how = node.process.terminationReason == .uncaughtSignal ? "signal" : "exit status"
                throw PolicyFailure(message: "the node died \(moment) (\(how) \(node.process.terminationStatus))")
            }
        }
        func plan(_ prefix: String) -> WriterPlan {
            WriterPlan(port: node.port, writers: writers, seconds: seconds, opsPerBlock: opsPerBlock, valueBytes: valueBytes, keyPrefix: prefix)
        }
        // (a) The writers alone.
        let alone = plan("alone").run()
        outcome.alone = alone
        if alone.errors > 0 {
            outcome.failures.append("\(alone.errors) failed request(s) with the writers alone")
            outcome.errorSamples += alone.errorSamples
        }
        try alive("during the alone phase")
        // `before` is taken once the writers have warmed the node (RocksDB's memtables and
        // table cache, the allocator's arenas), so that before/during/after show what the slow
        // connections cost and that it comes back. The writers' connections close first.
        usleep(200_000)
        let before = ResourceSample.of(pid: pid)
        outcome.before = before

        // (b) The same writers beside the held slow connections.
        var held = SlowConnections(count: slow, port: node.port)
        defer { held.closeAll() }
        if !held.failures.isEmpty {
            outcome.failures.append("\(held.failures.count) of \(slow) slow connection(s) could not be opened")
            outcome.errorSamples += held.failures.prefix(4)
        }
        var during = before
        let withSlow = plan("slow").run { during = ResourceSample.of(pid: pid) }
        outcome.withSlow = withSlow
        outcome.during = during
        outcome.slowHeld = held.held
        if withSlow.errors > 0 {
            outcome.failures.append("\(withSlow.errors) failed request(s) beside the slow connections (the node must keep serving)")
            outcome.errorSamples += withSlow.errorSamples
        }
        try alive("beside the slow connections")

        // (c) After: the slow connections closed, the writers stopped; wait for the descriptors to
        // come back within a few of the idle count.
        held.closeAll()
        let deadline = monotonicNanoseconds() + 10_000_000_000
        var after = ResourceSample.of(pid: pid)
        // Bounded: 10 s, polling every 100 ms.
        while after.descriptors > before.descriptors + 4 && monotonicNanoseconds() < deadline {
            usleep(100_000)
            after = ResourceSample.of(pid: pid)
        }
        outcome.after = after
        try alive("after the slow connections closed")
    }

    /// SIGTERM and wait, with a watchdog that sends SIGKILL after 30 s; the exit status and
    /// whether the node stopped by itself.
    static func stop(_ node: NodeProcess) -> (Int32, Bool) {
        let pid = node.process.processIdentifier
        let stopped = Atomic<Bool>(false)
        let killed = Atomic<Bool>(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + 30) {
            // The pid is only ours to kill while the node has not been reaped.
            if !stopped.load(ordering: .acquiring) {
                killed.store(true, ordering: .releasing)
                kill(pid, SIGKILL)
            }
        }
        let status = node.terminate()
        stopped.store(true, ordering: .releasing)
        return (status, !killed.load(ordering: .acquiring) && node.process.terminationReason == .exit)
    }

    func printSummary(_ outcomes: [PolicyOutcome]) {
        print("")
        print("summary (writers \(writers), \(Self.format(seconds)) s per phase, \(slow) slow connection(s); benchmark figures, not assertions)")
        print(
            "  " + Table.padRight("policy", 10) + Table.pad("alone b/s", 11) + Table.pad("slow b/s", 10) + Table.pad("p99 alone", 11)
                + Table.pad("p99 slow", 10) + Table.pad("ratio", 7) + Table.pad("RSS KiB before/during/after", 30)
                + Table.pad("fds before/during/after", 25) + "  result")
        for outcome in outcomes {
            let alone = outcome.alone
            let withSlow = outcome.withSlow
            let rss = [outcome.before, outcome.during, outcome.after].map { $0.map { String($0.rssKiB) } ?? "-" }.joined(separator: "/")
            let fds = [outcome.before, outcome.during, outcome.after].map { $0.map { String($0.descriptors) } ?? "-" }.joined(separator: "/")
            let ratio = alone.flatMap { a in withSlow.map { Table.ratio($0.p99Milliseconds, over: a.p99Milliseconds) } } ?? "n/a"
            print(
                "  " + Table.padRight(outcome.policy, 10)
                    + Table.pad(alone.map { String(format: "%.1f", $0.blocksPerSecond) } ?? "-", 11)
                    + Table.pad(withSlow.map { String(format: "%.1f", $0.blocksPerSecond) } ?? "-", 10)
                    + Table.pad(alone.map { String(format: "%.2f", $0.p99Milliseconds) } ?? "-", 11)
                    + Table.pad(withSlow.map { String(format: "%.2f", $0.p99Milliseconds) } ?? "-", 10)
                    + Table.pad(ratio, 7) + Table.pad(rss, 30) + Table.pad(fds, 25) + "  " + (outcome.failures.isEmpty ? "ok" : "FAILED"))
        }
    }
}

/// What one policy's run measured (whatever it got to before a failure) and what went wrong.
struct PolicyOutcome {
    var policy: String
    var alone: PhaseFigures?
    var withSlow: PhaseFigures?
    var before: ResourceSample?
    var during: ResourceSample?
    var after: ResourceSample?
    /// Slow connections still open and unanswered when the writers finished.
    var slowHeld: Int?
    var failures: [String] = []
    var errorSamples: [String] = []
    /// The end of the node's log, kept when something failed.
    var logTail: [String] = []

    init(policy: String) {
        self.policy = policy
    }

    /// The table of one policy: a line per load phase, the p99 side by side, a line per
    /// resource sample.
    func printTable(slow: Int) {
        print("")
        print("policy \(policy)")
        if alone != nil || withSlow != nil { print(Table.loadHeader) }
        if let alone { print(Table.loadLine("alone", alone)) }
        if let withSlow {
            print(Table.loadLine("with_slow", withSlow) + (slowHeld.map { "   (\($0)/\(slow) slow held)" } ?? ""))
        }
        if let alone, let withSlow {
            print(
                "  p99 with/without \(slow) slow connection(s): " + String(format: "%.2f", withSlow.p99Milliseconds) + " / "
                    + String(format: "%.2f", alone.p99Milliseconds) + " ms, ratio " + Table.ratio(withSlow.p99Milliseconds, over: alone.p99Milliseconds))
        }
        if before != nil || during != nil || after != nil {
            print(Table.resourceHeader)
            if let before { print(Table.resourceLine("before", before)) }
            if let during { print(Table.resourceLine("during", during)) }
            if let after { print(Table.resourceLine("after", after)) }
        }
        for failure in failures { print("  FAILED: \(failure)") }
        for sample in errorSamples { print("    \(sample)") }
        if !failures.isEmpty {
            // The run's directory (and the log in it) is removed afterwards; its end is kept here.
            print(logTail.isEmpty ? "  node log: empty" : "  node log (last lines; the directory is removed):")
            for line in logTail { print("    \(line)") }
        }
    }
}
