import Crypto
import Engine
import FaultFS
import Foundation
import NodeHarness
@testable import Offsite
import SimRunner
import Testing

/// Two snapshots of one chain on a simulated file system: `/backup/s1` at height 30 and
/// `/backup/s2` at height 34 (sharing most of their SST files).
struct TwoSnapshots {
    let fileSystem: SimulatedFileSystem
    let model: ChainModel

    static let data = "/data"

    static func configuration() -> EngineConfiguration {
        var configuration = EngineConfiguration(dataDirectory: data)
        configuration.chainID = "rivellum-test"
        configuration.laneCount = 4
        configuration.wal.segmentSizeBytes = 8_192
        configuration.flushEveryBlocks = 16
        return configuration
    }

    init() throws {
        fileSystem = SimulatedFileSystem(seed: 21, plan: .none)
        var model = ChainModel(chainID: "rivellum-test", laneCount: 4)
        let engine = try Engine(fileSystem: fileSystem, configuration: Self.configuration(), clock: ManualClock())
        let generator = BlockGenerator(
            keyPrefix: "account-", keySpace: 40, operationsPerBlock: 1...6, deleteChance: 0.15, valueBytes: 1...40, largeValues: .init(chance: 0.1, bytes: 200...2_000))
        let makeBlock = { (height: Int, seed: UInt64) in
            var random = DeterministicRandom(seed: seed &* 1_000_003 &+ UInt64(height))
            return generator.block(using: &random)
        }
        for height in 1...30 {
            let block = makeBlock(height, 5)
            model.apply(block)
            _ = try engine.commit(block)
        }
        _ = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: "/backup/s1", nowSeconds: 1_000)
        for height in 31...34 {
            let block = makeBlock(height, 5)
            model.apply(block)
            _ = try engine.commit(block)
        }
        _ = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: "/backup/s2", nowSeconds: 2_000)
        try engine.close()
        self.model = model
    }
}

