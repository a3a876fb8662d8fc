import Foundation
import NodeHarness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Starts the real node with `apiSection` appended to its `[api]` section.
func startNode(_ scratch: ScratchDirectory, api apiSection: String) throws -> NodeProcess {
    let config = scratch.file("node.toml", "[node]\ndata_dir = \"\(scratch.path)/data\"\n[api]\n\(apiSection)\n")
    return try NodeProcess.start(binary: NodeProcess.siblingBinary(), arguments: ["--config", config], logPath: scratch.path + "/node.log")
}

/// Raises this process's open-file limit to its hard limit (the tests hold thousands of sockets).
func raiseOwnOpenFileLimit(atLeast needed: Int) throws {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    try #require(limit.rlim_cur >= rlim_t(needed), "this machine allows \(limit.rlim_cur) open files; the test needs \(needed)")
}

@Suite("rivellum-node's HTTP surface under slow, idle and hostile clients (real binary)", .serialized)
struct NodeHTTPLimitsTests {
    /// 2,000 slow connections are held; a fresh client is still answered at once (within a
    /// second), and the held ones are answered 408 and closed once their timeouts pass.
    @Test func heldSlowConnectionsNeitherStarveFreshClientsNorStayForever() throws {
        try raiseOwnOpenFileLimit(atLeast: 2_100)
        let scratch = ScratchDirectory("slow")
        let timeoutSeconds = 20.0
        let node = try startNode(scratch, api: "request_head_timeout_ms = 20000\nrequest_body_timeout_ms = 20000\nidle_timeout_ms = 20000")
        defer { node.terminate() }
        let opened = Date()
        var slow = SlowConnections(count: 2_000, port: node.port)
        defer { slow.closeAll() }
        #expect(slow.failures.isEmpty, "\(slow.failures.prefix(3))")
        let held = slow.connections
        // Bounded: up to 15 s for the node to accept them all.
        var connections = 0
        for _ in 0..<150 where connections < 2_000 {
            let status = try jsonObject(try get(node.port, "/v1/status"))
            connections = try #require((status["api"] as? [String: Any])?["connections"] as? Int)
            if connections < 2_000 { usleep(100_000) }
        }
        #expect(connections >= 2_000, "the node holds \(connections) connections")

        // A fresh client, with one second to get each answer.
        let health = try LoopbackHTTP.request("GET", "/health", port: node.port, timeoutSeconds: 1)
        #expect(health.status == 200)
        let commit = try LoopbackHTTP.request(
            "POST", "/v1/blocks", port: node.port, body: Array(#"{"ops": [{"key": "k", "value": "v"}]}"#.utf8), timeoutSeconds: 1)
        #expect(commit.status == 200, "\(commit.text)")
        #expect(Date().timeIntervalSince(opened) < timeoutSeconds, "the fresh requests must run while the slow ones are still held")

        // Every held connection is answered 408 (a response is still possible: none began) and
        // closed after its timeout.
        var timedOut = 0
        for connection in held {
            connection.setTimeout(seconds: 30)
            let (bytes, ending) = connection.readUntilEnd(limitBytes: 1 << 16)
            #expect(ending != .timedOut, "a held connection stayed open")
            if String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 408") { timedOut += 1 }
        }
        #expect(timedOut == held.count, "\(timedOut) of \(held.count) got 408")
        #expect(Date().timeIntervalSince(opened) >= timeoutSeconds, "no connection may be closed before its timeout")
        let metrics = try get(node.port, "/v1/metrics").text
        #expect(metrics.contains(#"rivellum_errors_total{kind="request_timeout"} 2000"#), "\(metrics.split(separator: "\n").filter { $0.contains("errors") })")
    }

    /// Past `max_connections` a new connection gets 503 and is closed at once; the established
    /// ones keep being served, and a closed one frees its place.
    @Test func connectionsPastTheLimitAreRefusedWhileEstablishedOnesAreServed() throws {
        let scratch = ScratchDirectory("maxconn")
        let node = try startNode(scratch, api: "max_connections = 8")
        defer { node.terminate() }
        let established = try (0..<8).map { _ in try HTTPConnection(port: node.port, timeoutSeconds: 10) }
        // Each established connection answers, and stays open (keep-alive).
        for connection in established {
            connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
        }
        let extra = try HTTPConnection(port: node.port, timeoutSeconds: 5)
        let (bytes, ending) = extra.readUntilEnd(limitBytes: 1 << 16)
        let refusal = try LoopbackHTTP.parse(bytes)
        #expect(refusal.status == 503)
        #expect(refusal.headers["connection"] == "close" && refusal.headers["retry-after"] == "1")
        #expect(refusal.text.contains("too_many_connections"))
        #expect(ending == .closed)
        // The established ones are still served.
        for connection in established {
            connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try connection.readResponse().status == 200)
        }
        established[0].close()
        // Bounded: up to 5 s for the node to see the close.
        var served = false
        for _ in 0..<50 where !served {
            let fresh = try HTTPConnection(port: node.port, timeoutSeconds: 5)
            fresh.send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            served = (try? fresh.readResponse().status) == 200
            if !served { usleep(100_000) }
        }
        #expect(served, "a freed place was never given to a new connection")
    }

    /// A client that writes its whole (oversized) body before reading gets its 413 with
    /// `Connection: close`, or a closed connection, and never hangs; so does one whose body
    /// is cut short by a broken chunked encoding.
    @Test func earlyRefusalsCloseSoThatASendEverythingClientNeverHangs() throws {
        let scratch = ScratchDirectory("early")
        let node = try startNode(scratch, api: "max_body_bytes = 1048576")
        defer { node.terminate() }
        let body = [UInt8](repeating: UInt8(ascii: "x"), count: 4 << 20)
        for declared in [true, false] {
            let connection = try HTTPConnection(port: node.port, timeoutSeconds: 1)
            let head = declared
                ? "POST /v1/blocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
                : "POST /v1/blocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            let started = Date()
            connection.send(head)
            // Write everything first, as urllib does (a reset or closed socket stops it early).
            let sent = connection.send(declared ? body : Array("\(String(body.count, radix: 16))\r\n".utf8) + body + Array("\r\n0\r\n\r\n".utf8))
            let (bytes, ending) = connection.readUntilEnd(limitBytes: 1 << 16)
            #expect(ending != .timedOut, "declared=\(declared): the client hung (sent \(sent) bytes)")
            #expect(Date().timeIntervalSince(started) < 5)
            if !bytes.isEmpty {
                let response = try LoopbackHTTP.parse(bytes)
                #expect(response.status == 413, "\(response.text)")
                #expect(response.headers["connection"] == "close")
            }
        }
        // A body that is not valid chunked encoding: 400 and close.
        let broken = try HTTPConnection(port: node.port, timeoutSeconds: 5)
        broken.send("POST /v1/blocks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        let (bytes, ending) = broken.readUntilEnd(limitBytes: 1 << 16)
        #expect(ending == .closed)
        let response = try LoopbackHTTP.parse(bytes)
        #expect(response.status == 400 && response.headers["connection"] == "close", "\(response.text)")
        #expect(try jsonObject(response)["kind"] as? String == "malformed_http")
        // Nothing was committed by any of it, and the node still serves.
        #expect(try jsonObject(try get(node.port, "/v1/state_roots"))["global_height"] as? Int == 0)
    }
}
