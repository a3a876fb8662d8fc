import Documents
import Engine
import FaultFS
import TOMLKit

/// A named, documented crash-and-fault case with its expected outcome, read from
/// `scenarios/*.toml` (strict decoding: an unknown key is an error).
///
/// ```toml
/// name = "torn-tail"
/// description = "Power loss while a block's records are half written."
/// fault = "torn_tail"
/// expect = "converges"          # or "refuses"
/// expect_error = "mid_log"      # with "refuses": an EngineError kind or a WAL damage class
/// lanes = 4                     # optional, default 4
/// fsync_policy = "strict"       # optional: strict | balanced | dev_fast
/// blocks = 30                   # blocks committed before the fault, default 30
/// segment_size_bytes = 4096     # optional, default 4096 (forces segment rolls)
/// seed = 1                      # optional, default 1
/// expect_probes = ["wal.torn_tail_dropped"]   # optional: probes the run must hit
/// ```
///
/// A sync case (`fault = "peer_altered_operation"`, see `SyncScenarioFault`) runs several
/// nodes over the simulated network instead; `followers` (1...3) applies to it, and a refusal
/// is the catching-up node's stop: `fork`, `needs_state_sync` or `no_quorum_possible`.
public struct Scenario: Decodable, Sendable {
    /// The fault a scenario injects after its blocks are committed.
    public enum Fault: String, Decodable, Sendable, CaseIterable {
        /// None: close and reopen.
        case cleanRestart = "clean_restart"
        /// Power loss while the next block's records are being written, with torn sectors.
        case tornTail = "torn_tail"
        /// One bit flipped in an acknowledged record in the middle of a lane's log.
        case bitRotMidLog = "bit_rot_mid_log"
        /// One acknowledged WAL write lands at the wrong offset, then more blocks, then power loss.
        case misdirectedWrite = "misdirected_write"
        /// The next block's fdatasync fails with pages marked clean; then power loss.
        case fsyncErrorPagesMarkedClean = "fsync_eio_pages_marked_clean"
        /// The device fills up while more blocks (and segment rolls) are written.
        case noSpaceDuringRoll = "enospc_during_segment_roll"
        /// Power loss with every unsynced directory change lost, while segments roll.
        case directoryEntryLostOnRoll = "directory_entry_lost_on_roll"
        /// Power loss, then a crash at every operation of recovery in turn until it completes.
        case crashDuringRecovery = "crash_during_recovery"
        /// Power loss under balanced with acknowledged blocks still inside the sync window.
        case powerLossInBalancedWindow = "power_loss_in_balanced_window"
        /// The lanes were flushed but the meta log that commits them is gone.
        case metaLogLost = "meta_log_lost"
        /// The data directory is opened with another lane count.
        case genesisMismatch = "genesis_mismatch"
        /// The header of a lane's last segment is zeroed on the media after records were
        /// written to it (a misdirected write landed there, or rot).
        case segmentHeaderLost = "segment_header_lost"
        /// One bit flipped in a lane's last record, after a later block (touching other lanes
        /// only) whose commit record names it durable.
        case rotInWitnessedLastRecord = "rot_in_witnessed_last_record"
        /// A snapshot is created (and catalogued), a few more blocks committed, then power is lost
        /// with every unsynced directory change and write lost: the snapshot must still exist
        /// and verify (I6).
        case powerLossAfterSnapshot = "power_loss_after_snapshot"
        /// Lane 1's directory is replaced by lane 1 of a snapshot of this chain taken ten blocks
        /// earlier (an operator restoring one lane); the log brings it forward.
        case laneFromOlderSnapshot = "lane_from_older_snapshot"
        /// Lane 1's directory is replaced by lane 1 of another chain's snapshot: refused at start,
        /// naming the lane.
        case laneFromOtherChain = "lane_from_other_chain"
    }

    /// What `fault` names: an engine fault (one engine, one file system) or a sync case
    /// (several nodes over the simulated network, `SyncSwarmWorkload`).
    public enum Case: Decodable, Sendable, Equatable {
        case engine(Fault)
        case sync(SyncScenarioFault)

        var isEngine: Bool {
            if case .engine = self { return true }
            return false
        }

