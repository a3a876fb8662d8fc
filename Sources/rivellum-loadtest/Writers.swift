import Documents
import Foundation
import NodeHarness
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on the monotonic clock (`CLOCK_MONOTONIC`): immune to wall-clock steps, for
/// latencies and deadlines.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Sleeps until the monotonic clock reaches `instant` (at once if it already has).
func sleep(untilNanoseconds instant: UInt64) {
    // Bounded: each round sleeps the remaining time (at most 1 s a round), so the loop ends
    // when the instant passes.
    while true {
        let now = monotonicNanoseconds()
        guard now < instant else { return }
        usleep(UInt32(min(instant - now, 1_000_000_000) / 1_000))
    }
}

/// The figures of one load phase: committed blocks per second, commit latency percentiles and
/// the failed requests.
struct PhaseFigures: Sendable {
    /// Blocks answered 200.
    var commits: Int
    /// Requests that failed: a non-200 answer, a failed connect, send or read, or a timeout.
    var errors: Int
    /// From the first writer's start until the last writer finished.
    var elapsedSeconds: Double
    var p50Milliseconds: Double
    var p99Milliseconds: Double
    var maxMilliseconds: Double
    /// A few of the errors, for the report.
    var errorSamples: [String]

    var blocksPerSecond: Double { elapsedSeconds > 0 ? Double(commits) / elapsedSeconds : 0 }

    /// Nearest-rank percentiles of `latencies` (nanoseconds); 0 when there are none.
    init(latencies: [UInt64], errors: Int, elapsedSeconds: Double, errorSamples: [String]) {
        let sorted = latencies.sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = Int((fraction * Double(sorted.count)).rounded(.up))
            return Double(sorted[min(max(rank, 1), sorted.count) - 1]) / 1_000_000
        }
        commits = sorted.count
        self.errors = errors
        self.elapsedSeconds = elapsedSeconds
        p50Milliseconds = percentile(0.50)
        p99Milliseconds = percentile(0.99)
        maxMilliseconds = Double(sorted.last ?? 0) / 1_000_000
        self.errorSamples = errorSamples
    }
}

/// What the writer threads hand back when they finish: every commit latency, the error count
/// and the first few error messages. Shared by the threads, so guarded by a `Mutex`.
final class WriterTally: Sendable {
    private struct State {
        var latencies: [UInt64] = []
        var errors = 0
        var samples: [String] = []
    }

    private let state = Mutex(State())

    /// Adds one writer's results (called once per writer, at its end).
    func merge(latencies: [UInt64], errors: Int, samples: [String]) {
        state.withLock { state in
            state.latencies += latencies
            state.errors += errors
            for sample in samples where state.samples.count < 8 { state.samples.append(sample) }
        }
    }

    func figures(elapsedSeconds: Double) -> PhaseFigures {
        state.withLock { PhaseFigures(latencies: $0.latencies, errors: $0.errors, elapsedSeconds: elapsedSeconds, errorSamples: $0.samples) }
    }
}

/// What every writer of a phase does: where to post, for how long, and what each block holds.
struct WriterPlan: Sendable {
    var port: Int
    var writers: Int
    var seconds: Double
    var opsPerBlock: Int
    var valueBytes: Int
    /// Starts every key, so that the keys of different phases differ.
    var keyPrefix: String
    /// Each send and each receive of a request gives up after this long (an error).
    var requestTimeoutSeconds: Double = 10

    /// Runs `writers` threads posting blocks for `seconds`; calls `midRun` on the calling
    /// thread halfway through (while the writers run), then waits for the writers.
    func run(midRun: () -> Void = {}) -> PhaseFigures {
        let tally = WriterTally()
        let group = DispatchGroup()
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(seconds * 1_000_000_000)
        let plan = self
        for writer in 0..<writers {
            group.enter()
            // A real thread per writer (not a pool's few), each blocking on its own socket.
            let thread = Thread {
                plan.write(writer: writer, until: deadline, into: tally)
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        sleep(untilNanoseconds: start + (deadline - start) / 2)
        midRun()
        // Bounded: every writer stops at the deadline, its last request within the socket timeout.
        group.wait()
        let elapsed = Double(monotonicNanoseconds() - start) / 1_000_000_000
        return tally.figures(elapsedSeconds: elapsed)
    }

    /// One writer: a keep-alive connection of its own (opened again when the node closes it),
    /// posting blocks of `opsPerBlock` unique keys until `deadline`.
    private func write(writer: Int, until deadline: UInt64, into tally: WriterTally) {
        var connection: HTTPConnection?
        var latencies: [UInt64] = []
        latencies.reserveCapacity(4_096)
        var errors = 0
        var samples: [String] = []
        func fail(_ message: String) {
            errors += 1
            if samples.count < 4 { samples.append("writer \(writer): \(message)") }
            connection?.close()
            connection = nil
            // Do not spin against a node that refuses or has gone.
            usleep(10_000)
        }
        let value = String(repeating: "v", count: valueBytes)
        let head = "POST /v1/blocks HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\n"
        var sequence = 0
        // Bounded: by the deadline (each request by the socket timeout) and at most 10 million blocks.
        while monotonicNanoseconds() < deadline && sequence < 10_000_000 {
            sequence += 1
            // A kept-alive connection the node closed between requests is opened again, not an error.
            if let open = connection, peerState(of: open.descriptor) != .open {
                open.close()
                connection = nil
            }
            if connection == nil {
                do {
                    connection = try HTTPConnection(port: port, timeoutSeconds: requestTimeoutSeconds)
                } catch {
                    fail("connect: \(error)")
                    continue
                }
            }
            guard let open = connection else { continue }
            let block = BlockRequestDocument(ops: (0..<opsPerBlock).map { .init(key: "\(keyPrefix)-w\(writer)-b\(sequence)-o\($0)", value: value) })
            let bodyBytes = JSONDocument.encodeBytes(block)
            let request = Array((head + "Content-Length: \(bodyBytes.count)\r\n\r\n").utf8) + bodyBytes
            let begin = monotonicNanoseconds()
            let sent = open.send(request)
            guard sent == request.count else {
                fail("send: \(sent) of \(request.count) bytes went")
                continue
            }
            let response: LoopbackHTTP.Response
            do {
                response = try open.readResponse()
            } catch {
                fail("read: \(error)")
                continue
            }
            let end = monotonicNanoseconds()
            if response.status == 200 {
                latencies.append(end - begin)
            } else {
                fail("status \(response.status): \(response.text.prefix(160))")
                continue
            }
            if response.headers["connection"]?.lowercased() == "close" {
                open.close()
                connection = nil
            }
        }
        connection?.close()
        tally.merge(latencies: latencies, errors: errors, samples: samples)
    }
}
