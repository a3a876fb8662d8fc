import Documents
import Testing

/// The one JSON encoding: sorted keys on one line, explicit nulls where a document says so, and
/// documents that read back what they wrote.
@Suite("JSON documents")
struct JSONDocumentTests {
    @Test func keysAreSortedAndSlashesAndUnicodeStayReadable() {
        let document = ErrorDocument(error: "no /v1/x for \"ü\"\n", kind: "not_found")
        #expect(JSONDocument.encode(document) == #"{"error":"no /v1/x for \"ü\"\n","kind":"not_found"}"#)
    }

    @Test func anExplicitNullIsWrittenAndReadBack() throws {
        let block = BlockRequestDocument(ops: [.init(key: "a", value: "1"), .init(key: "b", value: nil)])
        let text = JSONDocument.encode(block)
        #expect(text == #"{"ops":[{"key":"a","value":"1"},{"key":"b","value":null}]}"#)
        #expect(try JSONDocument.decode(BlockRequestDocument.self, from: Array(text.utf8)) == block)
        // A missing key is not the same as null: the document is refused.
        #expect(throws: DecodingError.self) { try JSONDocument.decode(BlockRequestDocument.self, from: Array(#"{"ops":[{"key":"a"}]}"#.utf8)) }
    }

    @Test func aStatusDocumentRoundTripsWithItsWireNames() throws {
        let status = StatusDocument(
            chainID: "c", height: 7, durableHeight: 6, metaRoot: "ab", laneRoots: ["01", "02"], fsyncPolicy: "strict",
            wal: [.init(partition: "lane-0", writtenLSN: 7, durableLSN: 6)], api: .init(connections: 1, commitsInFlight: 0),
            lastRecovery: .init(
                height: 5, metaRoot: "cd", durationSeconds: 0.25, uncommittedBlocksDropped: 1,
                lanes: [.init(lane: 0, appliedHeightBefore: 4, recordsReplayed: 1, walBytesTruncated: 0)]))
        let text = JSONDocument.encode(status)
        for key in ["\"chain_id\":\"c\"", "\"durable_height\":6", "\"written_lsn\":7", "\"commits_in_flight\":0", "\"lanes\":2",
            "\"uncommitted_blocks_dropped\":1", "\"applied_height_before\":4"]
        {
            #expect(text.contains(key), "\(key) in \(text)")
        }
        #expect(try JSONDocument.decode(StatusDocument.self, from: Array(text.utf8)) == status)
    }

    @Test func quotedEscapesWhatAMessageQuotes() {
        #expect(quoted("a\"b\u{1}") == #""a\"b\u0001""#)
    }
}
