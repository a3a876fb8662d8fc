import Documents
import Engine
import FaultFS
import Foundation
import Hummingbird
import Logging
import PeerSync
import NIOCore
import NIOPosix
import Synchronization

/// The node's HTTP API (Hummingbird). Every error is JSON `{"error": "...", "kind": "..."}` with
/// a fitting status, and the node keeps serving after it. Commits run on a bounded thread pool
/// (the engine's commit blocks until the block is as durable as the policy promises, and
/// concurrent commits share syncs); more than `max_inflight_commits` at once get 503.
public struct NodeAPI: Sendable {
    let engine: Engine
    let configuration: NodeConfiguration
    let metrics: NodeMetrics
    let logger: Logger
    let commitPool: NIOThreadPool
    let inflightCommits: InflightCounter
    /// Peer reads (`/v1/sync/...`) in progress.
    let syncReads = InflightCounter()
    /// Where sync stands, when this node syncs from peers.
    let syncBoard: SyncBoard?
    /// The API's open connections (the connection guard counts them; `/v1/status` shows them).
    let connections = ConnectionCounter()
    /// The bytes of request bodies being read, on every connection.
    let bodyBudget: ByteBudget
    let snapshots: NodeSnapshots
    /// Set when the engine failed: the node stops (and systemd restarts it, which recovers).
    let onFatal: @Sendable (EngineError) -> Void

    public init(
        engine: Engine, configuration: NodeConfiguration, metrics: NodeMetrics, logger: Logger, commitPool: NIOThreadPool,
        snapshots: NodeSnapshots, syncBoard: SyncBoard? = nil, onFatal: @escaping @Sendable (EngineError) -> Void
    ) {
        self.snapshots = snapshots
        self.syncBoard = syncBoard
        self.engine = engine
        self.configuration = configuration
        self.metrics = metrics
        self.logger = logger
        self.commitPool = commitPool
        self.inflightCommits = InflightCounter()
        self.bodyBudget = ByteBudget(limit: configuration.api.maxBodyBytesInFlight)
        self.onFatal = onFatal
    }

    /// Commits being processed now.
    public var commitsInFlight: Int { inflightCommits.value.load(ordering: .relaxed) }

    public func router() -> Router<NodeRequestContext> {
        let router = Router(context: NodeRequestContext.self)
        router.add(middleware: ErrorMiddleware(metrics: metrics, logger: logger))
        router.get("/health") { _, _ in json(HealthDocument(status: "ok")) }
        router.get("/v1/status") { _, _ in json(status()) }
        router.get("/v1/state_roots") { _, _ in json(stateRoots(engine.stateRoots())) }
        router.get("/v1/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: metrics.render(engine: engine, connections: connections.value))))
        }
        router.get("/v1/blocks/{height}") { _, context in
            let text = try context.parameters.require("height")
            guard let height = UInt64(text) else { throw APIError(.badRequest, "height must be a non-negative integer, got \(text)") }
            guard let header = try engine.block(at: height) else {
                throw APIError(.notFound, "no committed block at height \(height) is recorded (current height \(engine.stateRoots().height))")
            }
            return json(
                BlockHeaderDocument(
                    height: header.height, metaRoot: header.metaRoot.hex, laneRoots: header.laneRoots.map(\.hex),
                    operationCount: header.operationCount))
        }
        router.get("/v1/state/{key}") { request, context in
            let raw = try context.parameters.require("key")
            guard let key = raw.removingPercentEncoding, !key.isEmpty else { throw APIError(.badRequest, "the key is not valid percent-encoded UTF-8") }
            guard key.utf8.count <= configuration.api.maxKeyBytes else {
                throw APIError(.contentTooLarge, "the key is \(key.utf8.count) bytes; the limit is \(configuration.api.maxKeyBytes)")
            }
            if request.uri.queryParameters.get("allow_stale") != "true" { try requireCurrent("serving reads as current (allow_stale=true reads anyway)") }
            return json(stateRead(try engine.get(Array(key.utf8))))
        }
        router.post("/v1/blocks") { request, _ in try await commit(request) }
        router.get("/v1/sync/status") { _, _ in json(try await syncStatus()) }
        router.get("/v1/sync/headers") { request, _ in json(try await syncHeaders(request)) }
        router.get("/v1/sync/blocks") { request, _ in try await syncBlocks(request) }
        addSnapshotOfferRoutes(to: router)
        router.post("/v1/admin/snapshots") { request, context in try await createSnapshot(request, context: context) }
        return router
    }