/// The off-site round trip every store must pass: push, list, a second push that uploads only
/// the new files, pull (verified) and a restore from it, a damaged object refused on pull, and
/// prune keeping N.
enum OffsiteRoundTrip {
    static func run(_ snapshots: TwoSnapshots, _ store: any ObjectStore, corrupt: (String) async throws -> Void) async throws {
        let fileSystem = snapshots.fileSystem
        let first = try await OffsiteSnapshots.push(snapshotPath: "/backup/s1", name: "s1", store: store, fileSystem: fileSystem, nowSeconds: 10)
        let distinct = Set(try SnapshotVerifier.readManifest(fileSystem: fileSystem, path: "/backup/s1").files.map(\.sha256)).count
        #expect(first.filesUploaded == distinct && first.filesAlreadyStored == 0 && first.bytesUploaded > 0, "one object per distinct file: \(first)")
        let second = try await OffsiteSnapshots.push(snapshotPath: "/backup/s2", name: "s2", store: store, fileSystem: fileSystem, nowSeconds: 20)
        #expect(second.filesAlreadyStored > 0 && second.bytesUploaded < first.bytesUploaded, "only the new files go up: \(second)")
        let again = try await OffsiteSnapshots.push(snapshotPath: "/backup/s2", name: "s2", store: store, fileSystem: fileSystem, nowSeconds: 30)
        #expect(again.filesUploaded == 0 && again.bytesUploaded == 0, "a repeated push uploads nothing")
        let listed = try await OffsiteSnapshots.list(store: store)
        #expect(listed.map(\.name) == ["s2", "s1"] && listed.map { $0.manifest?.height } == [34, 30])

        let pulled = try await OffsiteSnapshots.pull(store: store, name: "s1", outPath: "/restore/s1", fileSystem: fileSystem)
        #expect(pulled.height == 30 && pulled.metaRoot == snapshots.model.metaRoot(at: 30).hex)
        let lock = try lockDataDirectory(fileSystem: fileSystem, dataDirectory: "/standby")
        let plan = try SnapshotRestorer.plan(fileSystem: fileSystem, snapshotPath: "/restore/s1", dataDirectory: "/standby", resetWAL: false, id: "t")
        try SnapshotRestorer.restore(fileSystem: fileSystem, plan: plan, deleteOld: false, clock: ManualClock())
        try lock.unlock()
        var standby = TwoSnapshots.configuration()
        standby.dataDirectory = "/standby"
        let engine = try Engine(fileSystem: fileSystem, configuration: standby, clock: ManualClock())
        #expect(engine.stateRoots().height == 30 && engine.stateRoots().metaRoot == snapshots.model.metaRoot(at: 30))
        try engine.close()

        // A damaged object (bit rot, a bad upload) is refused, and nothing is left at the target.
        let manifest = try SnapshotVerifier.readManifest(fileSystem: fileSystem, path: "/backup/s2")
        let victim = try #require(manifest.files.max { $0.sizeBytes < $1.sizeBytes })
        try await corrupt("objects/" + victim.sha256)
        do {
            _ = try await OffsiteSnapshots.pull(store: store, name: "s2", outPath: "/restore/s2", fileSystem: fileSystem)
            Issue.record("a damaged object was pulled")
        } catch let error as ObjectStoreError {
            #expect(error.kind == .damaged && error.key == "objects/" + victim.sha256, "\(error)")
        }
        let leftovers = try fileSystem.exists("/restore/s2") || fileSystem.exists("/restore/s2.partial")
        #expect(!leftovers)
        // The remedy: a push that reads back what the store holds uploads the damaged object again.
        let repaired = try await OffsiteSnapshots.push(
            snapshotPath: "/backup/s2", name: "s2", store: store, fileSystem: fileSystem, nowSeconds: 35, verifyExisting: true)
        #expect(repaired.filesUploaded == 1 && repaired.bytesUploaded == victim.sizeBytes, "\(repaired)")
        #expect(try await OffsiteSnapshots.pull(store: store, name: "s2", outPath: "/restore/s2", fileSystem: fileSystem).height == 34)

        let pruned = try await OffsiteSnapshots.prune(store: store, keep: 1, nowSeconds: 40)
        #expect(pruned.kept == ["s2"] && pruned.removed == ["s1"] && pruned.objectsRemoved > 0)
        #expect(try await OffsiteSnapshots.list(store: store).map(\.name) == ["s2"])
        let remaining = Set(try await store.list(prefix: "objects/").map(\.key))
        #expect(remaining == Set(manifest.files.map { "objects/" + $0.sha256 }), "exactly the kept snapshot's objects remain")
    }
}