        public init(from decoder: any Decoder) throws {
            let name = try decoder.singleValueContainer().decode(String.self)
            if let fault = Fault(rawValue: name) {
                self = .engine(fault)
            } else if let fault = SyncScenarioFault(rawValue: name) {
                self = .sync(fault)
            } else {
                let known = Fault.allCases.map(\.rawValue) + SyncScenarioFault.allCases.map(\.rawValue)
                throw ScenarioError(path: "fault", message: "unknown fault \(quoted(name)); known: \(known.joined(separator: ", "))")
            }
        }
    }

    public enum Expectation: String, Decodable, Sendable {
        case converges
        case refuses
    }

    public var name: String
    public var description: String
    public var fault: Case
    public var expect: Expectation
    public var expectError: String?
    /// With "refuses": the lane the refusal must name (an engine fault's error carries it).
    public var expectLane: Int?
    public var lanes: Int?
    public var fsyncPolicy: FsyncPolicy?
    public var blocks: Int?
    /// Decoded as Int (TOMLKit traps on a negative value decoded into an unsigned type);
    /// `validate` range-checks it.
    public var segmentSizeBytes: Int?
    public var seed: Int?
    /// Sync cases only: how many followers the primary has (1...3; drawn when absent).
    public var followers: Int?
    /// Probes (`Probe` names) the run must hit: the branch the scenario is about was taken.
    public var expectProbes: [String]?

    enum CodingKeys: String, CodingKey {
        case name, description, fault, expect, lanes, blocks, seed, followers
        case expectProbes = "expect_probes"
        case expectError = "expect_error"
        case expectLane = "expect_lane"
        case fsyncPolicy = "fsync_policy"
        case segmentSizeBytes = "segment_size_bytes"
    }

    /// Decodes a scenario file; unknown keys and bad values are errors that name the file.
    public static func load(path: String, text: String) throws -> Scenario {
        do {
            let scenario = try TOMLDecoder(strictDecoding: true).decode(Scenario.self, from: text)
            try scenario.validate()
            return scenario
        } catch let error as ScenarioError {
            throw error
        } catch let error as UnexpectedKeysError {
            throw ScenarioError(path: path, message: "unknown key(s): \(error.keys.keys.sorted().joined(separator: ", "))")
        } catch {
            throw ScenarioError(path: path, message: "\(error)")
        }
    }

    func validate() throws {
        if let lanes, !(1...64).contains(lanes) { throw ScenarioError(path: name, message: "lanes must be in 1...64") }
        if let blocks, !(1...10_000).contains(blocks) { throw ScenarioError(path: name, message: "blocks must be in 1...10000") }
        if let seed, seed < 0 { throw ScenarioError(path: name, message: "seed must not be negative") }
        if let segmentSizeBytes, !(128...(1 << 30)).contains(segmentSizeBytes) {
            throw ScenarioError(path: name, message: "segment_size_bytes must be in 128...1073741824")
        }
        if let followers, !(1...3).contains(followers) { throw ScenarioError(path: name, message: "followers must be in 1...3") }
        if let unknown = (expectProbes ?? []).first(where: { Probe(rawValue: $0) == nil }) {
            throw ScenarioError(path: name, message: "expect_probes: no probe named \(quoted(unknown))")
        }
        switch fault {
        case .engine:
            if followers != nil { throw ScenarioError(path: name, message: "followers applies to sync faults only") }
        case .sync:
            if fsyncPolicy != nil || segmentSizeBytes != nil {
                throw ScenarioError(path: name, message: "fsync_policy and segment_size_bytes apply to engine faults only (every sync node is strict)")
            }
            if let lanes, lanes > 4 { throw ScenarioError(path: name, message: "a sync scenario has 1...4 lanes") }
        }
        if expectLane != nil && (expect != .refuses || !fault.isEngine) {
            throw ScenarioError(path: name, message: "expect_lane applies to refusing engine scenarios only")
        }
        if expect == .refuses && (expectError ?? "").isEmpty {
            throw ScenarioError(path: name, message: "a refusing scenario needs expect_error")
        }
    }
}

public struct ScenarioError: Error, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// What a scenario run ended in.
public struct ScenarioOutcome: Sendable {
    public var scenario: String
    /// `nil` when the outcome matched the expectation.
    public var failure: String?
    /// What happened, for the report: "converged at height 30" or "refused: …".
    public var summary: String
    public var fileSystemOperations: UInt64
}
