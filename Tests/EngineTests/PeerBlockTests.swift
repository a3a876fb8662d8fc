@testable import Engine
import FaultFS
import Testing

/// Serving committed blocks to peers and committing a peer's blocks: what one engine serves,
/// another applies to the same roots; a block whose claims are not what its operations give is
/// refused with nothing written and the engine still usable.
@Suite("Blocks between peers")
struct PeerBlockTests {
    /// An engine on its own simulated file system, `blocks` blocks committed.
    static func primary(blocks: Int, seed: UInt64 = 1, _ policy: FsyncPolicy = .strict) throws -> (Engine, SimulatedFileSystem) {
        let fileSystem = SimulatedFileSystem(seed: seed, plan: .none)
        let engine = try Engine(fileSystem: fileSystem, configuration: EngineTests.configuration(policy), clock: ManualClock())
        for height in 1...max(1, blocks) where blocks > 0 { _ = try engine.commit(makeBlock(height, seed: seed)) }
        return (engine, fileSystem)
    }

    static func follower(seed: UInt64 = 9) throws -> Engine {
        try Engine(fileSystem: SimulatedFileSystem(seed: seed, plan: .none), configuration: EngineTests.configuration(), clock: ManualClock())
    }

    /// The roots the tests trust: the primary's own.
    static func attest(_ blocks: [SyncBlock]) -> [UInt64: Hash32] {
        Dictionary(uniqueKeysWithValues: blocks.map { ($0.height, $0.metaRoot) })
    }

    static func served(_ engine: Engine, from: UInt64, maxBlocks: Int = 1_024, bytes: Int = 16 << 20) throws -> [SyncBlock] {
        guard case .blocks(let blocks) = try engine.servedBlocks(from: from, maxBlocks: maxBlocks, rangeBytesMax: bytes) else {
            Issue.record("blocks from \(from) are below retention")
            return []
        }
        return blocks
    }

    @Test func aFollowerAppliesServedBlocksToTheSameRootsInBatches() throws {
        let (primary, _) = try Self.primary(blocks: 60)
        let blocks = try Self.served(primary, from: 1)
        #expect(blocks.map(\.height) == Array(1...60))
        for block in blocks {
            let header = try #require(try primary.block(at: block.height))
            #expect(block.metaRoot == header.metaRoot && block.laneRoots == header.laneRoots && block.operationCount == header.operationCount)
        }
        #expect(try BlockRangeCodec.decode(BlockRangeCodec.encode(blocks)) == blocks, "what is served encodes")
        let follower = try Self.follower()
        defer { Self.close(primary, follower) }
        var height: UInt64 = 0
        for batch in stride(from: 0, to: blocks.count, by: 16).map({ Array(blocks[$0..<min($0 + 16, blocks.count)]) }) {
            let result = try #require(try follower.commit(batch, attested: Self.attest(batch)))
            #expect(result.durable && result.height == batch.last!.height)
            height = result.height
        }
        #expect(height == 60)
        #expect(follower.stateRoots() == primary.stateRoots())
        #expect(try follower.get(Array("account-7".utf8)).value == (try primary.get(Array("account-7".utf8))).value)
    }

    @Test func aBatchIsMadeDurableWithOneSyncOfTheMetaPartition() throws {
        let (primary, _) = try Self.primary(blocks: 40)
        let blocks = try Self.served(primary, from: 1)
        func metaSyncs(_ engine: Engine) -> UInt64 { engine.walStatistics.first { $0.partition == .meta }!.statistics.syncs }
        let batched = try Self.follower(), oneByOne = try Self.follower(seed: 10)
        defer { Self.close(primary, batched, oneByOne) }
        let (batchedBefore, oneByOneBefore) = (metaSyncs(batched), metaSyncs(oneByOne))
        _ = try batched.commit(blocks, attested: Self.attest(blocks))
        for block in blocks { _ = try oneByOne.commit([block], attested: Self.attest([block])) }
        let batchedSyncs = metaSyncs(batched) - batchedBefore, oneByOneSyncs = metaSyncs(oneByOne) - oneByOneBefore
        // One wait for the batch; checkpoints (every 16 blocks) and segment rolls sync as well.
        #expect(oneByOneSyncs >= 40 && batchedSyncs * 5 <= oneByOneSyncs, "batched \(batchedSyncs) syncs, one by one \(oneByOneSyncs)")
        #expect(batched.stateRoots() == oneByOne.stateRoots())
    }

    static func close(_ engines: Engine...) {
        for engine in engines { try? engine.close() }
    }

    /// Each way a peer's block can lie, refused before anything is written.
    @Test(arguments: ["operation", "lane root", "meta root", "previous meta root", "height", "attested", "wrong lane"])
    func aBlockThatLiesIsRefusedWithNothingWritten(lie: String) throws {
        let (primary, _) = try Self.primary(blocks: 6)
        let blocks = try Self.served(primary, from: 1)
        let follower = try Self.follower()
        defer { Self.close(primary, follower) }
        _ = try follower.commit(Array(blocks[0..<5]), attested: Self.attest(blocks))
        var block = blocks[5]
        var attested = Self.attest(blocks).merging([7: blocks[5].metaRoot]) { $1 }
        switch lie {
        case "operation": block.lanes[0].operations[0].value = Array("forged".utf8)
        case "lane root": block.laneRoots[block.lanes[0].lane] = Hash32(bytes: [UInt8](repeating: 7, count: 32))
        case "meta root": block.metaRoot = Hash32(bytes: [UInt8](repeating: 8, count: 32))
        case "previous meta root": block.previousMetaRoot = Hash32(bytes: [UInt8](repeating: 9, count: 32))
        case "height": block.height = 7
        case "attested": attested[6] = Hash32(bytes: [UInt8](repeating: 10, count: 32))
        default:
            // The first lane's operations moved to another lane index: the keys route elsewhere.
            let moved = (0..<4).first { lane in !block.lanes.contains { $0.lane == lane } }!
            block.lanes[0].lane = moved
            block.lanes.sort { $0.lane < $1.lane }
        }
        let positions = follower.walPositions.map(\.written)
        let roots = follower.stateRoots()
        do {
            _ = try follower.commit([block], attested: attested)
            Issue.record("a block with a false \(lie) was committed")
        } catch {
            #expect(error.kind == .peerBlockMismatch, "\(error)")
        }
        #expect(follower.walPositions.map(\.written) == positions, "nothing reached the log")
        #expect(follower.stateRoots() == roots)
        // Still usable: the true block commits.
        _ = try follower.commit([blocks[5]], attested: [6: blocks[5].metaRoot])
        #expect(follower.stateRoots() == primary.stateRoots())
    }

