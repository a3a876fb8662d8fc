import Engine

/// One peer as the machine sees it.
public struct SyncPeer: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case unknown
        case healthy(PeerStatus, refreshedAt: UInt64)
        case backingOff(until: UInt64, last: PeerStatus?)
        case faulty(until: UInt64, why: String)
        /// Another chain id, genesis or lane count: never used.
        case otherChain(String)
    }

    public var state = State.unknown
    /// Consecutive failures to reach it (the backoff's exponent).
    public var attempts = 0
    /// Times it answered falsely.
    public var faults = 0
    /// The last status it gave (kept while it backs off and is asked again).
    var lastStatus: PeerStatus?
    /// Consecutive statuses that named another chain.
    var otherChainReports = 0
    var statusInFlight = false
    var linksInFlight = false
    /// The first height of the links request in flight.
    var linksAskedFrom: UInt64?
    var blocksInFlight = 0
    /// The highest height it has sent chain links for.
    var linkedThrough: UInt64 = 0
    /// When the status request and the links request in flight were sent (each its own: a
    /// status refresh must not keep a lost links request alive).
    var statusSentAt: UInt64 = 0
    var linksSentAt: UInt64 = 0

    func hasExpired(now: UInt64, timeout: UInt64) -> Bool {
        (statusInFlight && elapsedNanoseconds(now, since: statusSentAt) >= timeout) || (linksInFlight && elapsedNanoseconds(now, since: linksSentAt) >= timeout)
    }

    public var status: PeerStatus? {
        if case .healthy(let status, _) = state { return status }
        return nil
    }

    var isOtherChain: Bool {
        if case .otherChain = state { return true }
        return false
    }

    /// Its status, or the last one it gave before it became unreachable (a peer backing off
    /// still counts towards the target: catching up does not end early because it went quiet).
    var lastKnownStatus: PeerStatus? {
        switch state {
        case .healthy(let status, _): status
        case .backingOff, .unknown: lastStatus
        case .faulty, .otherChain: nil
        }
    }

    /// Never heard from yet, neither an answer nor a failure.
    var isFirstAnswerAwaited: Bool { state == .unknown && attempts == 0 && faults == 0 }

    /// Healthy with a known status: it may be asked for links and blocks.
    var isAskable: Bool { status != nil }

    /// A backoff or a faulty spell that has run out: ask for its status again.
    mutating func wakeIfDue(now: UInt64) {
        switch state {
        case .backingOff(let until, _) where now >= until, .faulty(let until, _) where now >= until:
            state = .unknown
        default:
            break
        }
    }

    /// What became of a status answer (`receiveStatus`).
    enum StatusVerdict: Equatable {
        /// Taken (or ignored while it is faulty): nothing to report.
        case taken
        /// Back it off or mark it faulty with this fault (`penalize`, plus the caller's own
        /// bookkeeping).
        case penalize(PeerFault)
        /// Confirmed on another chain: it is never used again; report it.
        case otherChain(String)
    }

    /// Consecutive statuses naming another chain before a peer is never used again: one
    /// garbled answer is not a chain.
    static let otherChainReportsToConfirm = 2

    /// Takes the answer to the status request in flight: the chain is checked (another one twice
    /// in a row makes it `otherChain`), a faulty spell is kept, otherwise it is healthy.
    mutating func receiveStatus(_ result: Result<PeerStatus, PeerFault>, configuration: SyncConfiguration, now: UInt64) -> StatusVerdict {
        statusInFlight = false
        switch result {
        case .failure(let fault):
            return .penalize(fault)
        case .success(let status):
            guard status.chainID == configuration.chainID, status.laneCount == configuration.laneCount,
                status.genesisDigest == configuration.genesisDigest
            else {
                otherChainReports += 1
                guard otherChainReports >= Self.otherChainReportsToConfirm else { return .penalize(.unreachable("it reports another chain; asking again")) }
                state = .otherChain("chain \(status.chainID) with \(status.laneCount) lanes")
                return .otherChain("another chain: \(status.chainID), \(status.laneCount) lanes")
            }
            otherChainReports = 0
            if case .faulty(let until, _) = state, now < until { return .taken }
            state = .healthy(status, refreshedAt: now)
            lastStatus = status
            attempts = 0
            return .taken
        }
    }

    /// Unreachable: back off, doubling from `backoffInitialNanoseconds` to the maximum.
    /// Misbehaved: faulty for `faultyNanoseconds`, its fault counted. Returns false when the peer
    /// is on another chain (nothing changes).
    mutating func penalize(_ fault: PeerFault, configuration: SyncConfiguration, now: UInt64) -> Bool {
        guard !isOtherChain else { return false }
        switch fault {
        case .unreachable:
            Probe.syncPeerBackedOff.hit()
            let delay = min(configuration.backoffMaxNanoseconds, configuration.backoffInitialNanoseconds << UInt64(min(attempts, 20)))
            attempts += 1
            if case .faulty = state { return true }
            state = .backingOff(until: now + delay, last: status)
        case .misbehaved(let why):
            Probe.syncPeerFaulty.hit()
            state = .faulty(until: now + configuration.faultyNanoseconds, why: why)
            faults += 1
        }
        return true
    }

    /// Wakes it if its backoff or faulty spell ran out; then, if a status is due (none known,
    /// or older than `refresh`, and none in flight), marks one sent at `now` and returns true:
    /// the caller sends it.
    mutating func askStatusIfDue(now: UInt64, refresh: UInt64) -> Bool {
        wakeIfDue(now: now)
        guard needsStatus(now: now, refresh: refresh) else { return false }
        statusInFlight = true
        statusSentAt = now
        return true
    }

    func needsStatus(now: UInt64, refresh: UInt64) -> Bool {
        guard !statusInFlight else { return false }
        switch state {
        case .unknown: return true
        case .healthy(_, let refreshedAt): return elapsedNanoseconds(now, since: refreshedAt) >= refresh
        case .backingOff, .faulty, .otherChain: return false
        }
    }
}

/// Nanoseconds from `earlier` to `now`, 0 if the clock went backwards (never a trap). The
/// machine's timeouts and the node driver's progress figures both use it.
public func elapsedNanoseconds(_ now: UInt64, since earlier: UInt64) -> UInt64 { now >= earlier ? now - earlier : 0 }
