@testable import Engine
import FaultFS
import Foundation
import SimRunner
import Testing

/// What a node offers its peers of its snapshots (state sync): only verified, catalogued
/// snapshots, by name; a manifest's exact bytes; ranges of the files a manifest lists, and
/// nothing else — no path of the peer's choosing, no symbolic link, nothing past a file's end.
@Suite("Snapshot offers")
struct SnapshotOffersTests {
    static let data = "/data"
    static let snapshot = "/data/snapshots/snapshot-1"

    /// A chain of 20 blocks with a verified, catalogued snapshot, and an unverified one at 25.
    static func offering() throws -> (SimulatedFileSystem, SnapshotManifest) {
        let fileSystem = SimulatedFileSystem(seed: 41, plan: .none)
        let engine = try Engine(fileSystem: fileSystem, configuration: SnapshotTests.configuration(), clock: ManualClock())
        defer { try? engine.close() }
        for height in 1...20 { _ = try engine.commit(makeBlock(height, seed: 9)) }
        let manifest = try SnapshotCreator.createVerifiedAndRecorded(engine: engine, fileSystem: fileSystem, outputPath: snapshot, nowSeconds: 100)
        for height in 21...25 { _ = try engine.commit(makeBlock(height, seed: 9)) }
        _ = try SnapshotCreator.create(engine: engine, fileSystem: fileSystem, outputPath: "/data/snapshots/unverified", nowSeconds: 200)
        return (fileSystem, manifest)
    }

    @Test func theVerifiedSnapshotIsOfferedWithItsManifestDigest() throws {
        let (fileSystem, manifest) = try Self.offering()
        let offers = try SnapshotOffers.list(fileSystem: fileSystem, dataDirectory: Self.data)
        #expect(offers.map(\.name) == ["snapshot-1"], "only the verified one")
        let bytes = try SnapshotOffers.manifest(fileSystem: fileSystem, dataDirectory: Self.data, name: "snapshot-1")
        #expect(offers.first?.manifestSHA256 == sha256Hex(bytes))
        #expect(offers.first?.height == 20 && offers.first?.metaRoot == manifest.metaRoot && offers.first?.fileCount == manifest.files.count)
        #expect(SnapshotManifest.decode(bytes) == manifest)
    }

    @Test func rangesOfAListedFileReadBackWhole() throws {
        let (fileSystem, manifest) = try Self.offering()
        let file = try #require(manifest.files.max { $0.sizeBytes < $1.sizeBytes })
        var assembled: [UInt8] = []
        // Bounded: the file's size in steps of 100 bytes.
        while UInt64(assembled.count) < file.sizeBytes {
            let range = try SnapshotOffers.fileRange(
                fileSystem: fileSystem, dataDirectory: Self.data, name: "snapshot-1", filePath: file.path, offset: UInt64(assembled.count), count: 100)
            #expect(range.offset == UInt64(assembled.count) && range.fileSizeBytes == file.sizeBytes && !range.bytes.isEmpty)
            assembled += range.bytes
        }
        #expect(sha256Hex(assembled) == file.sha256)
    }

    @Test func whatIsNotOfferedIsRefused() throws {
        let (fileSystem, manifest) = try Self.offering()
        let file = manifest.files[0]
        let refusals: [(String, String, UInt64, SnapshotError.Kind)] = [
            ("unverified", file.path, 0, .notOffered),
            ("no-such", file.path, 0, .notOffered),
            ("../snapshots/snapshot-1", file.path, 0, .notOffered),
            ("snapshot-1", "lanes/lane-0000/../../../GENESIS", 0, .notOffered),
            ("snapshot-1", "/etc/passwd", 0, .notOffered),
            ("snapshot-1", "MANIFEST.json", 0, .notOffered),
            ("snapshot-1", file.path, max(file.sizeBytes, 1), .rangeNotSatisfiable),
        ]
        for (name, path, offset, kind) in refusals {
            do throws(SnapshotError) {
                _ = try SnapshotOffers.fileRange(fileSystem: fileSystem, dataDirectory: Self.data, name: name, filePath: path, offset: offset, count: 10)
                Issue.record("\(name) \(path) at \(offset) was served")
            } catch {
                #expect(error.kind == kind, "\(name) \(path): \(error)")
            }
        }
    }

    /// A listed file replaced on disk by a symbolic link, or by one of another size, is not served.
    @Test func aSymbolicLinkOrAResizedFileIsNotServed() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-offers-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let fileSystem = PosixFileSystem()
        let engine = try Engine(fileSystem: fileSystem, configuration: SnapshotTests.configuration(dataDirectory: root + "/data"), clock: ManualClock())
        for height in 1...5 { _ = try engine.commit(makeBlock(height)) }
        let manifest = try SnapshotCreator.createVerifiedAndRecorded(engine: engine, fileSystem: fileSystem, outputPath: root + "/snap", nowSeconds: 1)
        try engine.close()
        let files = manifest.files.filter { $0.sizeBytes > 0 }
        let linked = root + "/snap/" + files[0].path
        try FileManager.default.moveItem(atPath: linked, toPath: root + "/elsewhere")
        try FileManager.default.createSymbolicLink(atPath: linked, withDestinationPath: root + "/elsewhere")
        let resized = root + "/snap/" + files[1].path
        try fileSystem.writeFileAtomically(resized, bytes: [1, 2, 3])
        for (file, kind) in [(files[0], SnapshotError.Kind.hostile), (files[1], .damaged)] {
            do throws(SnapshotError) {
                _ = try SnapshotOffers.fileRange(fileSystem: fileSystem, dataDirectory: root + "/data", name: "snap", filePath: file.path, offset: 0, count: 10)
                Issue.record("\(file.path) was served")
            } catch {
                #expect(error.kind == kind, "\(file.path): \(error)")
            }
        }
    }
}
