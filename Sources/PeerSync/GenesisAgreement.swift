import Engine

/// Whether a node with an empty data directory may write its genesis from its configuration:
/// the decision a full resync makes before anything is written. The genesis comes from the
/// configuration (`node.chain_id`, `node.lanes`); the peers' statuses only confirm it. When a
/// quorum of the peers that answered agree with each other on another chain, the node is
/// misconfigured: it refuses, names what the peers report, and writes nothing.
public enum GenesisAgreement: Sendable, Equatable {
    /// A quorum of peers report this node's genesis.
    case agrees
    /// Too few peers answered, or they disagree among themselves: write the configured genesis;
    /// sync then uses only the peers on this chain.
    case undecided
    /// A quorum of peers are on one other chain.
    case disagrees(chainID: String, laneCount: Int, peers: Int)

    public static func decide(configuration: SyncConfiguration, statuses: [PeerStatus]) -> GenesisAgreement {
        precondition(statuses.count <= configuration.peerCount, "at most one status per peer")
        let quorum = configuration.resolvedQuorum
        if statuses.filter({ $0.genesisDigest == configuration.genesisDigest }).count >= quorum { return .agrees }
        let chains = Dictionary(grouping: statuses) { $0.genesisDigest }
        // The largest group, ties broken by the lower digest: deterministic.
        guard let largest = chains.max(by: { ($0.value.count, $1.key) < ($1.value.count, $0.key) }), largest.value.count >= quorum,
            let sample = largest.value.first
        else { return .undecided }
        return .disagrees(chainID: sample.chainID, laneCount: sample.laneCount, peers: largest.value.count)
    }
}
