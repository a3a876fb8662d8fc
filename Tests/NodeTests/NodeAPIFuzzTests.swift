import FaultFS
import Foundation
import NodeHarness
import Testing

/// Generates hostile requests from a seed: bodies mutated from valid blocks (truncated, deeply
/// nested, huge numbers, invalid UTF-8, duplicate keys, wrong content types), odd paths,
/// methods and headers, and broken HTTP framing. The same seed gives the same requests.
struct HostileRequestGenerator {
    var random: DeterministicRandom

    init(seed: UInt64) { random = DeterministicRandom(seed: seed) }

    /// One request's bytes, and whether the client half-closes after it (a request that
    /// promises more body than it sends: the node may then close without answering).
    struct Request {
        var bytes: [UInt8]
        var halfCloses: Bool
        var isHead: Bool
    }

    mutating func pick<T>(_ items: [T]) -> T { items[random.below(items.count)] }

    mutating func validBody() -> [UInt8] {
        let count = random.int(in: 0...4)
        let ops = (0..<count).map { _ in
            "{\"key\": \"fuzz-\(random.below(50))\", \"value\": " + (random.chance(0.2) ? "null" : "\"v\(random.below(1_000))\"") + "}"
        }
        return Array("{\"ops\": [\(ops.joined(separator: ", "))]}".utf8)
    }

