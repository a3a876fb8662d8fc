import Documents
import FaultFS
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// The node's HTTP/1.1 child channel: Hummingbird's, with a guard in front of every
/// connection. The guard enforces `api.max_connections` (a connection past it is answered 503
/// and closed at once; the established ones keep being served), the head, body and idle
/// timeouts of `ConnectionDeadlines`, and the close after an early response.
struct GuardedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let inner: HTTP1Channel
    let limits: ConnectionDeadlines.Limits
    let connections: ConnectionCounter
    let maxConnections: Int
    let metrics: NodeMetrics

    init(
        responder: @escaping HTTPChannelHandler.Responder, api: NodeConfiguration.APISection, connections: ConnectionCounter,
        metrics: NodeMetrics
    ) {
        inner = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [HTTPExchangeObserver()]))
        limits = ConnectionDeadlines.Limits(
            headNanoseconds: api.requestHeadTimeoutMilliseconds * 1_000_000, bodyNanoseconds: api.requestBodyTimeoutMilliseconds * 1_000_000,
            idleNanoseconds: api.idleTimeoutMilliseconds * 1_000_000, lingerNanoseconds: ConnectionGuardHandler.lingerNanoseconds)
        self.connections = connections
        self.maxConnections = api.maxConnections
        self.metrics = metrics
    }

    /// The server builder for `Application(server:)`.
    static func builder(api: NodeConfiguration.APISection, connections: ConnectionCounter, metrics: NodeMetrics) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, api: api, connections: connections, metrics: metrics) }
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let open = connections.opened()
        let connections = self.connections
        channel.closeFuture.whenComplete { _ in connections.closed() }
        let refused = open > maxConnections
        if refused { metrics.countError("too_many_connections") }
        let handler = ConnectionGuardHandler(
            limits: limits, refusal: refused ? ConnectionGuardHandler.refusal(maxConnections: maxConnections) : nil, metrics: metrics)
        do {
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

/// How many connections are open now (refused ones included until they close).
final class ConnectionCounter: Sendable {
    private let count = Atomic<Int>(0)

    var value: Int { count.load(ordering: .relaxed) }

    /// Counts a new connection; returns the number open including it.
    func opened() -> Int { count.wrappingAdd(1, ordering: .relaxed).newValue }

    func closed() { count.wrappingSubtract(1, ordering: .relaxed) }
}

/// The first handler of every connection's pipeline: it sees raw bytes. It runs the
/// connection's `ConnectionDeadlines` (fed by `HTTPExchangeObserver` with the HTTP events),
/// writes the 408 and 503 answers itself, and while lingering or closing discards what
/// arrives. Event-loop confined, like every channel handler.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// How long a connection may go on sending after an early response, a 408 or a 503 (it is
    /// half-closed: it reads the answer and EOF) before it is closed.
    static let lingerNanoseconds: UInt64 = 2_000_000_000
    /// How much a lingering connection may send before it is closed.
    static let lingerMaxBytes = 32 << 20

    private(set) var deadlines: ConnectionDeadlines
    private let refusal: [UInt8]?
    private let metrics: NodeMetrics
    private var context: ChannelHandlerContext?
    private var scheduled: (task: Scheduled<Void>, deadline: UInt64)?
    private var discardedBytes = 0
    /// A 408 or 503 went out (or is going): the connection only drains until it closes.
    private var closing = false

    init(limits: ConnectionDeadlines.Limits, refusal: [UInt8]?, metrics: NodeMetrics) {
        self.deadlines = ConnectionDeadlines(limits: limits, now: Self.now())
        self.refusal = refusal
        self.metrics = metrics
    }

    static func now() -> UInt64 { NIODeadline.now().uptimeNanoseconds }

    /// The 503 a connection past `api.max_connections` gets before it is closed.
    static func refusal(maxConnections: Int) -> [UInt8] {
        rawResponse(
            "503 Service Unavailable",
            ErrorDocument(
                error: "the node already holds api.max_connections (\(maxConnections)) connections; retry shortly", kind: "too_many_connections"),
            extraHeaders: "retry-after: 1\r\n")
    }

    /// A whole HTTP/1.1 response with a JSON body and `connection: close`.
    static func rawResponse(_ status: String, _ error: ErrorDocument, extraHeaders: String = "") -> [UInt8] {
        let body = JSONDocument.encode(error)
        return Array(
            ("HTTP/1.1 \(status)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n"
                + extraHeaders + "connection: close\r\n\r\n" + body).utf8)
    }

    /// Inbound bytes are dropped (the connection is refused, lingering or closing).
    var isDiscarding: Bool { refusal != nil || deadlines.isLingering || closing }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        // The timers may run from here; a write waits for channelActive (an accepted channel is
        // not registered with its event loop yet while its pipeline is set up).
        self.context = context
        reschedule()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.task.cancel()
        scheduled = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal { respondAndClose(context, refusal) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if isDiscarding {
            discardedBytes += unwrapInboundIn(data).readableBytes
            if discardedBytes > Self.lingerMaxBytes { closeNow(context) }
            return
        }
        deadlines.bytesArrived(now: Self.now())
        reschedule()
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if isDiscarding {
            // Keep draining what the client sends: nothing downstream asks for it any more.
            context.read()
            return
        }
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        deadlines.writabilityChanged(writable: context.channel.isWritable, now: Self.now())
        reschedule()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, isDiscarding {
            closeNow(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: From the HTTP observer

    func headReceived() {
        deadlines.headReceived(now: Self.now())
        reschedule()
    }

    func requestEnded() {
        deadlines.requestEnded()
        reschedule()
    }

    /// Returns whether the response is early (it must carry `Connection: close`).
    func responseHeadWritten() -> Bool {
        let early = deadlines.responseHeadWritten()
        reschedule()
        return early
    }

    /// A response's end has been written (and flushed) to the socket.
    func responseEnded(early: Bool) {
        deadlines.responseEnded(now: Self.now(), early: early)
        if early, let context { halfCloseAndDrain(context) }
        reschedule()
    }

    // MARK: Timers

    private func reschedule() {
        guard let context, let deadline = deadlines.deadline else { return }
        if let scheduled, scheduled.deadline <= deadline { return }
        scheduled?.task.cancel()
        let task = context.eventLoop.assumeIsolated().scheduleTask(deadline: NIODeadline.uptimeNanoseconds(deadline)) { [self] in
            self.scheduled = nil
            self.deadlineReached()
        }
        scheduled = (task, deadline)
    }

    private func deadlineReached() {
        guard let context, !closing else { return }
        switch deadlines.expiry(now: Self.now()) {
        case .none:
            reschedule()
        case .close:
            closeNow(context)
        case .respondTimeoutThenClose:
            metrics.countError("request_timeout")
            let (what, key) = deadlines.phase == .readingHead ? ("request head", "request_head_timeout_ms") : ("request body", "request_body_timeout_ms")
            respondAndClose(
                context,
                Self.rawResponse("408 Request Timeout", ErrorDocument(error: "the \(what) did not arrive in time (api.\(key))", kind: "request_timeout")))
        }
    }

    /// Writes `bytes` (a whole response), then half-closes and drains; closes for good when the
    /// client closes, `lingerMaxBytes` arrive or `lingerNanoseconds` pass, whichever is first,
    /// even if the write never completes (a client that does not read).
    private func respondAndClose(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        closing = true
        scheduled?.task.cancel()
        scheduled = nil
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(bytes: bytes))), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { [self] _ in
            if let context = self.context { self.halfCloseAndDrain(context) }
        }
        context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(Self.lingerNanoseconds))) { [self] in
            if let context = self.context { self.closeNow(context) }
        }
    }

    /// The client reads what was sent and EOF; what it still sends is read and dropped.
    private func halfCloseAndDrain(_ context: ChannelHandlerContext) {
        context.close(mode: .output, promise: nil)
        context.read()
    }

    private func closeNow(_ context: ChannelHandlerContext) {
        closing = true
        scheduled?.task.cancel()
        scheduled = nil
        context.close(promise: nil)
    }
}

