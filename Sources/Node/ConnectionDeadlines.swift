/// What one HTTP connection may wait for, and how long: the decision the connection guard
/// runs on every event. Pure (time is passed in, in monotonic nanoseconds), so a table of
/// cases tests it without a socket.
///
/// | phase            | starts at                               | deadline              | past it            |
/// |------------------|-----------------------------------------|-----------------------|--------------------|
/// | awaitingRequest  | connection start, or the last response  | head (first request), | close              |
/// |                  |                                         | idle (kept alive)     |                    |
/// | readingHead      | the first byte of a request             | head                  | 408, then close    |
/// | readingBody      | the request head                        | body                  | 408, then close    |
/// | responding       | the request's end, or a response's head | none (the handler's   | -                  |
/// |                  |                                         | own limits bound it)  |                    |
/// | lingering        | the end of an early response            | linger                | close              |
///
/// An early response is one whose head goes out before its request has been read to the
/// end (a 413 on the declared length, a 400 on a broken body, a parse error): it carries
/// `Connection: close`, and after it the connection half-closes and discards what the client
/// still sends, for at most `linger`, so that a client that writes its whole body before
/// reading gets the response instead of hanging.
struct ConnectionDeadlines: Equatable {
    struct Limits: Equatable {
        var headNanoseconds: UInt64
        var bodyNanoseconds: UInt64
        var idleNanoseconds: UInt64
        var lingerNanoseconds: UInt64
    }

    enum Phase: Equatable { case awaitingRequest, readingHead, readingBody, responding, lingering }

    enum Expiry: Equatable {
        /// Nothing is due yet.
        case none
        /// Close without a response (idle, or a response already began, or lingering ended).
        case close
        /// Answer 408 Request Timeout, then close.
        case respondTimeoutThenClose
    }

    let limits: Limits
    private(set) var headsReceived = 0
    private(set) var endsReceived = 0
    private(set) var responsesEnded = 0
    private(set) var responseStarted = false
    private(set) var isLingering = false
    private var awaitingSince: UInt64
    private var servedAny = false
    private var firstByteAt: UInt64?
    private var lastHeadAt: UInt64 = 0
    private var lingerSince: UInt64 = 0

    init(limits: Limits, now: UInt64) {
        self.limits = limits
        self.awaitingSince = now
    }

    var phase: Phase {
        if isLingering { return .lingering }
        if endsReceived > responsesEnded || responseStarted { return .responding }
        if headsReceived > responsesEnded { return .readingBody }
        if firstByteAt != nil { return .readingHead }
        return .awaitingRequest
    }

    /// When the current phase times out (monotonic nanoseconds), or nil when it cannot.
    var deadline: UInt64? {
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

    mutating func headReceived(now: UInt64) {
        headsReceived += 1
        lastHeadAt = now
        firstByteAt = nil
    }

    mutating func requestEnded() {
        endsReceived += 1
    }

    /// A response head is going out. Returns whether it is early (its request not read to the
    /// end): it must then carry `Connection: close`.
    mutating func responseHeadWritten() -> Bool {
        responseStarted = true
        return endsReceived <= responsesEnded
    }

    /// A response ended; `early` as `responseHeadWritten` said. An early one starts lingering.
    mutating func responseEnded(now: UInt64, early: Bool) {
        responsesEnded += 1
        responseStarted = false
        awaitingSince = now
        servedAny = true
        firstByteAt = nil
        if early {
            isLingering = true
            lingerSince = now
        }
    }

    func expiry(now: UInt64) -> Expiry {
        guard let deadline, now >= deadline else { return .none }
        switch phase {
        case .readingHead, .readingBody: return .respondTimeoutThenClose
        case .awaitingRequest, .lingering: return .close
        case .responding: return .none
        }
    }
}
