import Engine
import PropertyBased
import Testing

@Suite("CRC32C")
struct CRC32CTests {
    /// RFC 3720 B.4 vectors and the classic check value.
    static let vectors: [(name: String, bytes: [UInt8], crc: UInt32)] = [
        ("123456789", Array("123456789".utf8), 0xE306_9283),
        ("32 zero bytes", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 bytes of 0xFF", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("bytes 0..31", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("bytes 31..0", (0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ("empty", [], 0),
    ]

    @Test(arguments: 0..<vectors.count)
    func knownAnswersOnEveryPath(index: Int) {
        let vector = Self.vectors[index]
        vector.bytes.withUnsafeBytes { buffer in
            #expect(CRC32C.checksum(buffer) == vector.crc, "\(vector.name) dispatched")
            #expect(CRC32C.extendPortable(0, buffer) == vector.crc, "\(vector.name) portable")
            #expect(CRC32C.extendHardwareSingleStream(0, buffer) == vector.crc, "\(vector.name) single stream")
        }
        #expect(CRC32C.checksum(vector.bytes[...]) == vector.crc)
    }

    @Test func maskRoundTripsAndChangesTheValue() {
        for crc: UInt32 in [0, 1, 0xE306_9283, 0xFFFF_FFFF, 0x8000_0000] {
            #expect(CRC32C.unmask(CRC32C.mask(crc)) == crc)
            #expect(CRC32C.mask(crc) != crc)
        }
        // The RocksDB/LevelDB mask of the check value, computed by hand:
        // rotr(0xE3069283, 15) = 0x2507C60D; + 0xA282EAD8 = 0xC78AB0E5.
        #expect(CRC32C.mask(0xE306_9283) == 0xC78A_B0E5)
    }

    @Test func largeBufferCrossesTheInterleavedPaths() {
        // 3 * 4096 + 3 * 256 + 13 bytes exercises both block sizes and the tail.
        let bytes = (0..<(3 * 4096 + 3 * 256 + 13)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        bytes.withUnsafeBytes { buffer in
            #expect(CRC32C.checksum(buffer) == CRC32C.extendPortable(0, buffer))
            #expect(CRC32C.extendHardwareSingleStream(0, buffer) == CRC32C.extendPortable(0, buffer))
        }
    }

    @Test func hardwareAndSoftwareAgreeOnRandomBuffersLengthsAndAlignments() async {
        await propertyCheck(
            count: 300, input: Gen.uint8().array(of: 0...40_000), Gen.int(in: 0...15), Gen.uint32()
        ) { bytes, misalignment, seed in
            let start = min(misalignment, bytes.count)
            bytes.withUnsafeBytes { whole in
                let buffer = UnsafeRawBufferPointer(rebasing: whole[start...])
                let expected = CRC32C.extendPortable(seed, buffer)
                #expect(CRC32C.extend(seed, buffer) == expected)
                #expect(CRC32C.extendHardwareSingleStream(seed, buffer) == expected)
            }
        }
    }

    @Test func extendingEqualsChecksumOfTheConcatenation() async {
        await propertyCheck(count: 200, input: Gen.uint8().array(of: 0...5_000), Gen.uint8().array(of: 0...5_000)) {
            first, second in
            let whole = CRC32C.checksum(first + second)
            let extended = second.withUnsafeBytes { CRC32C.extend(CRC32C.checksum(first), $0) }
            #expect(whole == extended)
        }
    }
}
