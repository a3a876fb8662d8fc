import Documents
import Engine
import FaultFS
import PeerSync

/// A seeded network between the simulator's nodes, at the level of the sync protocols' wire:
/// a request (`SimulatedRequest`: blocks or state sync) reaches its server after a drawn delay,
/// the server's answer (the bytes `SyncServing` or `SnapshotServing` gives, computed when the
/// request arrives) comes back after another, and the client reads it through `SyncExchange` or
/// `StateSyncExchange` exactly as the HTTP driver does. From the seed: delays (hence
/// reordering), drops either way, duplicated answers, one bit flipped in a block range or a chunk,
/// and partitions (a client–server pair cut for a while: exchanges fail at once, as a refused
/// connection does). `heal` switches every fault off. Bounded: the machines bound what is in
/// flight, and every message is delivered or dropped once it is due.
final class SimulatedNetwork {
    struct Rates: CustomStringConvertible {
        var drop = 0.0
        var duplicate = 0.0
        var corrupt = 0.0
        var partition = 0.0
        var delayMaxNanoseconds: UInt64 = 200_000_000

        var description: String {
            "drop=\(drop) duplicate=\(duplicate) corrupt=\(corrupt) partition=\(partition) delay_max_ms=\(delayMaxNanoseconds / 1_000_000)"
        }
    }

    enum Payload {
        case request
        case answer(Result<PeerResponse, PeerTransportError>)
    }

    /// One exchange in flight: who asked whom (the client's peer slot and incarnation, so that an
    /// answer to a node that crashed since is dropped) and what.
    struct Message {
        var deliverAt: UInt64
        var sequence: UInt64
        var client: Int
        var incarnation: Int
        var slot: Int
        var server: Int
        var request: SimulatedRequest
        var payload: Payload
    }

    private var queue: [Message] = []
    private var sequence: UInt64 = 0
    private var random: DeterministicRandom
    private(set) var rates: Rates
    /// (client, server) pairs cut until a time.
    private var partitions: [Int: UInt64] = [:]
    private(set) var delivered: UInt64 = 0
    private(set) var dropped: UInt64 = 0

    init(seed: UInt64, rates: Rates) {
        random = DeterministicRandom(seed: seed)
        self.rates = rates
    }

    var inFlight: Int { queue.count }

    func heal() {
        rates = Rates(delayMaxNanoseconds: rates.delayMaxNanoseconds)
        partitions = [:]
    }

    private func pairKey(_ client: Int, _ server: Int) -> Int { client * 1_024 + server }

    private func delay() -> UInt64 { UInt64(random.int(in: 1...Int(max(1, rates.delayMaxNanoseconds / 1_000_000)))) * 1_000_000 }

    /// Sends a request; a partitioned pair fails at once (after a short delay) as unreachable.
    func send(client: Int, incarnation: Int, slot: Int, server: Int, request: SimulatedRequest, now: UInt64) -> String {
        let key = pairKey(client, server)
        if let until = partitions[key], now >= until { partitions[key] = nil }
        if partitions[key] == nil, random.chance(rates.partition) {
            partitions[key] = now + UInt64(random.int(in: 1...40)) * 100_000_000
        }
        var message = Message(
            deliverAt: now + delay(), sequence: next(), client: client, incarnation: incarnation, slot: slot, server: server, request: request,
            payload: .request)
        if partitions[key] != nil {
            message.payload = .answer(.failure(PeerTransportError(.unreachable, request: request.wire(server: server), "partitioned")))
            enqueue(message)
            return "partitioned"
        }
        if random.chance(rates.drop) {
            dropped += 1
            return "request_dropped"
        }
        enqueue(message)
        return "sent"
    }

    /// Sends the server's answer back: maybe dropped, corrupted (one byte) or duplicated.
    func answer(_ message: Message, with outcome: Result<PeerResponse, PeerTransportError>, now: UInt64) -> String {
        if random.chance(rates.drop) {
            dropped += 1
            return "answer_dropped"
        }
        var note = "answered"
        var reply = message
        reply.deliverAt = now + delay()
        reply.sequence = next()
        reply.payload = .answer(corrupted(outcome, request: message.request, note: &note))
        enqueue(reply)
        if random.chance(rates.duplicate) {
            reply.deliverAt = now + delay()
            reply.sequence = next()
            reply.payload = .answer(corrupted(outcome, request: message.request, note: &note))
            enqueue(reply)
            note += "+duplicated"
        }
        return note
    }

    /// One bit flipped in a block range or a snapshot chunk (its own draw per copy). Only those:
    /// they carry their own checksums end to end (a chunk's file its SHA-256), while status,
    /// links, offers and manifests are JSON that HTTP over TCP delivers intact (a flip there
    /// would be a lie by the network no checksum can catch).
    private func corrupted(
        _ outcome: Result<PeerResponse, PeerTransportError>, request: SimulatedRequest, note: inout String
    ) -> Result<PeerResponse, PeerTransportError> {
        guard request.carriesItsOwnChecksum, case .success(var response) = outcome, !response.body.isEmpty, random.chance(rates.corrupt) else { return outcome }
        let index = random.int(in: 0...(response.body.count - 1))
        response.body[index] ^= UInt8(1 << random.int(in: 0...7))
        note += " corrupted@\(index)"
        return .success(response)
    }

