@testable import Node
import Testing

/// The connection guard's decision table, without a socket: every phase, its deadline, and
/// what happens past it.
@Suite("Connection deadlines (head, body, idle, linger)")
struct ConnectionDeadlinesTests {
    static let limits = ConnectionDeadlines.Limits(headNanoseconds: 10, bodyNanoseconds: 30, idleNanoseconds: 60, lingerNanoseconds: 2)

    /// An event of one connection, at a time.
    enum Event: CustomStringConvertible {
        case bytes(UInt64), head(UInt64), end, responseHead(early: Bool), responseEnd(UInt64), writable(Bool, UInt64)

        var description: String {
            switch self {
            case .bytes(let at): "bytes@\(at)"
            case .head(let at): "head@\(at)"
            case .end: "end"
            case .responseHead(let early): "responseHead(early: \(early))"
            case .responseEnd(let at): "responseEnd@\(at)"
            case .writable(let writable, let at): "writable(\(writable))@\(at)"
            }
        }
    }

    /// Plays `events` from time 0 and checks the early flags the responses get (responses may
    /// overlap: their flags queue, as the observer keeps them).
    static func play(_ events: [Event]) -> ConnectionDeadlines {
        var deadlines = ConnectionDeadlines(limits: limits, now: 0)
        var earlyFlags: [Bool] = []
        for event in events {
            switch event {
            case .bytes(let at): deadlines.bytesArrived(now: at)
            case .head(let at): deadlines.headReceived(now: at)
            case .end: deadlines.requestEnded()
            case .responseHead(let expected):
                let early = deadlines.responseHeadWritten()
                earlyFlags.append(early)
                #expect(early == expected, "early flag after \(events)")
            case .responseEnd(let at): deadlines.responseEnded(now: at, early: earlyFlags.removeFirst())
            case .writable(let writable, let at): deadlines.writabilityChanged(writable: writable, now: at)
            }
        }
        return deadlines
    }

    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var events: [Event]
        var phase: ConnectionDeadlines.Phase
        var deadline: UInt64?
        var expiry: ConnectionDeadlines.Expiry

        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "a new connection that sends nothing: the head limit, then a silent close", events: [], phase: .awaitingRequest, deadline: 10, expiry: .close),
        Case(name: "a head in progress: 408", events: [.bytes(4)], phase: .readingHead, deadline: 14, expiry: .respondTimeoutThenClose),
        Case(name: "more head bytes do not extend the head limit", events: [.bytes(4), .bytes(9)], phase: .readingHead, deadline: 14, expiry: .respondTimeoutThenClose),
        Case(name: "a body in progress: 408 at the body limit", events: [.bytes(1), .head(3), .bytes(5)], phase: .readingBody, deadline: 33, expiry: .respondTimeoutThenClose),
        Case(name: "a whole request being answered: no deadline", events: [.bytes(1), .head(3), .end], phase: .responding, deadline: nil, expiry: .none),
        Case(
            name: "kept alive after a response: the idle limit from the response", events: [.bytes(1), .head(3), .end, .responseHead(early: false), .responseEnd(20)],
            phase: .awaitingRequest, deadline: 80, expiry: .close),
        Case(
            name: "the next request's first byte starts its head limit",
            events: [.bytes(1), .head(3), .end, .responseHead(early: false), .responseEnd(20), .bytes(50)], phase: .readingHead, deadline: 60,
            expiry: .respondTimeoutThenClose),
        Case(
            name: "an early response (before the body ended) while it is written: no deadline", events: [.bytes(1), .head(3), .responseHead(early: true)],
            phase: .responding, deadline: nil, expiry: .none),
        Case(
            name: "after an early response: linger, then close", events: [.bytes(1), .head(3), .responseHead(early: true), .responseEnd(5), .bytes(6)],
            phase: .lingering, deadline: 7, expiry: .close),
        Case(
            name: "a response to a request never parsed is early", events: [.bytes(1), .responseHead(early: true), .responseEnd(2)], phase: .lingering,
            deadline: 4, expiry: .close),
        Case(
            name: "a pipelined request's body clock starts when the answer before it ends (the node was not reading it)",
            events: [.bytes(1), .head(2), .end, .head(4), .responseHead(early: false), .responseEnd(8)], phase: .readingBody, deadline: 38,
            expiry: .respondTimeoutThenClose),
        Case(
            name: "the next head goes out before the previous end reached the socket: still responding, and it is early",
            events: [.bytes(1), .head(1), .end, .head(2), .responseHead(early: false), .responseHead(early: true), .responseEnd(5)],
            phase: .responding, deadline: nil, expiry: .none),
        Case(
            name: "a client that stops reading the answer: closed after the idle limit of stalled writes",
            events: [.bytes(1), .head(2), .end, .responseHead(early: false), .writable(false, 7)], phase: .responding, deadline: 67, expiry: .close),
        Case(
            name: "writes that start flowing again clear the stall",
            events: [.bytes(1), .head(2), .end, .responseHead(early: false), .writable(false, 7), .writable(true, 9)], phase: .responding,
            deadline: nil, expiry: .none),
        Case(
            name: "a stall shortens an idle deadline but never lengthens it",
            events: [.bytes(1), .head(2), .end, .responseHead(early: false), .responseEnd(3), .writable(false, 40)], phase: .awaitingRequest,
            deadline: 63, expiry: .close),
    ]

    @Test(arguments: cases)
    func phaseDeadlineAndExpiry(_ testCase: Case) {
        let deadlines = Self.play(testCase.events)
        #expect(deadlines.phase == testCase.phase)
        #expect(deadlines.deadline == testCase.deadline)
        if let deadline = testCase.deadline {
            #expect(deadlines.expiry(now: deadline - 1) == .none, "nothing is due before the deadline")
            #expect(deadlines.expiry(now: deadline) == testCase.expiry)
        } else {
            #expect(deadlines.expiry(now: .max) == .none)
        }
    }
}
