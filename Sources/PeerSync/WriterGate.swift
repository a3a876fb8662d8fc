import Engine

/// A sync decision the node's driver asks after every step, kept here with the machine so that
/// the simulator runs the same rule.
/// When a writer with peers may take new blocks: once it has caught up with them, or once every
/// peer has told it its height and none was above the writer's. A peer that cannot be reached
/// tells it nothing: it may hold blocks the writer lost (a tail lost to rot, a restored
/// snapshot), and a new block at such a height would fork the chain, so the gate stays shut
/// until that peer answers or the writer catches up. A peer that was ahead and then went away
/// keeps it shut too. The override is the operator's: restart without the dead peer in
/// `sync.peers`.
public struct WriterGate: Sendable {
    public let peerCount: Int
    private var answered = Set<Int>()
    private var someoneAhead = false
    public private(set) var caughtUp = false

    public init(peerCount: Int) {
        self.peerCount = peerCount
    }

    public mutating func opens(after input: SyncInput, outputs: [SyncOutput], localHeight: UInt64) -> Bool {
        if case .status(let peer, .success(let status)) = input {
            answered.insert(peer)
            if status.servableHeight > localHeight { someoneAhead = true }
        }
        if !caughtUp && outputs.contains(where: { if case .caughtUp = $0 { true } else { false } }) {
            caughtUp = true
            if someoneAhead { Probe.syncWriterCaughtUpFirst.hit() }
        }
        return caughtUp || (answered.count == peerCount && !someoneAhead)
    }
}

