import FaultFS

/// A workload that checks the file-system layer's own durability contract under a swarm fault
/// plan: records appended to a log file and acknowledged only after a successful `sync` must all
/// survive any number of power losses, in order, byte for byte.
///
/// Faults that corrupt data already synced (bit rot, misdirected I/O) are left out of this
/// workload's plans: detecting those is the WAL's job, not the file system's.
public struct FileSystemDurabilityWorkload: SeedWorkload {
    public let seed: UInt64
    /// Its trace sink (the file system takes no shrinking knobs or mutations).
    public var controls: SeedControls
    public let rounds: Int

    public init(seed: UInt64, length rounds: Int = WorkloadKind.fs.defaultLength, controls: SeedControls = SeedControls()) {
        precondition(rounds > 0)
        self.seed = seed
        self.rounds = rounds
        self.controls = controls
    }

    static let corruptingFamilies: Set<FaultFamily> = [
        .bitRotAtRest, .bitRotOnRead, .misdirectedReads, .misdirectedWrites,
    ]

    public func run() -> SeedResult {
        var random = DeterministicRandom(seed: seed)
        var plan = FaultPlan.swarm(random: &random)
        for family in Self.corruptingFamilies { plan.rates[family] = nil }
        let fileSystem = SimulatedFileSystem(seed: random.next(), plan: plan, traceEventsMax: 0)
        fileSystem.setTraceSink(controls.traceSink)
        let path = "/log"
        var acknowledged: [UInt8] = []
        var crashes = 0
        var handle: (any FileHandle)?
        var failure: OracleViolation?
        for round in 0..<rounds where failure == nil {
            if random.chance(0.05) {
                fileSystem.crash(.powerLoss)
                crashes += 1
                handle = nil
                failure = checkAcknowledgedPrefix(fileSystem, path: path, acknowledged: acknowledged)
                continue
            }
            do {
                if handle == nil {
                    let created = try fileSystem.openFile(path, options: .createOrOpen)
                    try fileSystem.syncDirectory("/")
                    // Start appending after what survived; an unsynced tail may be partial.
                    try created.truncate(to: UInt64(acknowledged.count))
                    try created.sync()
                    handle = created
                }
                let record = (0..<random.int(in: 1...1_500)).map { UInt8(truncatingIfNeeded: $0 &+ round) }
                try handle!.append(record)
                try handle!.sync()
                acknowledged += record
            } catch let error where error.code == .syncFailed || error.injected || error.code == .noSpace {
                // A failed sync is fatal to the in-memory view: drop the handle and reopen after
                // a crash, exactly as the engine will.
                fileSystem.crash(.powerLoss)
                crashes += 1
                handle = nil
                failure = checkAcknowledgedPrefix(fileSystem, path: path, acknowledged: acknowledged)
            } catch {
                failure = OracleViolation(.faultFreeOperation, expected: "no error but the injected ones", found: "\(error)")
            }
        }
        return SeedResult(
            fileSystem: fileSystem, seed: seed, failure: failure, crashes: crashes, knobs: "workload=fs-durability rounds=\(rounds) plan: \(plan)")
    }

    private func checkAcknowledgedPrefix(_ fileSystem: SimulatedFileSystem, path: String, acknowledged: [UInt8]) -> OracleViolation? {
        fileSystem.setFaultsEnabled(false)
        defer { fileSystem.setFaultsEnabled(true) }
        let bytes: [UInt8]
        do {
            guard try fileSystem.exists(path) else {
                return acknowledged.isEmpty
                    ? nil : OracleViolation(.durability, expected: "\(acknowledged.count) acknowledged bytes", found: "no log file after power loss")
            }
            bytes = try fileSystem.readFile(path)
        } catch {
            return OracleViolation(.faultFreeOperation, expected: "a read after the crash with faults off", found: "\(error)")
        }
        guard bytes.count >= acknowledged.count else {
            return OracleViolation(.durability, expected: "at least \(acknowledged.count) acknowledged bytes", found: "\(bytes.count)")
        }
        guard bytes[..<acknowledged.count].elementsEqual(acknowledged) else {
            let firstDifference = acknowledged.indices.first { bytes[$0] != acknowledged[$0] } ?? 0
            return OracleViolation(.durability, expected: "the acknowledged bytes", found: "a difference at offset \(firstDifference)")
        }
        return nil
    }
}
