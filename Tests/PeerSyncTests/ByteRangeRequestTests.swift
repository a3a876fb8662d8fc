import PeerSync
import Testing

/// `Range` headers for snapshot files, resolved against the file's size and the answer cap:
/// the decision table.
@Suite("Byte ranges of snapshot files")
struct ByteRangeRequestTests {
    static let cap: UInt64 = 100

    @Test(arguments: [
        // header, file size, offset, count
        ("bytes=0-9", 50, 0, 10),
        ("bytes=10-", 50, 10, 40),
        ("bytes=10-1000", 50, 10, 40),
        ("bytes=-5", 50, 45, 5),
        ("bytes=-500", 50, 0, 50),
        ("bytes=0-", 1_000, 0, 100),
        ("bytes=-1000", 1_000, 0, 100),
        ("bytes=49-49", 50, 49, 1),
    ] as [(String, UInt64, UInt64, UInt64)])
    func aRangeResolves(header: String, size: UInt64, offset: UInt64, count: UInt64) throws {
        let range = try ByteRangeRequest(header: header, fileSizeBytes: size, answerBytesMax: Self.cap)
        #expect(range == ByteRangeRequest(offset: offset, count: count))
    }

    @Test(arguments: [
        ("bytes=50-", 50), ("bytes=60-70", 50), ("bytes=9-3", 50), ("bytes=0-1,5-9", 50), ("items=0-9", 50), ("bytes=x-9", 50),
        ("bytes=-0", 50), ("bytes=-", 50), ("bytes=0-9", 0), ("bytes=1-2-3", 50),
    ] as [(String, UInt64)])
    func aBadRangeIsRefused(header: String, size: UInt64) {
        #expect(throws: ByteRangeRequest.Problem.self, "\(header) of \(size)") {
            try ByteRangeRequest(header: header, fileSizeBytes: size, answerBytesMax: Self.cap)
        }
    }

    @Test func withoutAHeaderTheWholeFileIfItFits() throws {
        #expect(try ByteRangeRequest(header: nil, fileSizeBytes: 100, answerBytesMax: Self.cap) == ByteRangeRequest(offset: 0, count: 100))
        #expect(try ByteRangeRequest(header: nil, fileSizeBytes: 0, answerBytesMax: Self.cap) == ByteRangeRequest(offset: 0, count: 0))
        let error = #expect(throws: ByteRangeRequest.Problem.self) { try ByteRangeRequest(header: nil, fileSizeBytes: 101, answerBytesMax: Self.cap) }
        #expect(error?.rangeRequired == true)
    }
}
