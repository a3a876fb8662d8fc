import PeerSync
import Testing

/// `SyncModePlan`'s decision table: which sync runs first and after each end, per mode and
/// data directory, and that it is bounded.
@Suite("Sync mode plan (decision table)")
struct SyncModePlanTests {
    @Test(arguments: [
        (SyncMode.auto, true, SyncModePlan.Step.stateSync), (.auto, false, .blockSync),
        (.blocks, true, .blockSync), (.blocks, false, .blockSync),
        (.snapshot, true, .stateSync), (.snapshot, false, .stateSync),
    ])
    func theFirstStep(mode: SyncMode, empty: Bool, expected: SyncModePlan.Step) {
        var plan = SyncModePlan(mode: mode, dataDirectoryEmpty: empty)
        #expect(plan.first() == expected)
    }

    @Test func anInstalledSnapshotIsFollowedByBlocks() {
        var plan = SyncModePlan(mode: .auto, dataDirectoryEmpty: true)
        _ = plan.first()
        #expect(plan.stateSyncInstalled() == .blockSync)
        // Installed once: a later "no attested snapshot" is a stop, not blocks from genesis.
        #expect(plan.blockSyncEnded(.needsStateSync) == .stateSync)
        #expect(plan.stateSyncStopped(.noAttestedSnapshot(offered: 0)) == .stop(.stateSync(.noAttestedSnapshot(offered: 0))))
    }

    @Test(arguments: [
        // (mode, empty, stop, expected)
        (SyncMode.auto, true, StateSyncStop.noAttestedSnapshot(offered: 2), SyncModePlan.Step.blockSync),
        (.auto, true, .noQuorumPossible(usable: 1, quorum: 2), .stop(.stateSync(.noQuorumPossible(usable: 1, quorum: 2)))),
        (.snapshot, true, .noAttestedSnapshot(offered: 0), .stop(.stateSync(.noAttestedSnapshot(offered: 0)))),
        (.auto, false, .noAttestedSnapshot(offered: 1), .stop(.stateSync(.noAttestedSnapshot(offered: 1)))),
    ])
    func aStoppedStateSync(mode: SyncMode, empty: Bool, stop: StateSyncStop, expected: SyncModePlan.Step) {
        var plan = SyncModePlan(mode: mode, dataDirectoryEmpty: empty)
        if plan.first() == .blockSync { _ = plan.blockSyncEnded(.needsStateSync) }
        #expect(plan.stateSyncStopped(stop) == expected)
    }

    @Test(arguments: [(SyncMode.auto, true, SyncModePlan.Step.blockSync), (.snapshot, true, .stop(.stateSyncStalled(seconds: 30)))])
    func aStalledStateSync(mode: SyncMode, empty: Bool, expected: SyncModePlan.Step) {
        var plan = SyncModePlan(mode: mode, dataDirectoryEmpty: empty)
        _ = plan.first()
        #expect(plan.stateSyncStalled(seconds: 30) == expected)
    }

    @Test func blocksModeNeverStateSyncs() {
        var plan = SyncModePlan(mode: .blocks, dataDirectoryEmpty: true)
        #expect(plan.first() == .blockSync)
        #expect(plan.blockSyncEnded(.needsStateSync) == .stop(.needsStateSync))
    }

    /// Peers whose retention outruns every snapshot: state sync, blocks, state sync, blocks, stop.
    @Test func theRoundsAreBounded() {
        var plan = SyncModePlan(mode: .auto, dataDirectoryEmpty: false)
        var step = plan.first()
        var steps = [step]
        // Bounded: the plan stops within a few steps; 10 is far past it.
        for _ in 0..<10 {
            switch step {
            case .blockSync: step = plan.blockSyncEnded(.needsStateSync)
            case .stateSync: step = plan.stateSyncInstalled()
            case .stop: break
            }
            steps.append(step)
            if case .stop = step { break }
        }
        #expect(steps == [.blockSync, .stateSync, .blockSync, .stateSync, .blockSync, .stop(.needsStateSync)])
        #expect(plan.stateSyncRounds == SyncModePlan.stateSyncRoundsMax)
    }
}
