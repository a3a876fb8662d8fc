import FaultFS
import Foundation

/// Why a snapshot operation refused or failed, with the path and what to do.
public struct SnapshotError: Error, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// A file, the manifest or a root does not match: the snapshot is damaged or tampered.
        case damaged
        /// Paths escaping the snapshot, symbolic links, size bombs, unexpected files.
        case hostile
        /// Not a complete snapshot (partial, or no completion marker).
        case incomplete
        /// Another chain's (or lane count's) snapshot.
        case wrongChain = "wrong_chain"
        /// A node holds the data directory.
        case locked
        /// The target already exists.
        case exists
        /// The WAL cannot continue from the snapshot (a gap or another history).
        case walGap = "wal_gap"
        /// The snapshot or the data directory could not be read or written.
        case io
        /// The engine could not checkpoint.
        case engine
        /// Nothing to do or a bad request (unknown snapshot, bad arguments).
        case invalid
        /// A peer asked for a snapshot or file this node does not offer (`SnapshotOffers`).
        case notOffered = "not_offered"
        /// A peer asked for a byte range outside the file, or not one range.
        case rangeNotSatisfiable = "range_not_satisfiable"
        /// A peer asked for a whole file larger than one answer holds, without a range.
        case rangeRequired = "range_required"
    }

    public var kind: Kind
    public var path: String
    public var message: String

    public init(_ kind: Kind, path: String, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    /// A snapshot lane's RocksDB failing while it is opened or read: corruption RocksDB found is
    /// damage; an I/O failure (EIO, a full disk) is `io`, which a retry may clear — the
    /// snapshot is not called damaged for it.
    init(laneFailure error: EngineError, path: String, _ message: String) {
        self.init(error.kind == .storage ? .io : .damaged, path: path, message)
    }

    public var description: String { "\(kind.rawValue): \(path): \(message)" }
}

extension SnapshotError {
    /// Whether the snapshot itself was refused (damaged, hostile, incomplete, of another chain,
    /// or leaving a gap to the log), as opposed to a local failure (I/O, a lock, the engine):
    /// a state sync refuses such a snapshot and chooses another.
    public var refusesTheSnapshot: Bool {
        switch kind {
        case .damaged, .hostile, .incomplete, .wrongChain, .walGap: true
        default: false
        }
    }
}
