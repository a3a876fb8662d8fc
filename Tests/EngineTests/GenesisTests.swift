@testable import Engine
import FaultFS
import Testing

/// GENESIS under bad reads and damage (docs/RULES.md, I4): a bad read is never taken for another chain.
@Suite("Genesis file")
struct GenesisTests {
    @Test func badReadsNeverLookLikeAnotherChain() throws {
        let fileSystem = SimulatedFileSystem(seed: 4, plan: .none)
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = "rivellum-test"
        configuration.laneCount = 3
        try fileSystem.createDirectories("/data")
        try Genesis.ensure(fileSystem: fileSystem, configuration: configuration)
        fileSystem.setPlan(FaultPlan(rates: [.bitRotOnRead: 0.2, .misdirectedReads: 0.2]))
        for round in 0..<40 {
            try Genesis.ensure(fileSystem: fileSystem, configuration: configuration)
            let read = try #require(try Genesis.read(fileSystem: fileSystem, dataDirectory: "/data"), "round \(round)")
            #expect(read.chainID == "rivellum-test" && read.laneCount == 3, "round \(round)")
        }
        #expect(fileSystem.injectedFaultCounts.values.reduce(0, +) > 5, "reads were damaged")
    }

    @Test func damageThatStandsIsCorruptStateNeverAMismatch() throws {
        let fileSystem = SimulatedFileSystem(seed: 4, plan: .none)
        var configuration = EngineConfiguration(dataDirectory: "/data")
        configuration.chainID = "rivellum-test"
        try fileSystem.createDirectories("/data")
        try Genesis.ensure(fileSystem: fileSystem, configuration: configuration)
        let bytes = try fileSystem.readFile("/data/GENESIS")
        let handle = try fileSystem.openFile("/data/GENESIS", options: .readWrite)
        try handle.write([bytes[12] ^ 0x01], at: 12)
        try handle.sync()
        try handle.close()
        let error = #expect(throws: EngineError.self) { try Genesis.ensure(fileSystem: fileSystem, configuration: configuration) }
        #expect(error?.kind == .corruptState)
        #expect(error?.path == "/data/GENESIS")
    }
}
