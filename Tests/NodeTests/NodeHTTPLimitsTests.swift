import Foundation
import NodeHarness
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How a held connection waits.
enum HeldKind: CaseIterable, Hashable {
    case silent, partialHead, partialBody, keptAlive
}

/// Starts the real node with `apiSection` in its `[api]` section and `walSection` in `[wal]`.
func startNode(_ scratch: ScratchDirectory, api apiSection: String, wal walSection: String = "") throws -> NodeProcess {
    let config = scratch.file("node.toml", "[node]\ndata_dir = \"\(scratch.path)/data\"\n[api]\n\(apiSection)\n[wal]\n\(walSection)\n")
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
    /// second each). Then every held connection closes when its own limit says, and not
    /// before: 500 sent nothing (the head limit, silently), 500 stopped inside the head (the
    /// head limit, 408), 500 inside the body (the body limit, 408), 500 were answered and kept
    /// alive (the idle limit, silently). The limits differ, so a key that did the wrong job
    /// would show.
    @Test func heldSlowConnectionsNeitherStarveFreshClientsNorStayForever() throws {
        try raiseOwnOpenFileLimit(atLeast: 2_100)
        let scratch = ScratchDirectory("slow")
        let limits: [HeldKind: Double] = [.silent: 8, .partialHead: 8, .partialBody: 11, .keptAlive: 14]
        // dev_fast: durability is not what this test is about, and a slow disk must not make the
        // fresh commit miss its second.
        let node = try startNode(
            scratch, api: "request_head_timeout_ms = 8000\nrequest_body_timeout_ms = 11000\nidle_timeout_ms = 14000",
            wal: "wal_fsync_policy = \"dev_fast\"")
        defer { node.terminate() }
        var held: [(kind: HeldKind, connection: HTTPConnection, since: Date)] = []
        // Bounded: 2,000 connections.
        for index in 0..<2_000 {
            let kind = HeldKind.allCases[index % 4]
            let connection = try HTTPConnection(port: node.port, timeoutSeconds: 30)
            switch kind {
            case .silent: break
            case .partialHead: connection.send(SlowConnections.partialHead)
            case .partialBody: connection.send(SlowConnections.partialBody)
            case .keptAlive:
                connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                #expect(try connection.readResponse().status == 200)
            }
            held.append((kind, connection, Date()))
        }
        // Bounded: up to 150 polls of 100 ms (each answered at once: the node is not busy).
        var connections = 0
        for _ in 0..<150 where connections <= held.count {
            let status = try jsonObject(try LoopbackHTTP.request("GET", "/v1/status", port: node.port, timeoutSeconds: 5))
            connections = try #require((status["api"] as? [String: Any])?["connections"] as? Int)
            if connections <= held.count { usleep(100_000) }
        }
        // The status request's own connection counts too.
        #expect(connections >= held.count + 1, "the node holds \(connections) connections")

        // A fresh client, with one second to get each answer.
        let health = try LoopbackHTTP.request("GET", "/health", port: node.port, timeoutSeconds: 1)
        #expect(health.status == 200)
        let commit = try LoopbackHTTP.request(
            "POST", "/v1/blocks", port: node.port, body: Array(#"{"ops": [{"key": "k", "value": "v"}]}"#.utf8), timeoutSeconds: 1)
        #expect(commit.status == 200, "\(commit.text)")
        let stillHeld = held.filter { peerState(of: $0.connection.descriptor) == .open }.count
        #expect(stillHeld == held.count, "only \(stillHeld) of \(held.count) were still held while the fresh requests ran")

        // Earliest limits first, so that each kind's first connection is watched as it closes.
        var answered408: [HeldKind: Int] = [:]
        for kind in HeldKind.allCases.sorted(by: { limits[$0]! < limits[$1]! }) {
            for (index, entry) in held.enumerated() where entry.kind == kind {
                let (bytes, ending) = entry.connection.readUntilEnd(limitBytes: 1 << 16)
                let closedAfter = Date().timeIntervalSince(entry.since)
                #expect(ending != .timedOut, "\(kind) \(index) stayed open")
                #expect(closedAfter >= limits[kind]! - 0.05, "\(kind) \(index) closed after \(closedAfter) s, before its limit")
                if index < 4 { #expect(closedAfter < limits[kind]! + 5, "\(kind) \(index) closed \(closedAfter) s after it was opened") }
                if String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 408") { answered408[kind, default: 0] += 1 }
                entry.connection.close()
            }
        }
        #expect(answered408[.partialHead] == 500 && answered408[.partialBody] == 500, "\(answered408)")
        #expect(answered408[.silent] == nil && answered408[.keptAlive] == nil, "\(answered408)")
        let metrics = try get(node.port, "/v1/metrics").text
        #expect(metrics.contains(#"rivellum_errors_total{kind="request_timeout"} 1000"#), "\(metrics.split(separator: "\n").filter { $0.contains("errors") })")
    }

    /// Past `max_connections` a new connection gets 503 and is closed at once; the established
    /// ones keep being served, and a closed one frees its place.
    @Test func connectionsPastTheLimitAreRefusedWhileEstablishedOnesAreServed() throws {
        let scratch = ScratchDirectory("maxconn")
        let node = try startNode(scratch, api: "max_connections = 8")
        defer { node.terminate() }
        // Each established connection answers, and stays open (keep-alive). The start-up probe's
        // connection (NodeProcess waits for /health) may still be counted a moment after it
        // closed, so an establishing connection may be refused once and is retried.
        let established = try (0..<8).map { index in
            try #require(try connectionServedOnceAPlaceIsFree(port: node.port, keepAlive: true), "connection \(index) of 8 was never served")
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
        let fresh = try connectionServedOnceAPlaceIsFree(port: node.port, keepAlive: false)
        #expect(fresh != nil, "a freed place was never given to a new connection")
        fresh?.close()
        // Still at the limit (7 established, 1 fresh one that closed; the freed place reused):
        // fill it, then the next one is refused again (the count went down exactly once). The
        // node counts the fresh one's close a moment after its answer: the filler may need a retry.
        // Once the filler is admitted, every counted connection is a live one, so the next is refused.
        let filler = try connectionServedOnceAPlaceIsFree(port: node.port, keepAlive: true)
        #expect(filler != nil, "the place the fresh connection freed was never given back")
        let refusedAgain = try HTTPConnection(port: node.port, timeoutSeconds: 5)
        #expect(try LoopbackHTTP.parse(refusedAgain.readUntilEnd(limitBytes: 1 << 16).bytes).status == 503)
    }

    /// Opens connections until one is served a `/health` 200 (a refused one gets 503 and is
    /// closed by the node): the node sees a client's close a moment after the client made it.
    /// Bounded: 50 tries, 100 ms apart (about 5 s). Returns the served connection, or nil.
    private func connectionServedOnceAPlaceIsFree(port: Int, keepAlive: Bool) throws -> HTTPConnection? {
        for _ in 0..<50 {
            let connection = try HTTPConnection(port: port, timeoutSeconds: 5)
            connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\(keepAlive ? "" : "Connection: close\r\n")\r\n")
            if (try? connection.readResponse().status) == 200 { return connection }
            connection.close()
            usleep(100_000)
        }
        return nil
    }

    /// A client that asks for a lot and never reads the answer is closed once the node's
    /// writes have been stalled for the idle limit: it cannot hold a connection (and the
    /// answers queued for it) forever.
    @Test func aClientThatStopsReadingIsClosedAfterTheIdleLimit() throws {
        let scratch = ScratchDirectory("stall")
        let node = try startNode(scratch, api: "idle_timeout_ms = 2000", wal: "wal_fsync_policy = \"dev_fast\"")
        defer { node.terminate() }
        let value = String(repeating: "v", count: 1 << 20)
        #expect(try post(node.port, "{\"ops\": [{\"key\": \"big\", \"value\": \"\(value)\"}]}").status == 200)
        let requests = 30
        let reader = try HTTPConnection(port: node.port, timeoutSeconds: 20, receiveBufferBytes: 16 << 10)
        reader.send(String(repeating: "GET /v1/state/big HTTP/1.1\r\nHost: x\r\n\r\n", count: requests))
        // Not reading: the node's writes stall, and after 2 s of that it closes.
        sleep(5)
        let (bytes, ending) = reader.readUntilEnd(limitBytes: 64 << 20)
        #expect(ending != .timedOut)
        #expect(bytes.count < requests << 20, "all \(requests) answers (\(bytes.count) bytes) were delivered: the stalled connection was never closed")
        #expect(try get(node.port, "/health").status == 200)
    }

    /// Bodies in transit share one byte budget: while a slow sender holds most of it, another
    /// body that does not fit gets 503 (and nothing is committed); once the slow one is cut off
    /// by its body timeout, the budget is free again.
    @Test func bodiesInTransitAreBoundedByOneBudget() throws {
        let scratch = ScratchDirectory("budget")
        let node = try startNode(scratch, api: "max_body_bytes = 2048\nmax_body_bytes_in_flight = 2048\nrequest_body_timeout_ms = 2000")
        defer { node.terminate() }
        let slow = try HTTPConnection(port: node.port, timeoutSeconds: 10)
        slow.send("POST /v1/blocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2000\r\n\r\n")
        slow.send(String(repeating: " ", count: 1_500))
        usleep(300_000)
        let value = String(repeating: "v", count: 900)
        let body = "{\"ops\": [{\"key\": \"k\", \"value\": \"\(value)\"}]}"
        let refused = try post(node.port, body)
        #expect(refused.status == 503, "\(refused.text)")
        #expect(try jsonObject(refused)["kind"] as? String == "overloaded")
        #expect(refused.text.contains("api.max_body_bytes_in_flight"))
        // The slow body times out (408); once its connection is gone (the client closes, or the
        // 2 s linger ends), its bytes go back to the budget.
        let (bytes, _) = slow.readUntilEnd(limitBytes: 1 << 16)
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("HTTP/1.1 408"))
        slow.close()
        var accepted = false
        // Bounded: 50 tries, 100 ms apart.
        for _ in 0..<50 where !accepted {
            let answer = try post(node.port, body)
            accepted = answer.status == 200
            if !accepted {
                #expect(answer.status == 503, "\(answer.text)")
                usleep(100_000)
            }
        }
        #expect(accepted, "the budget was never given back")
        #expect(try jsonObject(try get(node.port, "/v1/state_roots"))["global_height"] as? Int == 1)
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
            let sentAt = Date()
            let (bytes, ending) = connection.readUntilEnd(limitBytes: 1 << 16)
            #expect(ending != .timedOut, "declared=\(declared): the client hung (sent \(sent) bytes)")
            #expect(Date().timeIntervalSince(sentAt) < 1, "declared=\(declared): the answer took more than a second after the last byte")
            #expect(Date().timeIntervalSince(started) < 10)
            if declared || !bytes.isEmpty {
                // The declared length is refused before the body: the 413 must arrive. A chunked
                // body is refused once 1 MiB of it arrived: a 413, or (if the client's bytes were
                // still coming when the linger ended) a closed connection.
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
