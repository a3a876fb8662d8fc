import Engine
import FaultFS
import PropertyBased
import Testing

@Suite("WAL format")
struct WALFormatTests {
    static func payload(length: Int, seed: UInt64) -> [UInt8] {
        var random = DeterministicRandom(seed: seed)
        var bytes = [UInt8](repeating: 0, count: length)
        for index in stride(from: 0, to: length, by: 8) {
            let word = random.next()
            for offset in 0..<min(8, length - index) { bytes[index + offset] = UInt8(truncatingIfNeeded: word >> (8 * offset)) }
        }
        return bytes
    }

    static func encodeFrame(_ payload: [UInt8], lsn: LSN = 7, synced: LSN = 5) -> [UInt8] {
        var buffer: [UInt8] = []
        payload.withUnsafeBytes { bytes in
            _ = WALFrameCodec.encode(
                payload: bytes, lsn: lsn, syncedThroughLSN: synced, partition: .lane(3), segmentIndex: 9, recordType: 1,
                into: &buffer)
        }
        return buffer
    }

    @Test func frameRoundTripsForPayloadsFromEmptyToOneMebibyte() async {
        await propertyCheck(count: 60, input: Gen.int(in: 0...(1 << 20)), Gen.uint64(), Gen.uint64(in: 1...UInt64.max - 1)) {
            length, seed, lsn in
            let payload = Self.payload(length: length, seed: seed)
            let frame = Self.encodeFrame(payload, lsn: lsn, synced: lsn - 1)
            #expect(frame.count == WALFormat.frameLength(payloadLength: length))
            #expect(frame.count % 8 == 0)
            frame.withUnsafeBytes { bytes in
                guard case .frame(let header) = WALFrameCodec.decode(bytes, at: 0) else {
                    Issue.record("frame of \(length) bytes did not decode")
                    return
                }
                #expect(header.lsn == lsn)
                #expect(header.syncedThroughLSN == lsn - 1)
                #expect(header.partition == .lane(3))
                #expect(header.segmentIndexLow == 9)
                #expect(header.payloadLength == length)
                let decoded = bytes[WALFormat.frameHeaderBytes..<(WALFormat.frameHeaderBytes + length)]
                #expect(decoded.elementsEqual(payload))
            }
        }
    }

    @Test func decoderFedOneByteAtATimeNeverMisframes() {
        let payloads = [Self.payload(length: 0, seed: 1), Self.payload(length: 13, seed: 2), Self.payload(length: 300, seed: 3)]
        var stream: [UInt8] = []
        for (index, payload) in payloads.enumerated() {
            stream += Self.encodeFrame(payload, lsn: LSN(index + 1), synced: LSN(index))
        }
        var received: [UInt8] = []
        var offset = 0
        var decodedLSNs: [LSN] = []
        for byte in stream {
            received.append(byte)
            let result = received.withUnsafeBytes { WALFrameCodec.decode($0, at: offset) }
            switch result {
            case .needMoreData:
                continue
            case .frame(let header):
                #expect(received.count - offset == header.frameLength, "decoded before the frame was complete")
                decodedLSNs.append(header.lsn)
                offset += header.frameLength
            case .zeroHeader, .damaged:
                Issue.record("unexpected \(result) at \(received.count) bytes")
            }
        }
        #expect(decodedLSNs == [1, 2, 3])
        #expect(offset == stream.count)
    }

    @Test func everySingleBitFlipInAFrameIsDetected() {
        let frame = Self.encodeFrame(Self.payload(length: 40, seed: 9))
        for bit in 0..<(WALFormat.frameHeaderBytes + 40) * 8 {
            var damaged = frame
            damaged[bit / 8] ^= UInt8(1) << UInt8(bit % 8)
            let result = damaged.withUnsafeBytes { WALFrameCodec.decode($0, at: 0) }
            guard case .damaged = result else {
                Issue.record("flip of bit \(bit) gave \(result)")
                continue
            }
        }
    }

    @Test func allZeroHeaderIsUnwrittenSpace() {
        let zeros = [UInt8](repeating: 0, count: 64)
        #expect(zeros.withUnsafeBytes { WALFrameCodec.decode($0, at: 0) } == .zeroHeader)
        #expect(zeros.withUnsafeBytes { WALFrameCodec.decode($0, at: 60) } == .zeroHeader)
    }

    @Test func segmentHeaderRoundTripsAndRejectsDamage() throws {
        let header = WALSegmentHeader(
            fsyncPolicy: .balanced, partition: .meta, segmentIndex: 4, firstLSN: 101, previousLastLSN: 100,
            previousChecksum: 0xDEAD_BEEF, createdAtSeconds: 1_700_000_000)
        let (bytes, checksum) = header.encoded()
        #expect(bytes.count == 64)
        guard case .success(let (decoded, decodedChecksum)) = WALSegmentHeader.decode(bytes) else {
            Issue.record("header did not decode")
            return
        }
        #expect(decoded == header)
        #expect(decodedChecksum == checksum)
        for byte in 0..<64 {
            var damaged = bytes
            damaged[byte] ^= 0x10
            guard case .failure = WALSegmentHeader.decode(damaged) else {
                Issue.record("flip in byte \(byte) was accepted")
                continue
            }
        }
        if case .success = WALSegmentHeader.decode(bytes.prefix(63)) { Issue.record("short header accepted") }
    }
}
