import Engine
import FaultFS
import Node

#if canImport(Glibc)
import Glibc
#endif

/// Text renderings of the offline tools' results (their JSON is in `OutputDocuments.swift`).
enum StatusFormatter {
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
                        report.partition.name, "\(report.firstLSN)", "\(report.lastLSN)", "\(report.segments.count)",
                        "\(report.totalBytes)", report.verdict?.rawValue ?? "none",
                    ], [11, 12, 12, 10, 14, 0]))
        }
        return lines.joined(separator: "\n")
    }
}

enum WALInspectFormatter {
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

/// Left-aligns `cells` in columns of `widths` (0: no padding).
func pad(_ cells: [String], _ widths: [Int]) -> String {
    zip(cells, widths).map { cell, width in
        width == 0 ? cell : cell + String(repeating: " ", count: max(1, width - cell.count))
    }.joined()
}

