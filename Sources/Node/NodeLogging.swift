import Documents
import Foundation
import Logging
import Synchronization

/// The node's log output: one line per event on standard error, as JSON objects (`json`, for
/// log shippers) or as readable text (`pretty`). Labels name the component: `rivellum_node`,
/// `rivellum_wal`, `rivellum_api`, `rivellum_snapshot`.
public struct NodeLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let format: NodeConfiguration.LoggingSection.Format

    public init(label: String, level: Logger.Level, format: NodeConfiguration.LoggingSection.Format) {
        self.label = label
        self.logLevel = level
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let timestamp = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        var line: String
        switch format {
        case .json:
            // The event's own fields win over metadata of the same name.
            let fields = merged.mapValues(\.description).merging(
                ["ts": timestamp, "level": event.level.rawValue, "target": label, "msg": event.message.description]) { $1 }
            line = JSONDocument.encode(fields)
        case .pretty:
            line = "\(timestamp) \(event.level.rawValue.uppercased()) \(label): \(event.message)"
            if !merged.isEmpty {
                line += " " + merged.sorted(by: { $0.key < $1.key }).map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            }
        }
        line += "\n"
        Self.output.withLock { _ in
            let bytes = Array(line.utf8)
            var written = 0
            // Bounded by the line's length: every round writes at least one byte or stops.
            while written < bytes.count {
                let result = bytes[written...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
                if result <= 0 { break }
                written += result
            }
        }
    }

    /// Serialises lines from concurrent loggers.
    private static let output = Mutex<Void>(())

    /// Installs the handler for every logger of the process (call once, at startup).
    public static func bootstrap(level: String, format: NodeConfiguration.LoggingSection.Format) {
        let parsed = Logger.Level(rawValue: level) ?? .info
        LoggingSystem.bootstrap { label in NodeLogHandler(label: label, level: parsed, format: format) }
    }
}