    mutating func mutatedBody() -> [UInt8] {
        var body = validBody()
        switch random.below(12) {
        case 0: body = Array(body.prefix(random.below(body.count + 1)))
        case 1: body = Array(String(repeating: "[", count: random.int(in: 100...100_000)).utf8)
        case 2: body = Array(#"{"ops": [{"key": "k", "value": "v"}], "ops": [{"key": "k2", "value": 1e999999}]}"#.utf8)
        case 3: body = Array(#"{"ops": [{"key": 123456789012345678901234567890123456789, "value": "v"}]}"#.utf8)
        case 4: body = Array(#"{"ops": [{"key": "k"#.utf8) + [0xFF, 0xFE, 0xC0, 0x80] + Array(#"", "value": "v"}]}"#.utf8)
        case 5: body = Array(#"{"ops": [{"key": "k", "key": "k2", "value": "v", "value": null}]}"#.utf8)
        case 6:
            let index = random.below(max(1, body.count))
            if !body.isEmpty { body[index] = UInt8(truncatingIfNeeded: random.next()) }
        case 7: body = Array(#"{"ops": {"key": "k", "value": "v"}}"#.utf8)
        case 8: body = Array(("{\"ops\": [" + String(repeating: "{\"key\": \"a\", \"value\": \"b\"},", count: 20_000) + "{}]}").utf8)
        case 9: body = Array(#"{"ops": [{"key": "\u0000", "value": "\ud800"}]}"#.utf8)
        case 10: body = (0..<random.int(in: 1...512)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        default: body = Array(#"{"ops": [{"key": "k", "value": "v"}]} trailing"#.utf8)
        }
        return body
    }

    mutating func path() -> String {
        pick([
            "/health", "/v1/status", "/v1/state_roots", "/v1/metrics", "/v1/blocks", "/v1/blocks/1", "/v1/blocks/-1",
            "/v1/blocks/99999999999999999999999", "/v1/blocks/%00", "/v1/state/alice", "/v1/state/%ff%fe", "/v1/state/",
            "/v1/state/" + String(repeating: "k", count: 5_000), "/v1/blocks/../../etc/passwd", "//v1//blocks", "/v1/blocks?x=1&x=2",
            "/nope", "/" + String(repeating: "a/", count: 2_000), "*", "/v1/state/%", "/v1/blocks/1/extra",
        ])
    }

    /// `count` requests back to back on one kept-alive connection (pipelined), the last one
    /// asking to close; none half-closes, and none is HEAD (whose answer's length cannot be
    /// told from the answer alone).
    mutating func pipelined(_ count: Int) -> Request {
        var bytes: [UInt8] = []
        for index in 0..<count {
            var request = next(closing: index == count - 1)
            // Bounded: a request half-closes one time in ten, and is HEAD one time in eleven.
            while request.halfCloses || request.isHead { request = next(closing: index == count - 1) }
            bytes += request.bytes
        }
        return Request(bytes: bytes, halfCloses: false, isHead: false)
    }

    mutating func next(closing: Bool = true) -> Request {
        let method = pick(["GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FOO", "get"])
        let path = method == "POST" && random.chance(0.7) ? "/v1/blocks" : path()
        let body = random.chance(0.15) ? validBody() : mutatedBody()
        var headers = ["Host: 127.0.0.1"]
        headers.append(
            "Content-Type: " + pick(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin1"]))
        var halfCloses = false
        var framing: [UInt8] = body
        switch random.below(10) {
        case 0:
            // Promises more than it sends, then half-closes.
            headers.append("Content-Length: \(body.count + random.int(in: 1...100))")
            halfCloses = true
        case 1:
            headers.append("Transfer-Encoding: chunked")
            framing = Array("\(String(body.count, radix: 16))\r\n".utf8) + body + Array("\r\n0\r\n\r\n".utf8)
        case 2:
            headers.append("Content-Length: \(body.count)")
            headers.append("Content-Length: \(body.count + 1)")
        case 3: headers.append("X-Huge: " + String(repeating: "h", count: random.int(in: 1_000...100_000)))
        case 4: headers.append("Bad Header Without Colon")
        case 5: headers.append("Content-Length: -\(body.count)")
        default: headers.append("Content-Length: \(body.count)")
        }
        if closing { headers.append("Connection: close") }
        let lineEnding = random.chance(0.05) ? "\n" : "\r\n"
        let version = random.chance(0.05) ? pick(["HTTP/1.0", "HTTP/2.0", "HTTP/9", "HTTX/1.1"]) : "HTTP/1.1"
        let head = "\(method) \(path) \(version)\(lineEnding)" + headers.map { $0 + lineEnding }.joined() + lineEnding
        return Request(bytes: Array(head.utf8) + framing, halfCloses: halfCloses, isHead: method == "HEAD")
    }
}

@Suite("rivellum-node API fuzz (real binary)", .serialized)
struct NodeAPIFuzzTests {
    static let seed = UInt64(ProcessInfo.processInfo.environment["RIVELLUM_FUZZ_SEED"] ?? "") ?? 20_261_201
    static let requests = 2_400
    static let batch = 200

    /// One answer: a 2xx (JSON when it says so; an accepted block moves the height by one) or a
    /// 4xx JSON error. HEAD answers have no body to check.
    func check(_ response: LoopbackHTTP.Response, isHead: Bool, _ where_: String, height: inout Int, metaRoot: inout String?) {
        #expect((200..<300).contains(response.status) || (400..<500).contains(response.status), "\(where_): status \(response.status) \(response.text)")
        if isHead && response.body.isEmpty { return }
        let object = try? JSONSerialization.jsonObject(with: Data(response.body), options: [.fragmentsAllowed])
        if (400..<500).contains(response.status) {
            let error = object as? [String: Any]
            #expect(error?["error"] is String && error?["kind"] is String, "\(where_): not a JSON error: \(response.text)")
        } else if response.headers["content-type"]?.hasPrefix("application/json") == true {
            #expect(object != nil, "\(where_): a success that is not JSON: \(response.text)")
            if let accepted = object as? [String: Any], let newHeight = accepted["height"] as? Int, accepted["durable"] != nil {
                height += 1
                #expect(newHeight == height, "\(where_): height \(newHeight), expected \(height)")
                metaRoot = accepted["meta_root"] as? String
            }
        }
    }

    /// Thousands of generated requests: every answer is a JSON error with a 4xx status or a
    /// valid success, the node answers between batches, and the height and MetaRoot change only
    /// through the blocks it accepted. A failure names the seed and the request; rerun with
    /// RIVELLUM_FUZZ_SEED to replay it.
    @Test func hostileRequestsGetJSONErrorsAndChangeNothingButAcceptedBlocks() throws {
        let scratch = ScratchDirectory("fuzz")
        let node = try startNode(scratch, api: "request_head_timeout_ms = 2000\nrequest_body_timeout_ms = 2000")
        defer { node.terminate() }
        var generator = HostileRequestGenerator(seed: Self.seed)
        var height = 0
        var metaRoot = try jsonObject(try get(node.port, "/v1/state_roots"))["meta_root"] as? String
        var statuses: [Int: Int] = [:]
        // Bounded: `requests` requests.
        for index in 0..<Self.requests {
            // One request in five is a pipelined run of two or three on a kept-alive connection.
            let request = index % 5 == 4 ? generator.pipelined(generator.random.int(in: 2...3)) : generator.next()
            let where_ = "seed \(Self.seed), request \(index): \(String(decoding: request.bytes.prefix(160), as: UTF8.self).debugDescription)"
            let connection = try HTTPConnection(port: node.port, timeoutSeconds: 10)
            connection.send(request.bytes)
            if request.halfCloses { connection.shutdownWrite() }
            let (bytes, ending) = connection.readUntilEnd(limitBytes: 1 << 20)
            connection.close()
            #expect(ending != .timedOut, "\(where_): no answer and no close")
            if bytes.isEmpty {
                #expect(request.halfCloses, "\(where_): closed without an answer")
                continue
            }
            var rest = bytes
            // Bounded: each round takes one whole response off `rest` (at most three were sent).
            while !rest.isEmpty {
                let response: LoopbackHTTP.Response
                if let (complete, used) = try LoopbackHTTP.parseComplete(rest) {
                    response = complete
                    rest.removeFirst(used)
                } else {
                    response = try LoopbackHTTP.parse(rest)
                    rest = []
                }
                statuses[response.status, default: 0] += 1
                check(response, isHead: request.isHead, where_, height: &height, metaRoot: &metaRoot)
            }
            if index % Self.batch == Self.batch - 1 {
                #expect(try get(node.port, "/health").status == 200, "seed \(Self.seed): the node stopped answering after request \(index)")
                let roots = try jsonObject(try get(node.port, "/v1/state_roots"))
                #expect(roots["global_height"] as? Int == height, "seed \(Self.seed), after request \(index)")
                #expect(roots["meta_root"] as? String == metaRoot, "seed \(Self.seed), after request \(index)")
            }
        }
        // Some of each kind of answer came (the generator is not all one thing).
        #expect(statuses.keys.contains(200) && statuses.keys.contains(400) && statuses.keys.contains(404), "\(statuses)")
        #expect(height > 0, "no block was accepted: \(statuses)")
    }
}
