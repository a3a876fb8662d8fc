import Engine

/// When a node with peers counts as current, a sync decision the node's driver asks after
/// every step, kept here with the machine so that the simulator runs the same rule.
///
/// A writer (no `follow`) may take new blocks only once every peer has told it its height (or
/// was found faulty or on another chain) and none of them, as last reported, is above the
/// writer's own height. Being caught up with the quorum is not enough: one peer may hold a
/// block the writer lost (a tail lost to rot, a restored snapshot) that the rest do not, and a
/// new block at that height would fork the chain under it. A peer that cannot be reached tells
/// it nothing, so the gate stays shut until it answers; the override is the operator's (restart
/// without the dead peer in `sync.peers`). A follower takes no local blocks, so for it the gate
/// only says when reads are current: once it has caught up with the quorum, or no peer is ahead.
public struct WriterGate: Sendable {
    public let peerCount: Int
    public let follow: Bool
    private var answered = Set<Int>()
    /// Each peer's last reported height; a peer found faulty or on another chain has none.
    private var reported: [Int: UInt64] = [:]
    private var caughtUp = false
    /// Some peer was ahead of this node at some point: it opened by catching up.
    public private(set) var wasBehind = false

    public init(peerCount: Int, follow: Bool) {
        self.peerCount = peerCount
        self.follow = follow
    }

    public mutating func opens(after input: SyncInput, outputs: [SyncOutput], localHeight: UInt64) -> Bool {
        if case .status(let peer, .success(let status)) = input {
            answered.insert(peer)
            reported[peer] = status.servableHeight
        }
        for case .peerFaulty(let peer, _) in outputs {
            answered.insert(peer)
            reported[peer] = nil
        }
        if outputs.contains(where: { if case .caughtUp = $0 { true } else { false } }) { caughtUp = true }
        let ahead = reported.values.contains { $0 > localHeight }
        if ahead { wasBehind = true }
        let open = (answered.count == peerCount && !ahead) || (follow && caughtUp)
        if open && wasBehind && !follow { Probe.syncWriterCaughtUpFirst.hit() }
        return open
    }
}