    /// The messages due by `now`, in delivery order (time, then sending order).
    func due(now: UInt64) -> [Message] {
        let ready = queue.filter { $0.deliverAt <= now }.sorted { ($0.deliverAt, $0.sequence) < ($1.deliverAt, $1.sequence) }
        queue.removeAll { $0.deliverAt <= now }
        delivered += UInt64(ready.count)
        return ready
    }

    private func next() -> UInt64 {
        sequence += 1
        return sequence
    }

    private func enqueue(_ message: Message) {
        precondition(queue.count < 100_000, "the simulated network's queue is bounded by what the machines keep in flight")
        queue.append(message)
    }
}

/// What a simulated client asks of a server: a block-sync or a state-sync request.
enum SimulatedRequest: Equatable, CustomStringConvertible {
    case blocks(SyncRequest)
    case state(StateSyncRequest)

    /// The request as the HTTP driver would send it (its bounds are the transport's).
    func wire(server: Int) -> PeerRequest {
        let baseURL = "http://node-\(server)"
        switch self {
        case .blocks(let request): return SyncExchange.peerRequest(request, baseURL: baseURL, timeoutSeconds: 1)
        case .state(let request): return StateSyncExchange.peerRequest(request, baseURL: baseURL, timeoutSeconds: 1)
        }
    }

    var carriesItsOwnChecksum: Bool {
        switch self {
        case .blocks(.blocks), .state(.chunk): true
        default: false
        }
    }

    var description: String {
        switch self {
        case .blocks(let request): "\(request)"
        case .state(let request): "\(request)"
        }
    }
}

/// How the byzantine node (a minority of one) lies when it serves, drawn per seed. It serves
/// from the primary's engine, so everything it does not alter is true.
enum ByzantineMode: String, CaseIterable {
    /// One operation of one block altered, the block re-framed with its claimed roots kept.
    case alteredOperation = "altered_operation"
    /// A self-consistent forked chain: links and blocks claim other MetaRoots, chained.
    case forkedChain = "forked_chain"
    /// It claims heights it does not have.
    case falseHeights = "false_heights"
    /// Its block answers are larger than any bound (the transport refuses them).
    case oversized
    /// It never answers.
    case stall
    /// It serves a chain of its own: the same genesis, other blocks, every root recomputed by
    /// its own engine (a self-consistent fork; only the quorum tells it from the real one).
    case ownFork = "own_fork"

    /// The lie applied to an honest answer.
    func alter(_ request: SyncRequest, _ honest: PeerResponse, random: inout DeterministicRandom) -> Result<PeerResponse, PeerTransportError>? {
        let wire = SyncExchange.peerRequest(request, baseURL: "http://byzantine", timeoutSeconds: 1)
        switch (self, request) {
        case (.stall, _):
            return nil
        case (.oversized, .blocks):
            return .failure(PeerTransportError(.responseTooLarge, request: wire, "an answer past \(BlockRangeCodec.rangeBytesMax) bytes"))
        case (.alteredOperation, .blocks):
            guard var blocks = try? BlockRangeCodec.decode(honest.body), !blocks.isEmpty else { return .success(honest) }
            let index = random.int(in: 0...(blocks.count - 1))
            guard let lane = blocks[index].lanes.firstIndex(where: { !$0.operations.isEmpty }) else { return .success(honest) }
            blocks[index].lanes[lane].operations[0].value = Array("forged".utf8)
            return .success(PeerResponse(status: 200, headers: honest.headers, body: BlockRangeCodec.encode(blocks)))
        case (.forkedChain, .blocks):
            guard var blocks = try? BlockRangeCodec.decode(honest.body) else { return .success(honest) }
            for index in blocks.indices {
                blocks[index].metaRoot = Self.forked(blocks[index].metaRoot)
                if blocks[index].height > 1 { blocks[index].previousMetaRoot = Self.forked(blocks[index].previousMetaRoot) }
            }
            return .success(PeerResponse(status: 200, headers: honest.headers, body: BlockRangeCodec.encode(blocks)))
        case (.forkedChain, .links):
            return .success(Self.forkLinks(honest))
        case (.falseHeights, .status):
            guard var document = try? JSONDocument.decode(SyncStatusDocument.self, from: honest.body) else { return .success(honest) }
            document.servableHeight += 50
            document.height += 50
            return .success(PeerResponse(status: 200, headers: honest.headers, body: JSONDocument.encodeBytes(document)))
        default:
            return .success(honest)
        }
    }

    static func forked(_ root: Hash32) -> Hash32 { StateHashing.sha256(root.bytes + Array("fork".utf8)) }

    private static func forkLinks(_ honest: PeerResponse) -> PeerResponse {
        guard var document = try? JSONDocument.decode(SyncHeadersDocument.self, from: honest.body) else { return honest }
        for index in document.headers.indices {
            let link = document.headers[index]
            guard let root = Hash32(hex: link.metaRoot), let previous = Hash32(hex: link.previousMetaRoot) else { return honest }
            document.headers[index].metaRoot = forked(root).hex
            if link.height > 1 { document.headers[index].previousMetaRoot = forked(previous).hex }
        }
        return PeerResponse(status: 200, headers: honest.headers, body: JSONDocument.encodeBytes(document))
    }
}