@Suite("Off-site snapshot copies")
struct OffsiteTests {
    /// AWS's published Signature V4 examples for S3 (GET Object with a range; ListObjects).
    @Test func signatureV4MatchesAWSExamples() {
        let credentials = AWSCredentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        let at: UInt64 = 1_369_353_600  // 2013-05-24T00:00:00Z
        let get = SigV4.sign(
            SigV4.Request(method: "GET", path: "/test.txt", headers: ["range": "bytes=0-9"], payloadSHA256: SigV4.emptyPayloadSHA256),
            host: "examplebucket.s3.amazonaws.com", region: "us-east-1", credentials: credentials, secondsSince1970: at)
        #expect(
            get["authorization"]
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        let list = SigV4.sign(
            SigV4.Request(method: "GET", path: "/", query: [("max-keys", "2"), ("prefix", "J")], payloadSHA256: SigV4.emptyPayloadSHA256),
            host: "examplebucket.s3.amazonaws.com", region: "us-east-1", credentials: credentials, secondsSince1970: at)
        #expect(list["authorization"]?.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == true, "\(list)")
        // PUT Object with a body, a path that needs encoding, and extra signed headers.
        let body = Array("Welcome to Amazon S3.".utf8)
        let put = SigV4.sign(
            SigV4.Request(
                method: "PUT", path: "/test$file.text", headers: ["date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"],
                payloadSHA256: SigV4.hex(SHA256.hash(data: body))),
            host: "examplebucket.s3.amazonaws.com", region: "us-east-1", credentials: credentials, secondsSince1970: at)
        #expect(put["x-amz-content-sha256"] == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(
            put["authorization"]
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test(arguments: [
        ("file:///mnt/backup/", OffsiteLocation.directory(path: "/mnt/backup")), ("s3://my-bucket/node-a/", .s3(bucket: "my-bucket", prefix: "node-a")),
        ("s3://my-bucket", .s3(bucket: "my-bucket", prefix: "")),
    ])
    func uris(text: String, expected: OffsiteLocation) throws {
        #expect(try OffsiteLocation.parse(text).get() == expected)
    }

    @Test(arguments: ["file://relative", "file:///a/../b", "s3://UPPER/x", "s3://ab", "http://x", "s3://bucket/a/../b"])
    func badURIsAreRefused(text: String) {
        guard case .failure(let error) = OffsiteLocation.parse(text) else {
            Issue.record("\(text) was taken")
            return
        }
        #expect(error.kind == .invalid)
    }

    @Test func settingsComeFromTheEnvironmentThenTheSharedFiles() throws {
        let fileSystem = SimulatedFileSystem(seed: 1, plan: .none)
        try fileSystem.createDirectories("/home/op/.aws")
        try fileSystem.writeFileAtomically(
            "/home/op/.aws/credentials", bytes: Array("[default]\naws_access_key_id = AKFILE\naws_secret_access_key = secretfile\n[other]\naws_access_key_id = AKOTHER\naws_secret_access_key = s2\n".utf8))
        try fileSystem.writeFileAtomically("/home/op/.aws/config", bytes: Array("[profile other]\nregion = eu-west-3\n".utf8))
        let fromFiles = try S3Settings.load(environment: ["HOME": "/home/op", "AWS_PROFILE": "other"], fileSystem: fileSystem).get()
        #expect(fromFiles.credentials.accessKeyID == "AKOTHER" && fromFiles.region == "eu-west-3" && fromFiles.endpoint == nil)
        let fromEnvironment = try S3Settings.load(
            environment: ["HOME": "/home/op", "AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/"],
            fileSystem: fileSystem
        ).get()
        #expect(fromEnvironment.credentials.accessKeyID == "AKENV" && fromEnvironment.region == "us-west-2" && fromEnvironment.endpoint == "http://127.0.0.1:9000")
        guard case .failure(let error) = S3Settings.load(environment: ["HOME": "/nowhere"], fileSystem: fileSystem) else {
            Issue.record("no credentials were taken")
            return
        }
        #expect(error.kind == .invalid)
    }

    /// A mounted directory (`file://`), on the simulated file system; rot flips a byte of an object file.
    @Test func aDirectoryStoreRoundTrips() async throws {
        let snapshots = try TwoSnapshots()
        let store = FileObjectStore(fileSystem: snapshots.fileSystem, root: "/offsite")
        try await OffsiteRoundTrip.run(snapshots, store) { key in
            let handle = try snapshots.fileSystem.openFile("/offsite/" + key, options: .readWrite)
            let byte = try handle.read(at: 10, count: 1)
            try handle.write([byte[0] ^ 0x20], at: 10)
            try handle.sync()
            try handle.close()
        }
    }

    /// A push while a prune runs stops before it uploads anything (and leaves no marker); a
    /// prune marker past its lifetime (a crashed prune) does not stop it.
    @Test func aPushStopsWhileAPruneRuns() async throws {
        let snapshots = try TwoSnapshots()
        let store = FileObjectStore(fileSystem: snapshots.fileSystem, root: "/offsite")
        try await store.put("locks/PRUNING", bytes: Array("started=1000\n".utf8))
        do {
            _ = try await OffsiteSnapshots.push(snapshotPath: "/backup/s1", name: "s1", store: store, fileSystem: snapshots.fileSystem, nowSeconds: 1_100)
            Issue.record("a push went on during a prune")
        } catch let error as ObjectStoreError {
            #expect(error.kind == .unavailable && error.key == "locks/PRUNING")
        }
        #expect(try await store.list(prefix: "").map(\.key) == ["locks/PRUNING"], "nothing uploaded, no push marker left")
        let late = try await OffsiteSnapshots.push(
            snapshotPath: "/backup/s1", name: "s1", store: store, fileSystem: snapshots.fileSystem, nowSeconds: 1_000 + OffsiteSnapshots.pruneMarkerLifetimeSeconds + 1)
        #expect(late.filesUploaded > 0)
    }

    /// Uploads run several at once within their bound; one that does not read back as uploaded
    /// fails the push with the object's key, and the manifest never goes up (nothing lists it).
    @Test func aBadUploadAmongConcurrentOnesFailsThePushBeforeTheManifest() async throws {
        let snapshots = try TwoSnapshots()
        let manifest = try SnapshotVerifier.readManifest(fileSystem: snapshots.fileSystem, path: "/backup/s1")
        let victim = try #require(manifest.files.max { $0.sizeBytes < $1.sizeBytes })
        let store = RottingStore(FileObjectStore(fileSystem: snapshots.fileSystem, root: "/offsite"), rotting: "objects/" + victim.sha256)
        do {
            _ = try await OffsiteSnapshots.push(snapshotPath: "/backup/s1", name: "s1", store: store, fileSystem: snapshots.fileSystem, nowSeconds: 10)
            Issue.record("a push whose upload was damaged succeeded")
        } catch let error as ObjectStoreError {
            #expect(error.kind == .damaged && error.key == "objects/" + victim.sha256 && error.operation == "read back", "\(error)")
        }
        #expect(try await OffsiteSnapshots.list(store: store).isEmpty, "no manifest without every object read back")
        #expect(store.putsInFlightMax <= OffsiteSnapshots.uploadsInFlightMax && store.putsInFlightMax >= 1)
    }

    /// ListObjectsV2's XML: leaf values decoded once, containers left raw.
    @Test func listingXMLIsDecodedOnce() {
        let xml = Array("<ListBucketResult><Contents><Key>a&amp;lt;b</Key><Size>3</Size></Contents><Contents><Key>c&lt;d</Key><Size>4</Size></Contents></ListBucketResult>".utf8)
        let entries = S3ObjectStore.xmlElements(xml, tag: "Contents")
        #expect(entries.count == 2)
        #expect(entries.flatMap { S3ObjectStore.xmlValues(Array($0.utf8), tag: "Key") } == ["a&lt;b", "c<d"])
    }
}

/// A store that flips a byte of one key's object as it is stored, and records how many puts were
/// ever in flight at once (each put yields once, so that others may start).
final class RottingStore: ObjectStore, @unchecked Sendable {
    let inner: any ObjectStore
    let rotting: String
    private let lock = NSLock()
    private var inFlight = 0
    private(set) var putsInFlightMax = 0
    var description: String { "rotting " + inner.description }

    init(_ inner: any ObjectStore, rotting: String) {
        self.inner = inner
        self.rotting = rotting
    }

    func put(_ key: String, bytes: [UInt8]) async throws(ObjectStoreError) {
        lock.withLock {
            inFlight += 1
            putsInFlightMax = max(putsInFlightMax, inFlight)
        }
        defer { lock.withLock { inFlight -= 1 } }
        await Task.yield()
        var stored = bytes
        if key == rotting, !stored.isEmpty { stored[stored.count / 2] ^= 0x01 }
        try await inner.put(key, bytes: stored)
    }

    func get(_ key: String, bytesMax: UInt64) async throws(ObjectStoreError) -> [UInt8]? { try await inner.get(key, bytesMax: bytesMax) }
    func size(_ key: String) async throws(ObjectStoreError) -> UInt64? { try await inner.size(key) }
    func list(prefix: String) async throws(ObjectStoreError) -> [StoredObject] { try await inner.list(prefix: prefix) }
    func delete(_ key: String) async throws(ObjectStoreError) { try await inner.delete(key) }
}
