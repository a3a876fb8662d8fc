@testable import Engine
import FaultFS
import PropertyBased
import Testing

/// The block-range encoding peers exchange: it round-trips, and no flipped bit, cut, reorder or
/// trailing byte ever decodes.
@Suite("Block range codec")
struct BlockRangeCodecTests {
    /// `count` consecutive blocks from `firstHeight`, drawn from `seed`: 1–4 lanes, random
    /// touched lanes, puts and deletes with empty and non-empty keys and values.
    static func blocks(seed: UInt64, count: Int, firstHeight: UInt64 = 1) -> [SyncBlock] {
        var random = DeterministicRandom(seed: seed)
        let laneCount = random.int(in: 1...4)
        func hash() -> Hash32 { Hash32(bytes: (0..<32).map { _ in UInt8(truncatingIfNeeded: random.next()) }) }
        func bytes(_ range: ClosedRange<Int>) -> [UInt8] { (0..<random.int(in: range)).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
        var previous = hash()
        return (0..<count).map { index in
            let touched = (0..<laneCount).filter { _ in random.chance(0.6) }
            let lanes = touched.map { lane in
                SyncBlock.Lane(lane: lane, operations: (0..<random.int(in: 1...5)).map { _ in
                    BlockOperation(key: bytes(0...12), value: random.chance(0.2) ? nil : bytes(0...40))
                })
            }
            let block = SyncBlock(
                height: firstHeight + UInt64(index), metaRoot: hash(), previousMetaRoot: previous, laneRoots: (0..<laneCount).map { _ in hash() },
                lanes: lanes)
            previous = block.metaRoot
            return block
        }
    }

    @Test func encodedRangesDecodeToTheSameBlocks() async {
        await propertyCheck(count: 200, input: Gen.uint64(), Gen.int(in: 0...12), Gen.uint64(in: 1...1_000_000)) { seed, count, first in
            let blocks = Self.blocks(seed: seed, count: count, firstHeight: first)
            #expect((try? BlockRangeCodec.decode(BlockRangeCodec.encode(blocks))) == blocks)
        }
    }

    @Test func everySingleBitFlipIsRefused() throws {
        let encoded = BlockRangeCodec.encode(Self.blocks(seed: 7, count: 3))
        for bit in 0..<(encoded.count * 8) {
            var damaged = encoded
            damaged[bit / 8] ^= 1 << UInt8(bit % 8)
            #expect(throws: BlockRangeError.self, "bit \(bit) flipped decoded") { try BlockRangeCodec.decode(damaged) }
        }
    }

    @Test func everyCutIsRefusedAsTruncatedOrWorse() throws {
        let encoded = BlockRangeCodec.encode(Self.blocks(seed: 8, count: 3))
        for length in 0..<encoded.count {
            #expect(throws: BlockRangeError.self, "a cut at \(length) decoded") { try BlockRangeCodec.decode(Array(encoded[0..<length])) }
        }
    }

    @Test func trailingBytesAReorderAndTooManyBlocksAreRefusedByKind() throws {
        let blocks = Self.blocks(seed: 9, count: 3)
        let encoded = BlockRangeCodec.encode(blocks)
        #expect(throws: BlockRangeError(.badTrailer, offset: encoded.count, "bytes follow the trailer")) {
            try BlockRangeCodec.decode(encoded + [0])
        }
        do {
            _ = try BlockRangeCodec.decode(encoded, blocksMax: 2)
            Issue.record("three blocks decoded with a limit of two")
        } catch {
            #expect(error.kind == .tooLarge)
        }
        // The second and third blocks swapped, each frame intact: the heights give it away.
        let frames = Self.frames(of: encoded)
        let swapped = Array(encoded[0..<BlockRangeCodec.headerBytes]) + frames[0] + frames[2] + frames[1]
            + Array(encoded[(encoded.count - BlockRangeCodec.trailerBytes)...])
        do {
            _ = try BlockRangeCodec.decode(swapped)
            Issue.record("a reordered range decoded")
        } catch {
            #expect(error.kind == .nonConsecutive && error.blockIndex == 1, "\(error)")
        }
    }

    @Test func aFrameThatVerifiesButDoesNotParseIsMalformed() throws {
        var encoded = BlockRangeCodec.encode(Self.blocks(seed: 10, count: 1))
        let frame = BlockRangeCodec.headerBytes
        let length = Int(encoded.littleEndian(at: frame, as: UInt32.self))
        let bodyStart = frame + BlockRangeCodec.frameHeaderBytes
        // Height zero is not a block; re-checksum the frame so only the parse can catch it.
        for index in 0..<8 { encoded[bodyStart + index] = 0 }
        let checksum = CRC32C.checksum(Array(encoded[frame..<(frame + 4)]) + encoded[bodyStart..<(bodyStart + length)])
        withUnsafeBytes(of: checksum.littleEndian) { for (index, byte) in $0.enumerated() { encoded[frame + 4 + index] = byte } }
        do {
            _ = try BlockRangeCodec.decode(encoded)
            Issue.record("a block at height zero decoded")
        } catch {
            // The trailer chains the old checksum, but the body is refused first.
            #expect(error.kind == .malformedBlock && error.blockIndex == 0, "\(error)")
        }
    }

    @Test func anEmptyRangeRoundTrips() throws {
        let encoded = BlockRangeCodec.encode([])
        #expect(encoded.count == BlockRangeCodec.headerBytes + BlockRangeCodec.trailerBytes)
        #expect(try BlockRangeCodec.decode(encoded).isEmpty)
    }

    /// The frames of an encoded range, header and trailer left out.
    static func frames(of encoded: [UInt8]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var offset = BlockRangeCodec.headerBytes
        // Bounded by the encoded bytes.
        while offset < encoded.count - BlockRangeCodec.trailerBytes {
            let length = Int(encoded.littleEndian(at: offset, as: UInt32.self))
            let end = offset + BlockRangeCodec.frameHeaderBytes + length
            frames.append(Array(encoded[offset..<end]))
            offset = end
        }
        return frames
    }
}
