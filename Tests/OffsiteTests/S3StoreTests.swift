import Engine
import FaultFS
import Foundation
import NodeHarness
import Offsite
import Testing

extension MotoServer {
    var settings: S3Settings {
        S3Settings(credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), region: "us-east-1", endpoint: endpoint)
    }
}

/// The S3 store, signed with Signature V4, against a real S3-protocol server on loopback.
@Suite("Off-site copies in S3 (moto server on loopback)", .serialized)
struct S3StoreTests {
    @Test func anS3StoreRoundTrips() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let snapshots = try TwoSnapshots()
        try await S3ObjectStore.withStore(bucket: "rivellum-offsite", prefix: "node-a", settings: moto.settings) { store in
            try await store.createBucket()
            try await OffsiteRoundTrip.run(snapshots, store) { key in
                // Bit rot at rest: the same size, one byte changed.
                var bytes = try #require(try await store.get(key, bytesMax: 1 << 30))
                bytes[bytes.count / 2] ^= 0x01
                try await store.put(key, bytes: bytes)
            }
        }
    }

    /// A 4xx is the operator's to fix (a missing bucket here): refused at once, with S3's code.
    @Test func aMissingBucketIsRefusedWithItsCode() async throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        try await S3ObjectStore.withStore(bucket: "rivellum-missing", prefix: "", settings: moto.settings) { store in
            do {
                try await store.put("objects/x", bytes: [1, 2, 3])
                Issue.record("a put into a missing bucket succeeded")
            } catch let error as ObjectStoreError {
                #expect(error.kind == .refused && error.message.contains("NoSuchBucket") && error.key == "objects/x", "\(error)")
            }
        }
    }
}
