import Engine
import FaultFS
import Foundation
import Testing

/// Runs the built `rivellum-node` binary and returns its exit status and standard output.
func runNode(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    var binary = directory.appendingPathComponent("rivellum-node")
    if !FileManager.default.fileExists(atPath: binary.path) {
        // The xctest bundle may sit one level deeper than the executables.
        binary = directory.deletingLastPathComponent().appendingPathComponent("rivellum-node")
    }
    let process = Process()
    process.executableURL = binary
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = Pipe()
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite("rivellum-node wal verify")
struct WALVerifyCLITests {
    @Test func cleanLogExitsZeroAndMidLogDamageExits65() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-cli-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let fileSystem = PosixFileSystem()
        var configuration = WALConfiguration()
        configuration.segmentSizeBytes = 4_096
        let log = try WriteAheadLog(
            fileSystem: fileSystem, directory: directory, partitionIDs: [.lane(0), .meta], configuration: configuration,
            clock: ManualClock())
        for index in 0..<20 {
            let lsn = try log.partition(.lane(0)).append([Array(repeating: UInt8(index), count: 100)]).upperBound
            try log.partition(.lane(0)).commit(through: lsn)
        }
        try log.close()
        let clean = try runNode(["wal", "verify", "--wal-dir", directory])
        #expect(clean.status == 0)
        #expect(clean.output.contains("lane-0: 1 segment(s), LSN 1...20, 20 record(s)"))
        let json = try runNode(["wal", "verify", "--wal-dir", directory, "--json"])
        let parsed = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [[String: Any]]
        #expect(parsed?.count == 2)

        // Flip a byte in the fifth record: mid-log damage, exit 65, the file named.
        let segment = directory + "/lane-0000/segment-0000000000000001.wal"
        let handle = try fileSystem.openFile(segment, options: .readWrite)
        let offset = UInt64(WALFormat.segmentHeaderBytes + 4 * WALFormat.frameLength(payloadLength: 100) + 60)
        let byte = try handle.read(at: offset, count: 1)[0]
        try handle.write([byte ^ 0x40], at: offset)
        try handle.close()
        let damaged = try runNode(["wal", "verify", "--wal-dir", directory])
        #expect(damaged.status == 65)
        #expect(damaged.output.contains("mid_log"))
        #expect(damaged.output.contains(segment))
    }
}
