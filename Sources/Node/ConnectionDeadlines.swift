/// What one HTTP connection may wait for, and how long: the decision the connection guard
/// runs on every event. Pure (time is passed in, in monotonic nanoseconds), so a table of
/// cases tests it without a socket.
///
/// | phase            | starts at                               | deadline              | past it            |
/// |------------------|-----------------------------------------|-----------------------|--------------------|
/// | awaitingRequest  | connection start, or the last response  | head (first request), | close              |
/// |                  |                                         | idle (kept alive)     |                    |
/// | readingHead      | the first byte of a request             | head                  | 408, then close    |
/// | readingBody      | the request head (or, for a pipelined   | body                  | 408, then close    |
/// |                  | one, the end of the answer before it)   |                       |                    |
/// | responding       | the request's end, or a response's head | none (the handler's   | -                  |
/// |                  |                                         | own limits bound it)  |                    |
/// | lingering        | the end of an early response            | linger                | close              |
///
/// In every phase, a connection whose socket stops taking the node's writes (the client does
/// not read) is closed once it has been stalled for the idle limit.
///
/// An early response is one whose head goes out before its request has been read to the
/// end (a 413 on the declared length, a 400 on a broken body, a parse error): it carries
/// `Connection: close`, and after it the connection half-closes and discards what the client
/// still sends, for at most `linger`, so that a client that writes its whole body before
/// reading gets the response instead of hanging.
///
/// Requests and responses are counted, not flagged: with pipelining, Hummingbird may write the
/// next response's head before the previous response's end has reached the socket.
struct ConnectionDeadlines: Equatable {
    /// The limits, in nanoseconds.
    struct Limits: Equatable {
        var headNanoseconds: UInt64
        var bodyNanoseconds: UInt64
        var idleNanoseconds: UInt64
        var lingerNanoseconds: UInt64
    }

    /// Where the connection is (see the table above).
    enum Phase: Equatable { case awaitingRequest, readingHead, readingBody, responding, lingering }

    enum Expiry: Equatable {
        /// Nothing is due yet.
        case none
        /// Close without a response (idle, a stalled write, a response already begun, or
        /// lingering ended).
        case close
        /// Answer 408 Request Timeout, then close.
        case respondTimeoutThenClose
    }

    let limits: Limits
    private(set) var headsReceived = 0
    private(set) var endsReceived = 0
    private(set) var responseHeadsWritten = 0
    private(set) var responsesEnded = 0
    private(set) var isLingering = false
    private var awaitingSince: UInt64
    private var servedAny = false
    private var firstByteAt: UInt64?
    private var lastHeadAt: UInt64 = 0
    private var lingerSince: UInt64 = 0
    private var writeStalledSince: UInt64?

    init(limits: Limits, now: UInt64) {
        self.limits = limits
        self.awaitingSince = now
    }

    var phase: Phase {
        if isLingering { return .lingering }
        if responseHeadsWritten > responsesEnded || endsReceived > responsesEnded { return .responding }
        if headsReceived > responsesEnded { return .readingBody }
        if firstByteAt != nil { return .readingHead }
        return .awaitingRequest
    }

    /// When the connection times out (monotonic nanoseconds), or nil when it cannot.
    var deadline: UInt64? {
        let stallDeadline = writeStalledSince.map { $0 &+ limits.idleNanoseconds }
        guard let phaseDeadline else { return stallDeadline }
        return min(phaseDeadline, stallDeadline ?? .max)
    }

    private var phaseDeadline: UInt64? {
        switch phase {
        case .awaitingRequest: return awaitingSince &+ (servedAny ? limits.idleNanoseconds : limits.headNanoseconds)
        case .readingHead: return (firstByteAt ?? awaitingSince) &+ limits.headNanoseconds
        case .readingBody: return lastHeadAt &+ limits.bodyNanoseconds
        case .responding: return nil
        case .lingering: return lingerSince &+ limits.lingerNanoseconds
        }
    }

    /// Bytes arrived from the client (any bytes: a head, a body, the next request).
    mutating func bytesArrived(now: UInt64) {
        if phase == .awaitingRequest { firstByteAt = now }
    }

    /// The HTTP decoder produced a request head.
    mutating func headReceived(now: UInt64) {
        headsReceived += 1
        lastHeadAt = now
        firstByteAt = nil
    }

    /// The HTTP decoder produced a request's end (its body, if any, is all in).
    mutating func requestEnded() {
        endsReceived += 1
    }

    /// A (final, not 1xx) response head is going out. Returns whether it is early (its request
    /// not read to the end): it must then carry `Connection: close`.
    mutating func responseHeadWritten() -> Bool {
        responseHeadsWritten += 1
        return endsReceived < responseHeadsWritten
    }

    /// A response's end reached the socket; `early` as `responseHeadWritten` said for it. An
    /// early one starts lingering. A pipelined request waiting behind it starts its body clock
    /// now at the latest (the node was not reading it while it answered the one before).
    mutating func responseEnded(now: UInt64, early: Bool) {
        responsesEnded += 1
        awaitingSince = now
        servedAny = true
        firstByteAt = nil
        if headsReceived > responsesEnded { lastHeadAt = max(lastHeadAt, now) }
        if early {
            isLingering = true
            lingerSince = now
        }
    }

    /// The socket stopped (false) or started again (true) taking writes.
    mutating func writabilityChanged(writable: Bool, now: UInt64) {
        writeStalledSince = writable ? nil : (writeStalledSince ?? now)
    }

    /// What is due at `now`.
    func expiry(now: UInt64) -> Expiry {
        if let stalled = writeStalledSince, now >= stalled &+ limits.idleNanoseconds { return .close }
        guard let phaseDeadline, now >= phaseDeadline else { return .none }
        switch phase {
        case .readingHead, .readingBody: return .respondTimeoutThenClose
        case .awaitingRequest, .lingering: return .close
        case .responding: return .none
        }
    }
}