    /// A liar that recomputes every root for its forged block passes every self-check; only the
    /// attested MetaRoot tells: refused, nothing written.
    @Test func aSelfConsistentForgedBlockIsRefusedByItsAttestedRoot() throws {
        let (primary, _) = try Self.primary(blocks: 6)
        let (liar, _) = try Self.primary(blocks: 5)
        _ = try liar.commit([BlockOperation(key: Array("account-1".utf8), value: Array("forged".utf8))])
        let truth = try Self.served(primary, from: 1), forged = try Self.served(liar, from: 6)
        let follower = try Self.follower()
        defer { Self.close(primary, liar, follower) }
        _ = try follower.commit(Array(truth[0..<5]), attested: Self.attest(truth))
        let written = follower.walPositions.map(\.written)
        do {
            _ = try follower.commit(forged, attested: Self.attest(truth))
            Issue.record("a forged block with consistent roots was committed")
        } catch {
            #expect(error.kind == .peerBlockMismatch && error.message.contains("attested"), "\(error)")
        }
        #expect(follower.walPositions.map(\.written) == written)
    }

    /// A lie in the middle of a batch: the blocks before it are committed and durable, the lie is
    /// not, and the engine goes on.
    @Test func aLieMidBatchKeepsTheBlocksBeforeItDurable() throws {
        let (primary, _) = try Self.primary(blocks: 8)
        let blocks = try Self.served(primary, from: 1)
        let follower = try Self.follower()
        defer { Self.close(primary, follower) }
        var batch = blocks
        batch[6].lanes[0].operations[0].value = Array("forged".utf8)
        #expect(throws: EngineError.self) { try follower.commit(batch, attested: Self.attest(blocks)) }
        #expect(follower.stateRoots().height == 6 && follower.durableHeight == 6)
        _ = try follower.commit(Array(blocks[6...]), attested: Self.attest(blocks))
        #expect(follower.stateRoots() == primary.stateRoots())
    }

    @Test func onlyDurableBlocksAreServed() throws {
        let (primary, _) = try Self.primary(blocks: 10, .balanced)
        defer { Self.close(primary) }
        let durable = primary.durableHeight
        #expect(durable < 10, "balanced with a still clock leaves the last blocks unsynced")
        #expect(try Self.served(primary, from: 1).map(\.height) == (durable == 0 ? [] : Array(1...durable)))
        #expect(try Self.served(primary, from: 11).isEmpty)
    }

    @Test func aRangeStopsAtItsBlockAndByteBounds() throws {
        let (primary, _) = try Self.primary(blocks: 30)
        defer { Self.close(primary) }
        #expect(try Self.served(primary, from: 5, maxBlocks: 4).map(\.height) == [5, 6, 7, 8])
        #expect(try Self.served(primary, from: 5, bytes: 1).map(\.height) == [5], "at least one block, then the byte bound")
    }

    /// 200 blocks under 0-hour retention, 4 KiB segments and a checkpoint every 4 blocks: old
    /// segments are retired unless `archive` is on.
    static func retiring(archive: Bool) throws -> Engine {
        var configuration = EngineTests.configuration()
        configuration.walRetentionHours = 0
        configuration.wal.segmentSizeBytes = 4_096
        configuration.flushEveryBlocks = 4
        configuration.archive = archive
        let engine = try Engine(fileSystem: SimulatedFileSystem(seed: 3, plan: .none), configuration: configuration, clock: ManualClock())
        for height in 1...200 { _ = try engine.commit(makeBlock(height, seed: 3)) }
        return engine
    }

    /// The same log with `archive` on: retention deletes nothing, block 1 is still served.
    @Test func anArchiveServesEveryBlockFromGenesis() throws {
        let engine = try Self.retiring(archive: true)
        defer { Self.close(engine) }
        #expect(try Self.served(engine, from: 1, maxBlocks: 10).map(\.height) == Array(1...10))
        #expect(try engine.oldestServableHeight() == 1)
    }

    @Test func belowRetentionNamesTheOldestServableHeight() throws {
        let engine = try Self.retiring(archive: false)
        defer { Self.close(engine) }
        let served = try engine.servedBlocks(from: 1, maxBlocks: 10, rangeBytesMax: 1 << 20)
        guard case .belowRetention(let oldest?) = served else {
            Issue.record("the first block is still served: \(served)")
            return
        }
        #expect(oldest > 1 && oldest <= 200)
        let blocks = try Self.served(engine, from: oldest, maxBlocks: 10)
        #expect(blocks.first?.height == oldest)
        if oldest > 1 {
            #expect(try engine.servedBlocks(from: oldest - 1, maxBlocks: 10, rangeBytesMax: 1 << 20) == .belowRetention(oldestServableHeight: oldest))
        }
    }
}
