/// A sync decision the node's driver asks after every step, kept here with the machine so that
/// the simulator runs the same rule.
/// When a writer with peers may take new blocks: once it has caught up with them, or once every
/// peer has answered at least once (an answer or a failure) and none has ever reported a height
/// above the writer's — it cannot be behind anyone it can hear. A peer that was ahead and then
/// went away keeps the gate shut until the writer catches up (restart without peers to override).
public struct WriterGate: Sendable {
    public let peerCount: Int
    private var answered = Set<Int>()
    private var someoneAhead = false
    public private(set) var caughtUp = false

    public init(peerCount: Int) {
        self.peerCount = peerCount
    }

    public mutating func opens(after input: SyncInput, outputs: [SyncOutput], localHeight: UInt64) -> Bool {
        if case .status(let peer, let result) = input {
            answered.insert(peer)
            if case .success(let status) = result, status.servableHeight > localHeight { someoneAhead = true }
        }
        if outputs.contains(where: { if case .caughtUp = $0 { true } else { false } }) { caughtUp = true }
        return caughtUp || (answered.count == peerCount && !someoneAhead)
    }
}

