/// What an oracle found wrong: the invariant (`docs/RULES.md`), what the model required, and
/// what the system under test gave. Reported as `I1: expected …; found …`.
public struct OracleViolation: Error, Sendable, Equatable, CustomStringConvertible {
    /// The invariants of `docs/RULES.md`, and one more for the harness's own expectation.
    public enum Invariant: String, Sendable, CaseIterable {
        /// Durability: an acknowledged block (record) survives every crash.
        case durability = "I1"
        /// Prefix, no holes: the recovered state is the model's at exactly one written height.
        case prefix = "I2"
        /// MetaRoot convergence: the recovered roots equal the model's, recomputed from scratch.
        case metaRoot = "I3"
        /// Never silently diverge: a refusal only where corruption at rest was injected.
        case neverSilentlyDiverge = "I4"
        /// Idempotent, crash-safe recovery: recovery after a crash in recovery succeeds the same.
        case recovery = "I5"
        /// Snapshot consistency: a snapshot restores exactly the state at its height.
        case snapshot = "I6"
        /// Determinism: a seed's run gives the same trace every time.
        case determinism = "I7"
        /// Sync convergence: honest nodes hold the primary's roots at every height they reach,
        /// apply nothing it did not commit, and converge once the network heals.
        case syncConvergence = "I8"
        /// With faults switched off, an operation the contract says succeeds failed or answered wrong.
        case faultFreeOperation = "OP"
    }

    public let invariant: Invariant
    public let expected: String
    public let found: String

    public init(_ invariant: Invariant, expected: String, found: String) {
        self.invariant = invariant
        self.expected = expected
        self.found = found
    }

    public var description: String { "\(invariant.rawValue): expected \(expected); found \(found)" }
}
