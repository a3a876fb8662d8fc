import Engine
import FaultFS

/// A short workload the exhaustive mode crashes at every file-system operation of: it runs
/// until the machine halts (`run`), recovers (`recover`, which may itself be crashed), and
/// checks a recovered image against what it had been told (`check`).
protocol ExhaustiveCrashWorkload {
    /// What the workload was told before the crash: acknowledged and written counts, say.
    associatedtype Progress

    /// Power loss for a policy that promises durability; a process crash for one that does not.
    var crashKind: CrashKind { get }
    /// The persisted-subset variants to build post-crash images with.
    var variants: [(name: String, plan: FaultPlan)] { get }
    /// Names the workload in failure messages ("strict").
    var label: String { get }

    /// Runs the workload until the file system halts (or to its end); never throws.
    func run(_ fileSystem: SimulatedFileSystem) -> Progress
    /// One recovery, whose result is not checked (it may be crashed part way). `thenClose`:
    /// close cleanly afterwards (the crash-free reference run) rather than let go.
    func recover(_ fileSystem: SimulatedFileSystem, thenClose: Bool)
    /// Recovers and checks the image; `nil` when it holds what `progress` requires.
    func check(_ fileSystem: SimulatedFileSystem, after progress: Progress) -> OracleViolation?
    /// Checks the crash-free reference run; `nil` when it ran to the end.
    func checkReference(_ progress: Progress) -> String?
}

/// The one crash-point × variant loop: for every operation of the workload's crash-free run,
/// and every variant, crash there, build the post-crash image under the variant, crash the
/// first recovery at a rotating operation (so every operation of recovery is hit across the
/// points), and check what a second recovery finds.
struct CrashPointExplorer {
    /// Failures are listed up to this many; the loop stops collecting after it.
    static let failuresMax = 20

    static func explore<Workload: ExhaustiveCrashWorkload>(_ workload: Workload) -> ExhaustiveCrashRunner.Report {
        let reference = SimulatedFileSystem(seed: 0, plan: .none, traceEventsMax: 0)
        let full = workload.run(reference)
        let operations = reference.operationCount
        var report = ExhaustiveCrashRunner.Report(operations: operations, imagesChecked: 0, failures: [])
        if let problem = workload.checkReference(full) {
            report.failures.append(problem)
            return report
        }
        // The operations one recovery of the full run takes bound the rotating recovery crash.
        let recoveryStart = reference.operationCount
        workload.recover(reference, thenClose: true)
        let recoveryOperations = max(1, reference.operationCount - recoveryStart)
        var rotation: UInt64 = 0
        // Bounded: operations × variants images.
        for crashPoint in 1...operations {
            for (variantIndex, variant) in workload.variants.enumerated() where report.failures.count < failuresMax {
                rotation += 1
                let image = SimulatedFileSystem(seed: crashPoint &* 31 &+ UInt64(variantIndex), plan: .none, traceEventsMax: 0)
                image.scheduleCrash(atOperation: crashPoint)
                let progress = workload.run(image)
                image.setPlan(variant.plan)
                image.crash(workload.crashKind)
                image.scheduleCrash(atOperation: image.operationCount + 1 + rotation % recoveryOperations)
                workload.recover(image, thenClose: false)
                image.scheduleCrash(atOperation: nil)
                image.crash(workload.crashKind)
                image.setPlan(.none)
                report.imagesChecked += 1
                if let problem = workload.check(image, after: progress) {
                    report.failures.append("\(workload.label) crash at operation \(crashPoint), \(variant.name): \(problem)")
                }
            }
        }
        return report
    }
}
