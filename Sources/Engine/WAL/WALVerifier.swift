import FaultFS

/// What `WALVerifier` found in one partition.
public struct WALPartitionVerifyReport: Sendable {
    public struct Segment: Sendable, Equatable {
        public var path: String
        public var index: UInt64
        public var firstLSN: LSN
        public var lastLSN: LSN
        public var sizeBytes: UInt64
        public var createdAtSeconds: UInt64
    }

    public var partition: WALPartitionID
    public var segments: [Segment]
    public var firstLSN: LSN
    public var lastLSN: LSN
    public var records: UInt64
    /// The first damage with its verdict, then (scanning on as salvage does) any further damage.
    public var damage: [WALDamage]
    public var verdict: WALDamageVerdict?
    public var evidence: String

    /// The bytes of all the partition's segments.
    public var totalBytes: UInt64 { segments.reduce(0) { $0 + $1.sizeBytes } }
}

/// Scans every partition of a log directory read-only and reports ranges and damage.
public enum WALVerifier {
    public static func verify(fileSystem: any FileSystem, directory: String) throws(WALError) -> [WALPartitionVerifyReport] {
        let names: [String]
        do {
            names = try fileSystem.listDirectory(directory)
        } catch {
            throw WALError.io(error, partition: .meta, "listing \(directory)")
        }
        var reports: [WALPartitionVerifyReport] = []
        for name in names {
            let partition: WALPartitionID
            if name == "meta" {
                partition = .meta
            } else if name.hasPrefix("lane-"), let lane = UInt32(name.dropFirst(5)) {
                partition = WALPartitionID(rawValue: lane)
            } else {
                continue
            }
            let scanner = WALScanner(fileSystem: fileSystem, directory: PathComponents.join(directory, name), partition: partition)
            let strictScan: WALPartitionScan
            let salvageScan: WALPartitionScan
            do {
                strictScan = try scanner.scan(mode: .tolerateTornTail)
                salvageScan = try scanner.scan(mode: .salvage)
            } catch let error as WALError {
                throw error
            } catch {
                preconditionFailure("the verifier's visitor does not throw: \(error)")
            }
            var damage = strictScan.damage.map { [$0] } ?? []
            damage += salvageScan.skipped.filter { $0 != strictScan.damage }
            let segments = salvageScan.segments.map { segment in
                WALPartitionVerifyReport.Segment(
                    path: segment.path, index: segment.index, firstLSN: segment.header?.firstLSN ?? 0,
                    lastLSN: segment.lastLSN, sizeBytes: segment.sizeBytes,
                    createdAtSeconds: segment.header?.createdAtSeconds ?? 0)
            }
            reports.append(
                WALPartitionVerifyReport(
                    partition: partition, segments: segments, firstLSN: strictScan.firstLSN, lastLSN: strictScan.lastLSN,
                    records: strictScan.recordsRead, damage: damage, verdict: strictScan.verdict,
                    evidence: strictScan.evidence))
        }
        return reports
    }
}
