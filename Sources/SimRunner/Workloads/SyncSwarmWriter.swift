import Engine
import FaultFS
import PeerSync

/// A writer that comes back behind its peers (`SyncSwarmSetup.writerLosesTail`): once a quorum
/// of its followers hold the primary's newest block, rot strikes the last record of the primary's meta
/// log, so recovery drops that acknowledged block as a torn tail. The primary restarts with its
/// followers as peers; `WriterGate`, the rule the node's driver follows, keeps it from taking a
/// new block until it has the lost one back from them. A new block at that height with other
/// contents would be a fork, which the followers and the oracle both catch.
extension SyncSwarmRun {
    /// Half the blocks are in and the tail is still to be lost: the primary pauses its commits
    /// until its followers hold its newest block.
    var isWriterTailDue: Bool { setup.writerLosesTail && !writerTailLost && !healed && model.height * 2 >= workload.blocks }

    /// A quorum of the followers (a majority: the primary's quorum of them) hold the primary's
    /// newest block; with three, one may not, and the primary must not take its height anew.
    var followersHoldTheTip: Bool {
        let holding = (1...setup.followers).filter { follower in
            nodes[follower].engine.map { Int($0.stateRoots().height) == model.height } ?? false
        }
        return holding.count >= setup.followers / 2 + 1
    }

    /// Crashes the primary, rots its meta log's last record, and recovers it one block behind,
    /// with its followers as peers and its writes shut until it has caught up.
    func loseWriterTail() {
        writerTailLost = true
        let fileSystem = nodes[0].fileSystem
        crashMachine(fileSystem, engine: &nodes[0].engine, .processCrash)
        let walDirectory = nodes[0].configuration.layout.wal
        do {
            let path = try WALDamage.rotLastFrame(fileSystem: fileSystem, walDirectory: walDirectory, partition: .meta)
            record(0, "sim.rot", "the last record of \(path) (block \(model.height), which a quorum of followers hold)")
        } catch {
            failure = OracleViolation(.faultFreeOperation, expected: "the primary's meta log (no faults) can be damaged", found: "\(error)")
            return
        }
        // The rot excuses exactly the one block whose record it struck.
        nodes[0].durableHeight = UInt64(model.height - 1)
        nodes[0].peers = Array(1...setup.followers)
        writerGate = WriterGate(peerCount: setup.followers, follow: false)
        recover(0)
        guard failure == nil, let engine = nodes[0].engine else { return }
        if Int(engine.stateRoots().height) != model.height - 1 {
            failure = OracleViolation(
                .recovery, expected: "the primary drops the rotted last block as a torn tail (height \(model.height - 1))",
                found: "height \(engine.stateRoots().height)")
        }
    }

    /// Called with every input the primary's machine handled and what it answered: the gate
    /// opens once the writer has caught up with its peers (or none of them is ahead).
    func checkWriterGate(_ input: SyncInput, _ outputs: [SyncOutput], localHeight: UInt64) {
        guard var gate = writerGate else { return }
        if gate.opens(after: input, outputs: outputs, localHeight: localHeight) {
            writerGate = nil
            record(0, "sim.writer_open", "at height \(localHeight)\(gate.wasBehind ? ", caught up" : ", no peer ahead")")
        } else {
            writerGate = gate
        }
    }

    /// A writer with peers tells its machine about its own commits, as the node's driver does
    /// on each tick: the machine checks them against the peers (a second writer is a fork).
    func reportLocalCommit() {
        guard let engine = nodes[0].engine, nodes[0].machine != nil else { return }
        let roots = engine.stateRoots()
        drive(0, .committedLocally(height: roots.height, metaRoot: roots.metaRoot))
    }
}
