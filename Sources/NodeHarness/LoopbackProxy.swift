import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP proxy on a free loopback port in front of one upstream node, for end-to-end tests
/// of a network that is slow or lies: every request (GET only, one per connection) goes to the
/// upstream through `LoopbackHTTP` after `rewritePath`, and its answer back after `delay` and
/// `transform`. A `Range` header goes up and a `Content-Range` header comes back. Each
/// connection gets its own thread; `stop` closes the listener. Test use only.
public final class LoopbackProxy: Sendable {
    public typealias Transform = @Sendable (_ path: String, _ response: LoopbackHTTP.Response) -> LoopbackHTTP.Response

    public let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let rewritePath: @Sendable (String) -> String
    private let transform: Transform
    private let delayMilliseconds: Int
    private let stopped = Atomic<Bool>(false)
    private let served = Atomic<Int>(0)
    private let bodyBytes = Atomic<Int>(0)

    /// Requests answered so far.
    public var requestsServed: Int { served.load(ordering: .relaxed) }
    /// Body bytes of the answers sent so far.
    public var bodyBytesServed: Int { bodyBytes.load(ordering: .relaxed) }

    public init(
        upstreamPort: Int, delayMilliseconds: Int = 0, rewritePath: @escaping @Sendable (String) -> String = { $0 },
        transform: @escaping Transform = { $1 }
    ) throws(LoopbackHTTP.Failure) {
        precondition(delayMilliseconds >= 0 && delayMilliseconds <= 60_000, "a delay of at most a minute")
        self.upstreamPort = upstreamPort
        self.delayMilliseconds = delayMilliseconds
        self.rewritePath = rewritePath
        self.transform = transform
        (listener, port) = try bindLoopbackSocket(listenBacklog: 128)
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting: the listener is shut down here and closed by the accept thread once
    /// `accept` has returned (so its descriptor number is never reused under it). The accept
    /// thread holds the proxy until then; call `stop` when done (tests use `defer`).
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    private func acceptLoop() {
        defer { Glibc.close(listener) }
        // Bounded: ends when `stop` shuts the listener down (accept fails).
        while !stopped.load(ordering: .acquiring) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { return }
            if stopped.load(ordering: .acquiring) {
                Glibc.close(client)
                return
            }
            Thread.detachNewThread { [self] in serve(client) }
        }
    }

    private func serve(_ client: Int32) {
        defer { Glibc.close(client) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard let (path, range) = Self.readRequestHead(client) else { return }
        let upstream: LoopbackHTTP.Response
        do {
            upstream = try LoopbackHTTP.request("GET", rewritePath(path), port: upstreamPort, extraHeaders: range.map { ["Range: \($0)"] } ?? [])
        } catch {
            return
        }
        if delayMilliseconds > 0 { usleep(UInt32(delayMilliseconds) * 1_000) }
        let answer = transform(path, upstream)
        var head = "HTTP/1.1 \(answer.status) Proxied\r\nContent-Length: \(answer.body.count)\r\nConnection: close\r\n"
        if let type = answer.headers["content-type"] { head += "Content-Type: \(type)\r\n" }
        if let range = answer.headers["content-range"] { head += "Content-Range: \(range)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + answer.body
        var sent = 0
        // Bounded: each send moves at least one byte or ends the loop.
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
        served.add(1, ordering: .relaxed)
        bodyBytes.add(answer.body.count, ordering: .relaxed)
    }

    /// The path and `Range` header of a GET request's head (read up to 16 KiB), nil for anything else.
    private static func readRequestHead(_ client: Int32) -> (path: String, range: String?)? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4_096)
        // Bounded: 16 KiB of head at most.
        while bytes.count < 16 << 10, !bytes.ends(with: Array("\r\n\r\n".utf8)) {
            let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return nil }
            bytes += chunk[0..<count]
        }
        let lines = String(decoding: bytes, as: UTF8.self).components(separatedBy: "\r\n")
        let line = (lines.first ?? "").split(separator: " ")
        guard line.count == 3, line[0] == "GET" else { return nil }
        let range = lines.dropFirst().first { $0.lowercased().hasPrefix("range:") }.map { String($0.dropFirst("range:".count)).trimmingCharacters(in: .whitespaces) }
        return (String(line[1]), range)
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
