import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A benchmark that cannot report a fair figure: its baseline failed, printed an error, or the
/// two sides did not measure the same bytes. The run fails with it (exit 1), never prints a
/// ratio.
struct BenchFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { "rivellum-bench: \(message)" }

    init(_ message: String) { self.message = message }
}

/// A baseline that is an external command (`cp -r`, `sync`, `sha256sum`), run directly (no
/// shell) and timed. It must exit 0 and print nothing on standard error, or the benchmark fails.
enum BaselineCommand {
    /// Runs `arguments` (the first is looked up on PATH) and returns its wall time in seconds;
    /// `environment` replaces this process's when given.
    static func run(_ arguments: [String], environment: [String: String]? = nil) throws(BenchFailure) -> Double {
        precondition(!arguments.isEmpty, "a baseline command needs a program")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = environment }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let started = nowSeconds()
        do {
            try process.run()
        } catch {
            throw BenchFailure("baseline `\(arguments.joined(separator: " "))` did not start: \(error)")
        }
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let elapsed = nowSeconds() - started
        let command = arguments.joined(separator: " ")
        guard process.terminationReason == .exit, process.terminationStatus == 0 else {
            throw BenchFailure("baseline `\(command)` failed (status \(process.terminationStatus)): \(errorText.prefix(500))")
        }
        guard errorText.isEmpty else {
            throw BenchFailure("baseline `\(command)` printed an error, so its time means nothing: \(errorText.prefix(500))")
        }
        return elapsed
    }

    /// Runs several commands at once (one per core, say) and returns the wall time until the
    /// last finished; each must pass as `run` requires.
    static func runConcurrently(_ commands: [[String]]) throws(BenchFailure) -> Double {
        let failures = FailureBox()
        let started = nowSeconds()
        runThreads(commands.count) { index in
            do throws(BenchFailure) {
                _ = try run(commands[index])
            } catch {
                failures.record(error)
            }
        }
        let elapsed = nowSeconds() - started
        if let failure = failures.first { throw failure }
        return elapsed
    }
}

/// The first failure of several threads.
final class FailureBox: @unchecked Sendable {
    // @unchecked: every access holds `lock`.
    private let lock = NSLock()
    private var stored: BenchFailure?

    func record(_ failure: BenchFailure) { lock.withLock { if stored == nil { stored = failure } } }
    var first: BenchFailure? { lock.withLock { stored } }
}

/// The bytes of the regular files under `path` (symbolic links and directories not counted),
/// and their relative paths, sorted.
func regularFiles(under path: String) -> (bytes: UInt64, paths: [String]) {
    var bytes: UInt64 = 0
    var paths: [String] = []
    let enumerator = FileManager.default.enumerator(atPath: path)
    // Bounded: the tree's entries.
    while let relative = enumerator?.nextObject() as? String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + relative),
            attributes[.type] as? FileAttributeType == .typeRegular
        else { continue }
        bytes += (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        paths.append(relative)
    }
    return (bytes, paths.sorted())
}

/// What the figures were measured under: the code, the time, and how busy and how fast the
/// machine was just before the run (these machines are shared; the figures move with them).
struct RunConditions {
    var commit: String
    var date: String
    var currentMHz: String
    var loadAverage: String

    static func now() -> RunConditions {
        RunConditions(
            commit: commandOutput(["git", "describe", "--always", "--dirty"]) ?? "unknown",
            date: ISO8601DateFormatter().string(from: Date()),
            currentMHz: currentMHz() ?? "unknown",
            loadAverage: (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))
                .map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "unknown")
    }

    var fields: [String: String] {
        ["commit": commit, "date": date, "mhz_current": currentMHz, "load_average_before": loadAverage]
    }

    /// The mean of the cores' current clock (`cpu MHz` in /proc/cpuinfo).
    static func currentMHz() -> String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        let values = text.split(separator: "\n").filter { $0.hasPrefix("cpu MHz") }.compactMap { Double($0.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") }
        guard !values.isEmpty else { return nil }
        return String(format: "%.0f", values.reduce(0, +) / Double(values.count))
    }

    static func commandOutput(_ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
