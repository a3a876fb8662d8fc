import Foundation

/// One load phase of one policy, as the JSON results carry it.
struct LoadRecord: Codable, Sendable {
    var policy: String
    var writers: Int
    var seconds: Double
    var slow: Int
    /// "alone" or "with_slow".
    var phase: String
    var blocksPerSecond: Double
    var p50Milliseconds: Double
    var p99Milliseconds: Double
    var maxMilliseconds: Double
    var errors: Int

    enum CodingKeys: String, CodingKey {
        case policy, writers, seconds, slow, phase, errors
        case blocksPerSecond = "blocks_per_second"
        case p50Milliseconds = "p50_ms"
        case p99Milliseconds = "p99_ms"
        case maxMilliseconds = "max_ms"
    }
}

/// The node process's memory and descriptors at the three moments of one policy's run.
struct ResourceRecord: Codable, Sendable {
    var policy: String
    var beforeRSSKiB: Int
    var duringRSSKiB: Int
    var afterRSSKiB: Int
    var beforeFDs: Int
    var duringFDs: Int
    var afterFDs: Int

    init(policy: String, before: ResourceSample, during: ResourceSample, after: ResourceSample) {
        self.policy = policy
        beforeRSSKiB = before.rssKiB
        duringRSSKiB = during.rssKiB
        afterRSSKiB = after.rssKiB
        beforeFDs = before.descriptors
        duringFDs = during.descriptors
        afterFDs = after.descriptors
    }

    enum CodingKeys: String, CodingKey {
        case policy
        case beforeRSSKiB = "before_rss_kib"
        case duringRSSKiB = "during_rss_kib"
        case afterRSSKiB = "after_rss_kib"
        case beforeFDs = "before_fds"
        case duringFDs = "during_fds"
        case afterFDs = "after_fds"
    }
}

/// The whole run, as written by `--json-out`.
struct LoadTestResults: Codable, Sendable {
    var date: String
    var commit: String
    var load: [LoadRecord] = []
    var resources: [ResourceRecord] = []

    func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
    }
}

/// The printed tables.
enum Table {
    static func number(_ value: Double, width: Int, decimals: Int = 2) -> String {
        pad(String(format: "%.\(decimals)f", value), width)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    static func padRight(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }

    static let loadHeader = "  " + padRight("phase", 10) + pad("blocks/s", 10) + pad("p50 ms", 10) + pad("p99 ms", 10) + pad("max ms", 10)
        + pad("errors", 8) + pad("commits", 9)

    static func loadLine(_ phase: String, _ figures: PhaseFigures) -> String {
        "  " + padRight(phase, 10) + number(figures.blocksPerSecond, width: 10, decimals: 1) + number(figures.p50Milliseconds, width: 10)
            + number(figures.p99Milliseconds, width: 10) + number(figures.maxMilliseconds, width: 10) + pad(String(figures.errors), 8)
            + pad(String(figures.commits), 9)
    }

    static let resourceHeader = "  " + padRight("node", 10) + pad("RSS KiB", 10) + pad("fds", 10)

    static func resourceLine(_ moment: String, _ sample: ResourceSample) -> String {
        "  " + padRight(moment, 10) + pad(String(sample.rssKiB), 10) + pad(String(sample.descriptors), 10)
    }

    /// "1.23" or "n/a" when there is no baseline.
    static func ratio(_ value: Double, over baseline: Double) -> String {
        baseline > 0 ? String(format: "%.2f", value / baseline) : "n/a"
    }
}
