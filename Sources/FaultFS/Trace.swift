import Documents

/// One line of a simulation trace: a file-system operation with its outcome and any faults that
/// were injected into it, or an event the engine or simulator recorded.
public struct TraceEvent: Encodable, Sendable, Equatable {
    /// The operation number (1-based) the event belongs to; engine events carry the number of
    /// the last operation before them.
    public var index: UInt64
    public var operation: String
    public var path: String
    public var offset: UInt64?
    public var length: Int?
    /// `"ok"`, `"error:<code>"`, `"crashed"`, or free text for engine events.
    public var outcome: String
    /// Fault families (or `crash_point`) injected into this operation, tagged as injected.
    public var injected: [String]

    enum CodingKeys: String, CodingKey {
        case index = "i"
        case operation = "op"
        case path, offset, length, outcome, injected
    }

    /// `injected` only when something was injected, so that `grep '"injected"'` finds the faults.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encode(operation, forKey: .operation)
        try container.encode(path, forKey: .path)
        try container.encodeIfPresent(offset, forKey: .offset)
        try container.encodeIfPresent(length, forKey: .length)
        try container.encode(outcome, forKey: .outcome)
        if !injected.isEmpty { try container.encode(injected, forKey: .injected) }
    }

    /// The event as one JSON object, for JSONL trace files.
    public var jsonLine: String { JSONDocument.encode(self) }
}

/// The running record of a simulation: a hash over every event (FNV-1a, 64 bit) and the most
/// recent events, at most `eventsMax` of them, plus an optional sink that sees every event.
struct Trace {
    private(set) var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    private(set) var events: [TraceEvent] = []
    private(set) var eventCount: UInt64 = 0
    let eventsMax: Int
    var sink: (@Sendable (TraceEvent) -> Void)?
    /// Paths whose offsets and lengths are left out of the hash (but not out of the events).
    var opaqueLengthPrefixes: [String] = []

    init(eventsMax: Int) {
        precondition(eventsMax >= 0)
        self.eventsMax = eventsMax
    }

    mutating func record(
        index: UInt64, operation: String, path: String, offset: UInt64?, length: Int?, outcome: String,
        injected: [String]
    ) {
        eventCount += 1
        mix(index)
        mix(operation)
        mix(path)
        if !opaqueLengthPrefixes.contains(where: { path.hasPrefix($0) }) {
            mix(offset.map { $0 &+ 1 } ?? 0)
            mix(UInt64(bitPattern: Int64(length ?? -1)))
        }
        mix(outcome)
        for tag in injected { mix(tag) }
        guard eventsMax > 0 || sink != nil else { return }
        let event = TraceEvent(
            index: index, operation: operation, path: path, offset: offset, length: length, outcome: outcome,
            injected: injected)
        sink?(event)
        guard eventsMax > 0 else { return }
        if events.count >= eventsMax { events.removeFirst(events.count / 2 + 1) }
        events.append(event)
    }

    private mutating func mix(_ value: UInt64) {
        var word = value
        for _ in 0..<8 {
            hash = (hash ^ (word & 0xFF)) &* 0x0000_0100_0000_01B3
            word >>= 8
        }
    }

    private mutating func mix(_ text: String) {
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        hash = (hash ^ 0xFF) &* 0x0000_0100_0000_01B3
    }
}