    // MARK: Handlers

    /// 503 `catching_up` while a node with peers has not caught up with them (`SyncBoard.isCurrent`).
    private func requireCurrent(_ what: String) throws {
        guard let board = syncBoard, !board.isCurrent else { return }
        let target = board.snapshot?.targetHeight.map { " of \($0)" } ?? ""
        throw APIError(
            .serviceUnavailable, "catching up with the peers before \(what) (height \(engine.stateRoots().height)\(target)); retry shortly",
            kind: "catching_up")
    }

    private func commit(_ request: Request) async throws -> Response {
        if configuration.sync.follow {
            throw APIError(
                .conflict, "this node follows its peers (sync.follow = true) and takes no blocks of its own; send them to the chain's writer",
                kind: "follower")
        }
        try requireCurrent("taking new blocks")
        let limit = configuration.api.maxBodyBytes
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw APIError(.contentTooLarge, "the body is \(declared) bytes; the limit is \(limit) (api.max_body_bytes)")
        }
        // A body is read before the commit is admitted, so that slow senders (bounded by
        // api.request_body_timeout_ms) never hold a commit slot.
        let body = try await collectBody(request, limit: limit)
        assert(body.count <= limit, "a body past api.max_body_bytes was read whole")
        let admitted = inflightCommits.value.wrappingAdd(1, ordering: .relaxed).newValue
        defer {
            let left = inflightCommits.value.wrappingSubtract(1, ordering: .relaxed).newValue
            assert(left >= 0, "more commits left than were admitted")
        }
        assert(admitted >= 1, "the in-flight count went below zero")
        guard admitted <= configuration.api.maxInflightCommits else {
            throw APIError(.serviceUnavailable, "\(admitted - 1) commits are in flight (api.max_inflight_commits); retry shortly", kind: "overloaded")
        }
        let operations = try BlockRequestDecoder(limits: configuration.api).decode(body)
        assert(operations.count <= configuration.api.maxOperationsPerBlock, "the decoder admitted more operations than a block may hold")
        let started = ContinuousClock.now
        let engine = self.engine
        let result: CommitResult
        do {
            result = try await commitPool.runIfActive { () throws -> CommitResult in try engine.commit(operations) }
        } catch let error as EngineError {
            if error.kind != .invalidInput { onFatal(error) }
            throw error
        }
        let elapsed = ContinuousClock.now - started
        metrics.commitDuration.recordNanoseconds(Int64(elapsed.components.seconds) * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        metrics.blocksCommitted.increment()
        metrics.operationsCommitted.increment(by: operations.count)
        return json(CommitResultDocument(height: result.height, metaRoot: result.metaRoot.hex, durable: result.durable))
    }

