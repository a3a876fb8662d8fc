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

    init(responder: @escaping HTTPChannelHandler.Responder, api: NodeConfiguration.APISection, connections: ConnectionCounter, metrics: NodeMetrics) {
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
/// writes the 408 and 503 answers itself, and during lingering discards what arrives.
/// Event-loop confined, like every channel handler.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// How long an early response's connection may go on sending before it is closed.
    static let lingerNanoseconds: UInt64 = 2_000_000_000
    /// How much a lingering connection may send before it is closed.
    static let lingerMaxBytes = 32 << 20

    private(set) var deadlines: ConnectionDeadlines
    private let refusal: [UInt8]?
    private let metrics: NodeMetrics
    private var context: ChannelHandlerContext?
    private var scheduled: (task: Scheduled<Void>, deadline: UInt64)?
    private var discardedBytes = 0
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
            #"{"error":"the node already holds api.max_connections (\#(maxConnections)) connections; retry shortly","kind":"too_many_connections"}"#,
            extraHeaders: "retry-after: 1\r\n")
    }

    static func rawResponse(_ status: String, _ body: String, extraHeaders: String = "") -> [UInt8] {
        Array(
            ("HTTP/1.1 \(status)\r\ncontent-type: application/json\r\ncontent-length: \(body.utf8.count)\r\n"
                + extraHeaders + "connection: close\r\n\r\n" + body).utf8)
    }

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
        start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        if let refusal { respondAndClose(context, refusal) }
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
    func responseHeadWritten() -> Bool { deadlines.responseHeadWritten() }

    /// The response's end has been written (and flushed) to the socket.
    func responseEnded(early: Bool) {
        deadlines.responseEnded(now: Self.now(), early: early)
        if early, let context {
            // Half-close: the client reads the response and EOF; what it still sends is read and
            // dropped until it closes, the linger time passes or lingerMaxBytes arrive.
            context.close(mode: .output, promise: nil)
            context.read()
        }
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
        guard let context else { return }
        switch deadlines.expiry(now: Self.now()) {
        case .none:
            reschedule()
        case .close:
            closeNow(context)
        case .respondTimeoutThenClose:
            metrics.countError("request_timeout")
            let what = deadlines.phase == .readingHead ? "request head" : "request body"
            respondAndClose(
                context,
                Self.rawResponse(
                    "408 Request Timeout",
                    #"{"error":"the \#(what) did not arrive in time (api.request_\#(what == "request head" ? "head" : "body")_timeout_ms)","kind":"request_timeout"}"#))
        }
    }

    private func respondAndClose(_ context: ChannelHandlerContext, _ bytes: [UInt8]) {
        closing = true
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(ByteBuffer(bytes: bytes))), promise: promise)
        promise.futureResult.assumeIsolated().whenComplete { [self] _ in
            if let context = self.context { self.closeNow(context) }
        }
    }

    private func closeNow(_ context: ChannelHandlerContext) {
        closing = true
        scheduled?.task.cancel()
        scheduled = nil
        context.close(promise: nil)
    }
}

/// Sits after the HTTP codec: tells the guard where each exchange is, marks early responses
/// `Connection: close`, and answers a request that cannot be parsed with a JSON 400 (instead
/// of Hummingbird's empty one) when no other response is under way.
final class HTTPExchangeObserver: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private var guardHandler: ConnectionGuardHandler?
    private var currentIsEarly = false

    func handlerAdded(context: ChannelHandlerContext) {
        guardHandler = try? context.pipeline.syncOperations.handler(type: ConnectionGuardHandler.self)
        assert(guardHandler != nil, "HTTPExchangeObserver needs a ConnectionGuardHandler first in the pipeline")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: guardHandler?.headReceived()
        case .body: break
        case .end: guardHandler?.requestEnded()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let guardHandler, !guardHandler.deadlines.isLingering else {
            // After an early response nothing more goes out (Hummingbird may try a second answer).
            promise?.fail(ChannelError.outputClosed)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(var response):
            currentIsEarly = guardHandler.responseHeadWritten()
            if currentIsEarly { response.headerFields[.connection] = "close" }
            context.write(wrapOutboundOut(.head(response)), promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            let early = currentIsEarly
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenSuccess { [weak guardHandler] in guardHandler?.responseEnded(early: early) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let guardHandler, !guardHandler.isDiscarding else { return }
        let deadlines = guardHandler.deadlines
        guard deadlines.phase == .awaitingRequest || deadlines.phase == .readingHead else {
            // A request is under way: its handler sees the error (reading the body fails: 400).
            context.fireErrorCaught(error)
            return
        }
        // The request could not be parsed: answer it here, then close. Hummingbird never saw a
        // request, so nothing else will answer.
        let body = "{\"error\":\(jsonString("the request is not valid HTTP/1.1: \(String(describing: error).prefix(200))")),\"kind\":\"malformed_http\"}"
        let bytes = ByteBuffer(string: body)
        _ = guardHandler.responseHeadWritten()
        currentIsEarly = true
        let head = HTTPResponse(
            status: .badRequest,
            headerFields: [.contentType: "application/json", .contentLength: "\(bytes.readableBytes)", .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(bytes)), promise: nil)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { [weak guardHandler] _ in guardHandler?.responseEnded(early: true) }
    }
}
