import ArgumentParser
import CommandLineOptions
import Documents
import Engine
import FaultFS
import SimRunner

#if canImport(Glibc)
import Glibc
#endif

/// Runs seeds one after another on one workload and adds their results up, as `sweep` and
/// `soak` do: each seed checked for determinism when asked (run twice, the same trace hash),
/// each failure printed with how to reproduce it, the probes hit counted over the run.
struct SeedSweep {
    var workload: Workload
    var checkDeterminism: Bool
    var mutations: [String]
    var printFailures: Bool

    /// One seed's result, the determinism rerun included.
    func run(seed: UInt64, traceSink: (@Sendable (TraceEvent) -> Void)? = nil) -> SeedResult {
        SeedCrashReporter.running(seed: seed, workload: workload.rawValue)
        let switchedOn = Set(mutations.compactMap(EngineMutation.init(rawValue:)))
        var result = workload.run(seed: seed, traceSink: traceSink, mutations: switchedOn)
        if checkDeterminism && result.failure == nil {
            // The same seed, the same code and the same configuration: mutations included.
            let again = workload.run(seed: seed, mutations: switchedOn)
            if again.traceHash != result.traceHash {
                result.violation = OracleViolation(.determinism, expected: "trace hash \(result.traceHash) again", found: "\(again.traceHash)")
            }
        }
        if let failure = result.failure, printFailures {
            print("FAIL seed=\(seed): \(failure)")
            print("  knobs: \(result.knobs)")
            print("  reproduce: swift run -c release rivellum-sim replay --workload \(workload.rawValue) --seed \(seed) --trace seed-\(seed).jsonl")
        }
        return result
    }

    /// Every seed of `seeds`, or as many as start before `deadlineSeconds` (monotonic), in order.
    /// `onResult` sees each result as it comes.
    func run(
        _ seeds: some Sequence<UInt64>, trace: String? = nil, deadlineSeconds: Double? = nil, onResult: (SeedResult) throws -> Void = { _ in }
    ) throws -> SweepSummary {
        var summary = SweepSummary()
        let sink = try trace.map { try TraceFileSink(path: $0) }
        defer { sink?.close() }
        var write: (@Sendable (TraceEvent) -> Void)?
        if let sink { write = { event in sink.write(event) } }
        let started = monotonicSeconds()
        let probesBefore = ProbeCounters.snapshot()
        SeedCrashReporter.arm()
        // Bounded by the sequence, or by the deadline.
        for seed in seeds {
            if let deadlineSeconds, monotonicSeconds() >= deadlineSeconds { break }
            let result = run(seed: seed, traceSink: write)
            summary.add(result)
            try onResult(result)
        }
        summary.elapsedSeconds = monotonicSeconds() - started
        let probesAfter = ProbeCounters.snapshot()
        for probe in Probe.allCases {
            summary.probes[probe.rawValue] = (probesAfter[probe] ?? 0) - (probesBefore[probe] ?? 0)
        }
        return summary
    }
}

/// How a sweep's (or a merge's) summary ends the command: printed as text or JSON, written to
/// `--json-out`, then exit 1 when a seed failed or (asked for) a probe that is not rare was
/// never hit.
struct SweepReport {
    var document: SweepSummaryDocument
    var output: OutputOptions
    var jsonOut: String?
    var requireProbes: Bool

    func finish() throws {
        output.print(document) { document.report }
        if let jsonOut {
            do {
                try PosixFileSystem().writeFileAtomically(jsonOut, bytes: Array(JSONDocument.encode(document).utf8))
            } catch {
                printError("rivellum-sim: cannot write \(jsonOut): \(error)")
                throw ExitCode(2)
            }
        }
        if requireProbes && !document.probesMissed.isEmpty {
            print("coverage: probes never hit by \(document.seeds) seeds: \(document.probesMissed.joined(separator: ", "))")
            throw ExitCode(1)
        }
        if !document.failures.isEmpty { throw ExitCode(1) }
    }
}