    /// `POST /v1/admin/snapshots` with `{"out": "/absolute/path"}` (optional): loopback clients
    /// only. Commits pause only while the engine checkpoints and links the lanes' files.
    private func createSnapshot(_ request: Request, context: NodeRequestContext) async throws -> Response {
        guard let address = context.remoteAddress?.ipAddress, address == "127.0.0.1" || address == "::1" || address.hasPrefix("::ffff:127.") else {
            throw APIError(.forbidden, "snapshot administration is allowed from loopback only")
        }
        let bytes = try await collectBody(request, limit: 64 << 10)
        var outputPath: String?
        if !bytes.isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
                object.keys.allSatisfy({ $0 == "out" })
            else { throw APIError(.badRequest, "the body must be {} or {\"out\": \"/absolute/path\"}") }
            if let out = object["out"] {
                guard let text = out as? String, text.hasPrefix("/") else { throw APIError(.badRequest, "\"out\" must be an absolute path") }
                outputPath = text
            }
        }
        let snapshots = self.snapshots
        let requestedPath = outputPath
        let result: (path: String, manifest: SnapshotManifest, seconds: Double)
        do {
            result = try await commitPool.runIfActive { () throws -> (path: String, manifest: SnapshotManifest, seconds: Double) in
                try snapshots.create(outputPath: requestedPath)
            }
        } catch let error as SnapshotError {
            let status: HTTPResponse.Status = error.kind == .exists || error.kind == .invalid ? .conflict : .internalServerError
            throw APIError(status, error.description, kind: "snapshot_\(error.kind.rawValue)")
        }
        // Every snapshot the daemon takes goes off-site too (`[snapshot] offsite`), once verified.
        await snapshots.pushOffsite(path: result.path)
        return json(SnapshotCreated(path: result.path, manifest: result.manifest, seconds: result.seconds))
    }

    // MARK: Serving peers

    private func syncStatus() async throws -> SyncStatusDocument {
        let engine = self.engine
        return try await servingPeer { () throws -> SyncStatusDocument in try SyncServing.status(of: engine) }
    }

    /// `?from=H&count=N` (N ≤ 4096, default 1024): chain links of durable blocks.
    private func syncHeaders(_ request: Request) async throws -> SyncHeadersDocument {
        let from = try Self.query(request, "from", in: 1...UInt64.max)
        let count = Int(try Self.query(request, "count", in: 1...UInt64(ChainLink.countMax), default: 1_024))
        let engine = self.engine
        return try await servingPeer { () throws -> SyncHeadersDocument in try SyncServing.headers(of: engine, from: from, count: count) }
    }

    /// `?from=H&max_blocks=N&max_bytes=B` (N ≤ 1024, default 256; B ≤ 16 MiB, default 4 MiB):
    /// durable blocks as `application/x-rivellum-blocks`; 410 naming the oldest servable height
    /// below what the log holds; an empty range past the servable height.
    private func syncBlocks(_ request: Request) async throws -> Response {
        let from = try Self.query(request, "from", in: 1...UInt64.max)
        let maxBlocks = Int(try Self.query(request, "max_blocks", in: 1...UInt64(BlockRangeCodec.blocksMax), default: 256))
        let maxBytes = Int(try Self.query(request, "max_bytes", in: 1...UInt64(BlockRangeCodec.requestBytesMax), default: 4 << 20))
        let engine = self.engine
        let answer = try await servingPeer { () throws -> PeerResponse in
            try SyncServing.blocks(of: engine, from: from, maxBlocks: maxBlocks, maxBytes: maxBytes)
        }
        var headers = HTTPFields()
        if let type = answer.headers["content-type"] { headers[.contentType] = type }
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// At most `syncReadsMax` peer reads at once, on the commit pool (they read the log); past
    /// it, 503 (`overloaded`): peers cannot crowd out local commits.
    func servingPeer<Value: Sendable>(_ read: @escaping @Sendable () throws -> Value) async throws -> Value {
        let admitted = syncReads.value.wrappingAdd(1, ordering: .relaxed).newValue
        defer { syncReads.value.wrappingSubtract(1, ordering: .relaxed) }
        guard admitted <= Self.syncReadsMax else {
            throw APIError(.serviceUnavailable, "\(admitted - 1) peer reads are in progress; retry shortly", kind: "overloaded")
        }
        return try await commitPool.runIfActive(read)
    }

    static let syncReadsMax = 4

    /// A query parameter as an integer in `range`; 400 when it is malformed, out of range, or
    /// missing without a default.
    static func query(_ request: Request, _ name: String, in range: ClosedRange<UInt64>, default fallback: UInt64? = nil) throws -> UInt64 {
        guard let text = request.uri.queryParameters[name[...]] else {
            guard let fallback else { throw APIError(.badRequest, "the query parameter \(name) is required") }
            return fallback
        }
        guard let value = UInt64(text), range.contains(value) else {
            throw APIError(.badRequest, "\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got \(quoted(String(text)))")
        }
        return value
    }

    /// The whole body, at most `limit` bytes: 413 past it, 400 when it cannot be read (a broken
    /// chunked encoding, a connection closed mid-body), 503 when the bodies in transit on all
    /// connections already hold `api.max_body_bytes_in_flight` (memory stays bounded however
    /// many clients send at once). The bytes are reserved as they arrive, so a slow sender holds
    /// only what it has sent.
    private func collectBody(_ request: Request, limit: Int) async throws -> [UInt8] {
        var body: [UInt8] = []
        var reserved = 0
        defer { bodyBudget.release(reserved) }
        do {
            // Bounded: by `limit` bytes (and the connection guard's body timeout).
            for try await chunk in request.body {
                guard body.count + chunk.readableBytes <= limit else {
                    let key = limit == configuration.api.maxBodyBytes ? " (api.max_body_bytes)" : ""
                    throw APIError(.contentTooLarge, "the body exceeds \(limit) bytes\(key)")
                }
                guard bodyBudget.reserve(chunk.readableBytes) else {
                    throw APIError(
                        .serviceUnavailable, "request bodies in transit hold api.max_body_bytes_in_flight (\(bodyBudget.limit) bytes); retry shortly",
                        kind: "overloaded")
                }
                reserved += chunk.readableBytes
                body += chunk.readableBytesView
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.badRequest, "the request body could not be read: \(error)", kind: "malformed_http")
        }
        return body
    }

    private func status() -> StatusDocument {
        let roots = engine.stateRoots()
        let report = engine.recoveryReport
        let lanes = report.lanes.map {
            StatusDocument.LaneRecovery(
                lane: $0.lane, appliedHeightBefore: $0.appliedHeightBefore, recordsReplayed: $0.recordsReplayed,
                walBytesTruncated: $0.walBytesTruncated)
        }
        let recovery = StatusDocument.LastRecovery(
            height: report.height, metaRoot: report.metaRoot.hex, durationSeconds: Double(report.durationNanoseconds) / 1e9,
            uncommittedBlocksDropped: report.uncommittedBlocksDropped, lanes: lanes)
        return StatusDocument(
            chainID: configuration.node.chainID, height: roots.height, durableHeight: engine.durableHeight, metaRoot: roots.metaRoot.hex,
            laneRoots: roots.laneRoots.map(\.hex), fsyncPolicy: configuration.wal.fsyncPolicy.rawValue,
            wal: engine.walPositions.map { .init(partition: $0.partition.name, writtenLSN: $0.written, durableLSN: $0.durable) },
            api: .init(connections: connections.value, commitsInFlight: commitsInFlight), lastRecovery: recovery,
            sync: syncBoard?.snapshot.map { board in
                StatusDocument.Sync(
                    phase: board.phase.rawValue, targetHeight: board.targetHeight, lag: board.targetHeight.map { $0 > roots.height ? $0 - roots.height : 0 },
                    peers: board.peers.map { .init(url: $0.url, state: $0.state, faults: $0.faults) })
            })
    }
}

