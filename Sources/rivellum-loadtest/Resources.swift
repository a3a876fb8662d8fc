import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One look at a process's memory and descriptors, from `/proc` (Linux): the resident set
/// (`VmRSS` in `/proc/PID/status`, KiB) and the open descriptors (entries of `/proc/PID/fd`).
/// -1 when the file cannot be read.
struct ResourceSample: Sendable {
    var rssKiB: Int
    var descriptors: Int

    static func of(pid: Int32) -> ResourceSample {
        ResourceSample(rssKiB: residentKiB(pid: pid), descriptors: openDescriptors(pid: pid))
    }

    static func residentKiB(pid: Int32) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            // "VmRSS:     12345 kB"
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) } ?? -1
        }
        return -1
    }

    static func openDescriptors(pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }
}

/// Raises this process's open-file soft limit to its hard limit (so that the held slow
/// connections fit) and returns the soft limit in force afterwards.
func raiseOpenFileLimit() -> UInt64 {
    var limit = rlimit()
    let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    guard getrlimit(resource, &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        if setrlimit(resource, &raised) != 0 {
            // An unlimited hard limit is not a valid soft one for descriptors; fs.nr_open is.
            let ceiling = (try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8))
                .flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1 << 20
            raised.rlim_cur = min(limit.rlim_max, rlim_t(ceiling))
            _ = setrlimit(resource, &raised)
        }
    }
    guard getrlimit(resource, &limit) == 0 else { return 0 }
    return UInt64(limit.rlim_cur)
}

/// `git rev-parse --short HEAD` in the current directory, or "unknown".
func currentCommit() -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["git", "rev-parse", "--short", "HEAD"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    do {
        try process.run()
    } catch {
        return "unknown"
    }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return process.terminationStatus == 0 && !text.isEmpty ? text : "unknown"
}

/// The last `count` lines of the file at `path` (for a failure report), or nothing.
func tailLines(of path: String, count: Int) -> [String] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return Array(text.split(separator: "\n", omittingEmptySubsequences: true).suffix(count).map(String.init))
}
