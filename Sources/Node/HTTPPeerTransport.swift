import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import PeerSync

/// The production `PeerTransport`: plain HTTP/1.1 through swift-server's async-http-client.
/// Redirects are refused (a peer does not get to send this node elsewhere), the body is
/// collected up to the request's bound, and the whole exchange (connect, head, body) is bounded
/// by the request's time limit. A refused connection is `unreachable` at once (no retries
/// inside the client). Create it with `withTransport`, which shuts the client down.
public final class HTTPPeerTransport: PeerTransport {
    private let client: HTTPClient

    private init() {
        // A refused connection fails at once: retrying (when, how often, which peer next) is the
        // caller's decision, made where the simulator can run it, not hidden in the client.
        var pool = HTTPClient.Configuration.ConnectionPool()
        pool.retryConnectionEstablishment = false
        let configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)), connectionPool: pool, decompression: .disabled)
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    /// Runs `body` with a transport, and shuts its client down afterwards (also on a throw).
    public static func withTransport<Result: Sendable>(
        _ body: (HTTPPeerTransport) async throws -> Result
    ) async rethrows -> Result {
        let transport = HTTPPeerTransport()
        do {
            let result = try await body(transport)
            try? await transport.client.shutdown()
            return result
        } catch {
            try? await transport.client.shutdown()
            throw error
        }
    }

    public func exchange(_ request: PeerRequest) async throws(PeerTransportError) -> PeerResponse {
        guard request.baseURL.hasPrefix("http://") else {
            throw PeerTransportError(.invalidURL, request: request, "a peer's address is http://host:port")
        }
        var outgoing = HTTPClientRequest(url: request.baseURL + request.path)
        outgoing.method = request.method == .get ? .GET : .POST
        if let contentType = request.contentType { outgoing.headers.add(name: "content-type", value: contentType) }
        for (name, value) in request.headers.sorted(by: { $0.key < $1.key }) { outgoing.headers.add(name: name, value: value) }
        if !request.body.isEmpty { outgoing.body = .bytes(ByteBuffer(bytes: request.body)) }
        let deadline = NIODeadline.now() + .nanoseconds(Int64(request.timeoutSeconds * 1e9))
        do {
            return try await Self.exchange(outgoing, client: client, deadline: deadline, responseBytesMax: request.responseBytesMax)
        } catch let error as NIOTooManyBytesError {
            throw PeerTransportError(.responseTooLarge, request: request, "more than \(request.responseBytesMax) bytes (\(error))")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout {
            throw PeerTransportError(.timedOut, request: request, "no whole answer within \(request.timeoutSeconds) s (\(error))")
        } catch let error as HTTPClientError where error == .cancelled {
            throw PeerTransportError(.timedOut, request: request, "cancelled before a whole answer came (\(error))")
        } catch is CancellationError {
            throw PeerTransportError(.timedOut, request: request, "cancelled before a whole answer came")
        } catch let error as HTTPClientError where error == .invalidURL || error == .emptyHost {
            throw PeerTransportError(.invalidURL, request: request, "\(error)")
        } catch {
            // Refused, reset, unreachable, or no connection within the 5 s connect limit.
            throw PeerTransportError(.unreachable, request: request, "\(error)")
        }
    }

    /// One exchange, the body collected within the same deadline as the head: a peer that
    /// answers the head at once and then trickles its body is cut off at the deadline too.
    private static func exchange(
        _ request: HTTPClientRequest, client: HTTPClient, deadline: NIODeadline, responseBytesMax: Int
    ) async throws -> PeerResponse {
        try await withThrowingTaskGroup(of: PeerResponse?.self) { group in
            group.addTask {
                let response = try await client.execute(request, deadline: deadline)
                let body = try await response.body.collect(upTo: responseBytesMax)
                var headers: [String: String] = [:]
                for (name, value) in response.headers { headers[name.lowercased()] = value }
                return PeerResponse(status: Int(response.status.code), headers: headers, body: Array(buffer: body))
            }
            group.addTask {
                // The timer runs on an event loop, not on the concurrency pool's clock, so a
                // busy pool cannot stretch the limit; cancelled when the exchange wins.
                let timer = client.eventLoopGroup.next().scheduleTask(deadline: deadline) {}
                try await withTaskCancellationHandler {
                    try await timer.futureResult.get()
                } onCancel: {
                    timer.cancel()
                }
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let response = first else { throw HTTPClientError.deadlineExceeded }
            return response
        }
    }
}