func stateRoots(_ roots: StateRoots) -> StateRootsDocument {
    StateRootsDocument(globalHeight: roots.height, metaRoot: roots.metaRoot.hex, laneRoots: roots.laneRoots.map(\.hex))
}

func stateRead(_ read: StateRead) -> StateReadDocument {
    let terminal: StateReadDocument.Terminal
    switch read.proof.terminal {
    case .included(let valueHash): terminal = .init(kind: "included", valueHash: valueHash.hex)
    case .empty: terminal = .init(kind: "empty")
    case .otherLeaf(let path, let valueHash): terminal = .init(kind: "other_leaf", valueHash: valueHash.hex, path: path.hex)
    }
    let laneProof = StateReadDocument.LaneProof(
        laneIndex: read.laneProof.laneIndex, laneCount: read.laneProof.laneCount, siblings: read.laneProof.siblings.map { $0?.hex })
    let proof = StateReadDocument.Proof(
        metaRoot: read.metaRoot.hex, laneRoot: read.laneRoot.hex, siblings: read.proof.siblings.map(\.hex), terminal: terminal,
        laneProof: laneProof)
    return StateReadDocument(
        key: String(decoding: read.key, as: UTF8.self), value: read.value.map { String(decoding: $0, as: UTF8.self) }, lane: read.lane,
        height: read.height, proof: proof)
}

/// A JSON answer: the document, encoded the one way (`JSONDocument`).
func json<Document: Encodable>(_ document: Document, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: JSONDocument.encodeBytes(document))))
}
/// An API error: its status, its kind (for `rivellum_errors_total`) and a message.
struct APIError: Error {
    var status: HTTPResponse.Status
    var kind: String
    var message: String

    init(_ status: HTTPResponse.Status, _ message: String, kind: String? = nil) {
        self.status = status
        self.message = message
        self.kind = kind ?? status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
    }
}

/// Turns every error into a JSON response and counts it.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = NodeRequestContext
    let metrics: NodeMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            metrics.countError(error.kind)
            return errorResponse(error.status, error.message, kind: error.kind)
        } catch let error as EngineError {
            metrics.countError(error.kind.rawValue)
            let status: HTTPResponse.Status = error.kind == .invalidInput ? .badRequest : .internalServerError
            if status == .internalServerError {
                logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            }
            return errorResponse(status, error.description, kind: error.kind.rawValue)
        } catch let error as HTTPResponseError {
            let kind = error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
            metrics.countError(kind)
            let message = error.status == .notFound ? "no route for \(request.method) \(request.uri.path)" : "\(error)"
            return errorResponse(error.status, message, kind: kind)
        } catch {
            metrics.countError("internal")
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return errorResponse(.internalServerError, "\(error)", kind: "internal")
        }
    }

    private func errorResponse(_ status: HTTPResponse.Status, _ message: String, kind: String) -> Response {
        var response = json(ErrorDocument(error: message, kind: kind), status: status)
        if status == .serviceUnavailable { response.headers[.retryAfter] = "1" }
        return response
    }
}

