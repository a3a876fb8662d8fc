import Engine
import FaultFS
import Node

#if canImport(Glibc)
import Glibc
#endif

/// Text and JSON renderings of the offline tools' results.
enum StatusFormatter {
    static func json(_ status: DataDirectoryStatus) -> String {
        let lanes = status.lanes.map {
            "{\"lane\":\($0.lane),\"applied_height\":\($0.appliedHeight),\"applied_lsn\":\($0.appliedLSN),\"lane_root\":\"\($0.laneRoot.hex)\"}"
        }
        let wal = status.wal.sorted { $0.partition < $1.partition }.map {
            "{\"partition\":\(jsonString(partitionName($0.partition))),\"first_lsn\":\($0.firstLSN),\"last_lsn\":\($0.lastLSN),"
                + "\"segments\":\($0.segments.count),\"bytes\":\($0.segments.reduce(0) { $0 + $1.sizeBytes }),"
                + "\"verdict\":\($0.verdict.map { jsonString($0.rawValue) } ?? "null")}"
        }
        return "{\"data_dir\":\(jsonString(status.dataDirectory)),\"wal_dir\":\(jsonString(status.walDirectory)),"
            + "\"chain_id\":\(jsonString(status.chainID)),\"lanes\":\(status.laneCount),\"log_height\":\(status.logHeight),"
            + "\"log_meta_root\":\(status.logMetaRoot.map { "\"\($0.hex)\"" } ?? "null"),"
            + "\"lane_status\":[\(lanes.joined(separator: ","))],\"wal\":[\(wal.joined(separator: ","))]}"
    }

    static func table(_ status: DataDirectoryStatus) -> String {
        var lines = [
            "data dir     \(status.dataDirectory)",
            "chain id     \(status.chainID)",
            "lanes        \(status.laneCount)",
            "log height   \(status.logHeight)" + (status.logMetaRoot.map { "  meta_root \($0.hex)" } ?? ""),
            "",
            pad(["lane", "applied height", "applied LSN", "lane root"], [6, 16, 13, 0]),
        ]
        for lane in status.lanes {
            lines.append(pad(["\(lane.lane)", "\(lane.appliedHeight)", "\(lane.appliedLSN)", lane.laneRoot.hex], [6, 16, 13, 0]))
        }
        lines.append("")
        lines.append(pad(["partition", "first LSN", "last LSN", "segments", "bytes", "damage"], [11, 12, 12, 10, 14, 0]))
        for report in status.wal.sorted(by: { $0.partition < $1.partition }) {
            lines.append(
                pad(
                    [
                        partitionName(report.partition), "\(report.firstLSN)", "\(report.lastLSN)", "\(report.segments.count)",
                        "\(report.segments.reduce(0) { $0 + $1.sizeBytes })", report.verdict?.rawValue ?? "none",
                    ], [11, 12, 12, 10, 14, 0]))
        }
        return lines.joined(separator: "\n")
    }
}

enum WALInspectFormatter {
    static func json(_ report: WALPartitionVerifyReport, records: [WALRecordSummary]) -> String {
        let segments = report.segments.map {
            "{\"index\":\($0.index),\"path\":\(jsonString($0.path)),\"first_lsn\":\($0.firstLSN),\"last_lsn\":\($0.lastLSN),"
                + "\"bytes\":\($0.sizeBytes),\"created_at\":\($0.createdAtSeconds)}"
        }
        let listed = records.map { record in
            var fields = ["\"lsn\":\(record.lsn)", "\"type\":\(record.recordType)", "\"bytes\":\(record.payloadBytes)"]
            if let height = record.height { fields.append("\"height\":\(height)") }
            if let count = record.operationCount { fields.append("\"op_count\":\(count)") }
            if let root = record.metaRoot { fields.append("\"meta_root\":\"\(root.hex)\"") }
            return "{" + fields.joined(separator: ",") + "}"
        }
        return "{\"partition\":\(jsonString(partitionName(report.partition))),\"first_lsn\":\(report.firstLSN),"
            + "\"last_lsn\":\(report.lastLSN),\"records\":\(report.records),"
            + "\"verdict\":\(report.verdict.map { jsonString($0.rawValue) } ?? "null"),"
            + "\"segments\":[\(segments.joined(separator: ","))],\"listed_records\":[\(listed.joined(separator: ","))]}"
    }

    static func table(_ report: WALPartitionVerifyReport, records: [WALRecordSummary]) -> String {
        var lines = [
            "\(report.partition): LSN \(report.firstLSN)...\(report.lastLSN), \(report.records) record(s)"
                + (report.verdict.map { ", \($0.rawValue)" } ?? ""),
            pad(["  segment", "first LSN", "last LSN", "bytes", "created (unix s)"], [18, 12, 12, 14, 0]),
        ]
        for segment in report.segments {
            lines.append(
                pad(
                    ["  \(segment.index)", "\(segment.firstLSN)", "\(segment.lastLSN)", "\(segment.sizeBytes)", "\(segment.createdAtSeconds)"],
                    [18, 12, 12, 14, 0]))
        }
        if !records.isEmpty {
            lines.append(pad(["  LSN", "type", "bytes", "height", "ops", "meta_root"], [12, 6, 10, 10, 8, 0]))
            for record in records {
                lines.append(
                    pad(
                        [
                            "  \(record.lsn)", "\(record.recordType)", "\(record.payloadBytes)", record.height.map { "\($0)" } ?? "-",
                            record.operationCount.map { "\($0)" } ?? "-", record.metaRoot.map { String($0.hex.prefix(16)) } ?? "",
                        ], [12, 6, 10, 10, 8, 0]))
            }
        }
        return lines.joined(separator: "\n")
    }
}

func partitionName(_ partition: WALPartitionID) -> String {
    partition.isMeta ? "meta" : "lane-\(partition.rawValue)"
}

/// Left-aligns `cells` in columns of `widths` (0: no padding).
func pad(_ cells: [String], _ widths: [Int]) -> String {
    zip(cells, widths).map { cell, width in
        width == 0 ? cell : cell + String(repeating: " ", count: max(1, width - cell.count))
    }.joined()
}

func printError(_ text: String, newline: Bool = true) {
    let bytes = Array((text + (newline ? "\n" : "")).utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
