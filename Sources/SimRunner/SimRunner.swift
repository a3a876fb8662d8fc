import FaultFS

/// The outcome of one simulated seed.
public struct SeedResult: Sendable {
    public var seed: UInt64
    /// `nil` when every invariant held; otherwise what broke, with expected and actual values.
    public var failure: String?
    public var traceHash: UInt64
    public var fileSystemOperations: UInt64
    public var crashes: Int
    public var knobs: String
}

/// Totals over a sweep of seeds.
public struct SweepSummary: Sendable {
    public var seedsRun = 0
    public var failures: [SeedResult] = []
    public var fileSystemOperations: UInt64 = 0
    public var crashes = 0

    public init() {}
}