/// Decodes `POST /v1/blocks` bodies: `{"ops": [{"key": "k", "value": "v"}, {"key": "k2", "value":
/// null}]}` with UTF-8 strings; `null` deletes. Unknown fields, a missing `value`, non-string keys
/// or values are 400; too many operations or oversized keys or values are 413.
public struct BlockRequestDecoder: Sendable {
    public var limits: NodeConfiguration.APISection

    public init(limits: NodeConfiguration.APISection) {
        self.limits = limits
    }

    public func decode(_ bytes: [UInt8]) throws -> [StateOperation] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw APIError(.badRequest, "the body is not valid JSON: \(detail)", kind: "malformed_json")
        }
        guard let top = object as? [String: Any] else { throw APIError(.badRequest, "the body must be a JSON object with \"ops\"") }
        if let unknown = top.keys.first(where: { $0 != "ops" }) {
            throw APIError(.badRequest, "unknown field \(quoted(unknown)); a block is {\"ops\": [...]}")
        }
        guard let list = top["ops"] as? [Any] else { throw APIError(.badRequest, "\"ops\" must be an array") }
        guard list.count <= limits.maxOperationsPerBlock else {
            throw APIError(.contentTooLarge, "\(list.count) operations; the limit is \(limits.maxOperationsPerBlock) (api.max_ops_per_block)")
        }
        var operations: [StateOperation] = []
        operations.reserveCapacity(list.count)
        for (index, item) in list.enumerated() {
            guard let entry = item as? [String: Any] else { throw APIError(.badRequest, "ops[\(index)] must be an object") }
            if let unknown = entry.keys.first(where: { $0 != "key" && $0 != "value" }) {
                throw APIError(.badRequest, "ops[\(index)]: unknown field \(quoted(unknown))")
            }
            guard let key = entry["key"] as? String, !key.isEmpty else {
                throw APIError(.badRequest, "ops[\(index)].key must be a non-empty string")
            }
            guard key.utf8.count <= limits.maxKeyBytes else {
                throw APIError(.contentTooLarge, "ops[\(index)].key is \(key.utf8.count) bytes; the limit is \(limits.maxKeyBytes) (api.max_key_bytes)")
            }
            guard let rawValue = entry["value"] else {
                throw APIError(.badRequest, "ops[\(index)].value is missing (a string, or null to delete)")
            }
            if rawValue is NSNull {
                operations.append(StateOperation(key: Array(key.utf8), value: nil))
                continue
            }
            guard let value = rawValue as? String else {
                throw APIError(.badRequest, "ops[\(index)].value must be a string or null")
            }
            guard value.utf8.count <= limits.maxValueBytes else {
                throw APIError(
                    .contentTooLarge, "ops[\(index)].value is \(value.utf8.count) bytes; the limit is \(limits.maxValueBytes) (api.max_value_bytes)")
            }
            operations.append(StateOperation(key: Array(key.utf8), value: Array(value.utf8)))
        }
        return operations
    }
}

/// Bytes reserved by request bodies in transit, up to `limit` (admission control for memory).
final class ByteBudget: Sendable {
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// Takes `count` bytes if they fit; false (and nothing taken) otherwise.
    func reserve(_ count: Int) -> Bool {
        precondition(count >= 0, "a negative reservation")
        let after = used.wrappingAdd(count, ordering: .relaxed).newValue
        if after <= limit { return true }
        used.wrappingSubtract(count, ordering: .relaxed)
        return false
    }

    func release(_ count: Int) {
        let after = used.wrappingSubtract(count, ordering: .relaxed).newValue
        assert(after >= 0, "released more body bytes than were reserved")
    }
}

/// The number of commits being processed (admission control).
final class InflightCounter: Sendable {
    let value = Atomic<Int>(0)
}

/// The request context: Hummingbird's core storage plus the peer's address (for the
/// loopback-only admin endpoints).
public struct NodeRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
