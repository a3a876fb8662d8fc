import Documents
import Foundation
import Node
import NodeHarness
import PeerSync
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP listener on loopback for the transport's failure cases: it accepts (or not) and then
/// answers with what `serve` writes, on its own thread.
final class RawLoopbackServer: @unchecked Sendable {
    let descriptor: Int32
    let port: Int

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        try #require(bound && listen(listener, 16) == 0)
        descriptor = listener
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Accepts one connection and hands it to `serve` on a new thread.
    func serveOne(_ serve: @escaping @Sendable (Int32) -> Void) {
        let descriptor = self.descriptor
        Thread.detachNewThread {
            let connection = accept(descriptor, nil, nil)
            guard connection >= 0 else { return }
            serve(connection)
            close(connection)
        }
    }

    static func write(_ connection: Int32, _ text: String) {
        _ = text.utf8CString.withUnsafeBufferPointer { send(connection, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
    }

    deinit { close(descriptor) }
}

/// Runs the jobs of the tasks that prefer it on one thread of its own. The other suites block
/// the cooperative pool's threads (two on a two-core machine) with synchronous socket and
/// process work for minutes, which would stall these tests' continuations and turn every time
/// limit into a measure of the pool's backlog (CI saw an 0.5 s limit take 84 s).
final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = DedicatedThreadExecutor()

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []

    private init() {
        let thread = Thread { [unowned self] in self.runJobs() }
        thread.name = "transport-tests"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Bounded by the jobs enqueued; the thread lives as long as the test process.
    private func runJobs() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// A transport whose exchanges (and this test's continuations) run on `DedicatedThreadExecutor`.
func withTransportOnItsOwnThread(_ body: (HTTPPeerTransport) async throws -> Void) async throws {
    try await withTaskExecutorPreference(DedicatedThreadExecutor.shared) {
        try await HTTPPeerTransport.withTransport(body)
    }
}

/// The network seam's production transport against a real node and against peers that fail in
/// each way the contract names: every failure is a typed `PeerTransportError` within the
/// request's time limit, and no answer is ever longer than the request allows.
@Suite("HTTPPeerTransport (async-http-client) against a real node and broken peers")
struct HTTPPeerTransportTests {
    @Test func aRealNodeAnswersAndAnOversizedAnswerIsRefused() async throws {
        let scratch = ScratchDirectory("transport")
        let node = try startNode(scratch, api: "")
        defer { node.terminate() }
        let base = "http://127.0.0.1:\(node.port)"
        try await withTransportOnItsOwnThread { transport in
            let health = try await transport.exchange(PeerRequest(.get, baseURL: base, path: "/health", timeoutSeconds: 5))
            #expect(health.status == 200)
            let posted = try await transport.exchange(
                PeerRequest(.post, baseURL: base, path: "/v1/blocks", body: Array(#"{"ops":[{"key":"k","value":"v"}]}"#.utf8),
                    contentType: "application/json", timeoutSeconds: 5))
            #expect(posted.status == 200, "\(posted.text)")
            #expect(posted.headers["content-type"]?.hasPrefix("application/json") == true)
            do {
                _ = try await transport.exchange(PeerRequest(.get, baseURL: base, path: "/v1/status", timeoutSeconds: 5, responseBytesMax: 8))
                Issue.record("a 8-byte bound let a whole status through")
            } catch let error as PeerTransportError {
                #expect(error.kind == .responseTooLarge, "\(error)")
            }
        }
    }

    @Test func aClosedPortIsUnreachableAndABadURLIsInvalid() async throws {
        let closedPort = try RawLoopbackServer().port  // closed again when the listener is released
        try await withTransportOnItsOwnThread { transport in
            do {
                _ = try await transport.exchange(PeerRequest(.get, baseURL: "http://127.0.0.1:\(closedPort)", path: "/health", timeoutSeconds: 5))
                Issue.record("a closed port answered")
            } catch let error as PeerTransportError {
                #expect(error.kind == .unreachable, "\(error)")
            }
            do {
                _ = try await transport.exchange(PeerRequest(.get, baseURL: "ftp://127.0.0.1:1", path: "/health", timeoutSeconds: 5))
                Issue.record("an ftp URL was fetched")
            } catch let error as PeerTransportError {
                #expect(error.kind == .invalidURL, "\(error)")
            }
        }
    }

    /// A peer that never answers, and one that sends its head at once and then trickles its
    /// body, are both cut off by the request's limit (the body counts against it too). Each
    /// holds its connection for 60 s and then closes it: without the limit the exchange would end
    /// then as `unreachable` (closed before a whole answer), so `timedOut` shows the limit was
    /// applied — no clock is read by the test. (60 s, not less: on a loaded 2-core machine the
    /// suites beside this one have held its 0.5 s deadline off for more than 10 s.)
    @Test func silentAndTricklingPeersTimeOut() async throws {
        let silent = try RawLoopbackServer()
        silent.serveOne { _ in usleep(60_000_000) }
        let trickling = try RawLoopbackServer()
        trickling.serveOne { connection in
            RawLoopbackServer.write(connection, "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
            for _ in 0..<600 {
                RawLoopbackServer.write(connection, "x")
                usleep(100_000)
            }
        }
        try await withTransportOnItsOwnThread { transport in
            for server in [silent, trickling] {
                do {
                    _ = try await transport.exchange(PeerRequest(.get, baseURL: "http://127.0.0.1:\(server.port)", path: "/x", timeoutSeconds: 0.5))
                    Issue.record("a peer that never finished its answer was answered")
                } catch let error as PeerTransportError {
                    #expect(error.kind == .timedOut, "\(server === silent ? "silent" : "trickling") peer: \(error)")
                }
            }
        }
    }

    @Test func aSnapshotResultRoundTripsThroughItsJSON() throws {
        let json = #"{"bytes":10,"files":2,"height":5,"meta_root":"ab","path":"/s","seconds":0.5,"verified":true}"#
        let decoded = try JSONDocument.decode(SnapshotCreated.self, from: Array(json.utf8))
        #expect(decoded.height == 5 && decoded.metaRoot == "ab" && decoded.files == 2)
        #expect(JSONDocument.encode(decoded) == json)
        #expect((try? JSONDocument.decode(SnapshotCreated.self, from: Array(#"{"height":5}"#.utf8))) == nil)
    }
}