/// Sits after the HTTP codec: tells the guard where each exchange is, marks early responses
/// `Connection: close` (and stops passing requests on after one), and answers a request that
/// cannot be parsed with a JSON 400 instead of Hummingbird's empty one.
final class HTTPExchangeObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var guardHandler: ConnectionGuardHandler?
    /// Whether each response whose head went out and whose end has not is early (pipelined
    /// responses overlap: Hummingbird may write the next head before the previous end flushed).
    private var earlyFlags: [Bool] = []
    /// An early head went out: nothing more is passed on to Hummingbird.
    private var stopForwarding = false
    /// A parse error was passed on to Hummingbird, which answers it with an empty 400: that
    /// answer gets the JSON body.
    private var parseErrorForwarded = false
    private var pendingErrorBody: ByteBuffer?

    func handlerAdded(context: ChannelHandlerContext) {
        guardHandler = try? context.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
        assert(guardHandler != nil, "HTTPExchangeObserver needs a ConnectionGuardHandler first in the pipeline")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !stopForwarding else { return }
        switch unwrapInboundIn(data) {
        case .head: guardHandler?.headReceived()
        case .body: break
        case .end: guardHandler?.requestEnded()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let guardHandler, !guardHandler.isDiscarding else {
            // After an early response, a 408 or a 503 nothing more goes out.
            promise?.fail(ChannelError.outputClosed)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(var response):
            if response.status.kind == .informational {
                context.write(data, promise: promise)
                return
            }
            let early = guardHandler.responseHeadWritten()
            earlyFlags.append(early)
            if early {
                response.headerFields[.connection] = "close"
                stopForwarding = true
            }
            if parseErrorForwarded, response.status == .badRequest, response.headerFields[.contentLength] == "0" {
                parseErrorForwarded = false
                let body = Self.malformedBody("the request is not valid HTTP/1.1")
                response.headerFields[.contentType] = "application/json"
                response.headerFields[.contentLength] = "\(body.readableBytes)"
                pendingErrorBody = body
            }
            context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            if let body = pendingErrorBody {
                pendingErrorBody = nil
                context.write(wrapOutboundOut(.body(body)), promise: nil)
            }
            let early = earlyFlags.isEmpty ? false : earlyFlags.removeFirst()
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenSuccess { [weak guardHandler] in guardHandler?.responseEnded(early: early) }
        }
    }

    static func malformedBody(_ message: String) -> ByteBuffer {
        ByteBuffer(bytes: JSONDocument.encodeBytes(ErrorDocument(error: String(message.prefix(300)), kind: "malformed_http")))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let guardHandler, !guardHandler.isDiscarding else { return }
        // A socket error is no parse error: the connection is going; pass it on.
        if error is IOError || error is ChannelError {
            context.fireErrorCaught(error)
            return
        }
        let phase = guardHandler.deadlines.phase
        guard phase == .awaitingRequest || phase == .readingHead else {
            // A request is under way: its handler sees the error (reading the body fails: 400),
            // or Hummingbird answers it (its 400 gets the JSON body in `write`).
            parseErrorForwarded = true
            context.fireErrorCaught(error)
            return
        }
        // The request could not be parsed: answer it here, then close. Hummingbird never saw a
        // request, so nothing else will answer.
        let body = Self.malformedBody("the request is not valid HTTP/1.1: \(error)")
        _ = guardHandler.responseHeadWritten()
        stopForwarding = true
        let head = HTTPResponse(
            status: .badRequest, headerFields: [.contentType: "application/json", .contentLength: "\(body.readableBytes)", .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { [weak guardHandler] _ in guardHandler?.responseEnded(early: true) }
    }
}
