import Foundation
@testable import rivellum_bench
import Testing

/// The benchmark harness refuses to report a ratio it cannot stand behind.
@Suite("Benchmark harness: baselines that fail fail the run")
struct BenchHarnessTests {
    @Test func aBaselineThatFailsOrPrintsAnErrorFailsTheBenchmark() throws {
        #expect(try BaselineCommand.run(["true"]) >= 0)
        #expect(throws: BenchFailure.self) { try BaselineCommand.run(["false"]) }
        #expect(throws: BenchFailure.self) { try BaselineCommand.run(["sh", "-c", "echo 'cp: cannot stat x: No such file or directory' >&2"]) }
        #expect(throws: BenchFailure.self) { try BaselineCommand.run(["no-such-program-rivellum"]) }
        // One failing command among concurrent ones fails them all.
        #expect(throws: BenchFailure.self) { try BaselineCommand.runConcurrently([["true"], ["false"]]) }
        #expect(try BaselineCommand.runConcurrently([["true"], ["true"]]) >= 0)
    }

    /// The snapshot comparison's byte check: `cp -r` of a directory whose file vanishes
    /// mid-copy is caught by the error it prints, and a copy short of bytes by the count.
    @Test func theCopyBaselineMustCopyEveryByte() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-bench-test-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory + "/source/sub", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory + "/source/a", contents: Data(repeating: 1, count: 1_000))
        _ = FileManager.default.createFile(atPath: directory + "/source/sub/b", contents: Data(repeating: 2, count: 24))
        try FileManager.default.createSymbolicLink(atPath: directory + "/source/dangling", withDestinationPath: directory + "/nowhere")
        let source = regularFiles(under: directory + "/source")
        #expect(source.bytes == 1_024 && source.paths == ["a", "sub/b"])
        // A dangling link makes cp -r print an error: the baseline fails.
        #expect(throws: BenchFailure.self) {
            try BaselineCommand.run(["cp", "-rL", directory + "/source", directory + "/copy"])
        }
        try FileManager.default.removeItem(atPath: directory + "/source/dangling")
        #expect(try SnapshotBench.copyBaseline(source: directory + "/source", copy: directory + "/copy2", expectedBytes: source.bytes) >= 0)
        #expect(regularFiles(under: directory + "/copy2").bytes == source.bytes)
        // A copy that does not hold the snapshot's bytes (here: it holds 1,024, not 2,048) fails.
        #expect(throws: BenchFailure.self) {
            try SnapshotBench.copyBaseline(source: directory + "/source", copy: directory + "/copy3", expectedBytes: 2 * source.bytes)
        }
    }
}

extension BenchHarnessTests {
    /// The sha256sum baseline's processes get equal shares of bytes, not of file counts.
    @Test func theHashingBaselineSplitsFilesByBytes() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-bench-split-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, size) in [("big", 9_000), ("a", 1_000), ("b", 1_000), ("c", 1_000), ("d", 1_000), ("e", 1_000), ("f", 1_000), ("g", 1_000), ("h", 1_000), ("i", 1_000)] {
            _ = FileManager.default.createFile(atPath: directory + "/" + name, contents: Data(repeating: 0, count: size))
        }
        let groups = SnapshotBench.balancedGroups(source: directory, paths: regularFiles(under: directory).paths, count: 2)
        #expect(groups.count == 2)
        #expect(groups.map(\.count).sorted() == [1, 9], "\(groups)")
        #expect(Set(groups.flatMap { $0 }).count == 10)
    }
}
