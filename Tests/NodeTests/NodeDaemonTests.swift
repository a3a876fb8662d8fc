import Foundation
import NodeHarness
import Testing

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let path: String

    init(_ name: String = "node") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("rivellum-\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String, _ text: String) -> String {
        let filePath = path + "/" + name
        FileManager.default.createFile(atPath: filePath, contents: Data(text.utf8))
        return filePath
    }
}

/// Runs the built `rivellum-node` with `arguments` to completion.
func runNodeCommand(
    _ arguments: [String], currentDirectory: String? = nil, environment: [String: String] = [:]
) throws -> (status: Int32, output: String, error: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: NodeProcess.siblingBinary())
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    try process.run()
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self), String(decoding: errorData, as: UTF8.self))
}

func jsonObject(_ response: LoopbackHTTP.Response) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any], "not a JSON object: \(response.text)")
}

func post(_ port: Int, _ body: String, headers: [String] = []) throws -> LoopbackHTTP.Response {
    try LoopbackHTTP.request("POST", "/v1/blocks", port: port, body: Array(body.utf8), extraHeaders: headers)
}

func get(_ port: Int, _ path: String) throws -> LoopbackHTTP.Response {
    try LoopbackHTTP.request("GET", path, port: port)
}

@Suite("rivellum-node run (end to end, real binary)", .serialized)
struct NodeDaemonTests {
    @Test func servesTheAPIFromEmbeddedDefaultsAndRestartsToTheSameRoots() throws {
        let scratch = ScratchDirectory()
        // No --config and no --data-dir: the embedded defaults, ./rivellum-data in the working directory.
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--log-format", "json"], logPath: scratch.path + "/node.log",
            currentDirectory: scratch.path)
        #expect(FileManager.default.fileExists(atPath: scratch.path + "/rivellum-data/GENESIS"))
        #expect(try get(node.port, "/health").status == 200)

        let first = try post(node.port, #"{"ops": [{"key": "alice", "value": "10"}, {"key": "bob", "value": "20"}]}"#)
        #expect(first.status == 200)
        let firstBody = try jsonObject(first)
        #expect(firstBody["height"] as? Int == 1)
        #expect(firstBody["durable"] as? Bool == true)
        let second = try jsonObject(try post(node.port, #"{"ops": [{"key": "bob", "value": null}, {"key": "carol", "value": "ünïcødé ✓"}]}"#))
        #expect(second["height"] as? Int == 2)

        let roots = try jsonObject(try get(node.port, "/v1/state_roots"))
        #expect(roots["global_height"] as? Int == 2)
        #expect(roots["meta_root"] as? String == second["meta_root"] as? String)
        let laneRoots = try #require(roots["lane_roots"] as? [String])
        #expect(laneRoots.count == 4)

        let block1 = try jsonObject(try get(node.port, "/v1/blocks/1"))
        #expect(block1["meta_root"] as? String == firstBody["meta_root"] as? String)
        #expect(block1["op_count"] as? Int == 2)
        #expect((block1["lane_roots"] as? [String])?.count == 4)

        let alice = try jsonObject(try get(node.port, "/v1/state/alice"))
        #expect(alice["value"] as? String == "10")
        #expect(alice["height"] as? Int == 2)
        let lane = try #require(alice["lane"] as? Int)
        let proof = try #require(alice["proof"] as? [String: Any])
        #expect(proof["lane_root"] as? String == laneRoots[lane])
        #expect(proof["meta_root"] as? String == roots["meta_root"] as? String)
        #expect((proof["terminal"] as? [String: Any])?["kind"] as? String == "included")
        let bob = try jsonObject(try get(node.port, "/v1/state/bob"))
        #expect(bob["value"] is NSNull)
        #expect((bob["proof"] as? [String: Any]).flatMap { $0["terminal"] as? [String: Any] }?["kind"] as? String != "included")
        let carolPath = "/v1/state/" + "carol".addingPercentEncoding(withAllowedCharacters: .urlPathAllowed)!
        #expect(try jsonObject(try get(node.port, carolPath))["value"] as? String == "ünïcødé ✓")

        let status = try jsonObject(try get(node.port, "/v1/status"))
        #expect(status["height"] as? Int == 2)
        #expect(status["durable_height"] as? Int == 2)
        #expect(status["fsync_policy"] as? String == "strict")
        #expect(status["last_recovery"] is [String: Any])

        let metrics = try get(node.port, "/v1/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in [
            "rivellum_wal_appends_total", "rivellum_wal_bytes_total", "rivellum_wal_syncs_total",
            "rivellum_wal_sync_duration_seconds_bucket", "rivellum_wal_group_commit_batch_records_bucket",
            "rivellum_commit_duration_seconds_bucket", "rivellum_height 2", "rivellum_durable_height 2",
            "rivellum_recovery_duration_seconds", "rivellum_recovery_records_replayed", "rivellum_blocks_committed_total 2",
        ] {
            #expect(metrics.text.contains(name), "metrics lack \(name)")
        }

        // Graceful shutdown: exit 0, then a restart recovers to the same roots and replays nothing
        // (the shutdown synced the log and flushed the lanes).
        #expect(node.terminate() == 0)
        let log = try String(contentsOfFile: node.logPath, encoding: .utf8)
        let lines = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.contains { $0["target"] as? String == "rivellum_wal" && $0["msg"] as? String == "recovered" })
        #expect(lines.contains { $0["msg"] as? String == "stopped cleanly" })

        let again = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: [], logPath: scratch.path + "/node2.log", currentDirectory: scratch.path)
        defer { again.terminate() }
        let after = try jsonObject(try get(again.port, "/v1/status"))
        #expect(after["height"] as? Int == 2)
        #expect(after["meta_root"] as? String == roots["meta_root"] as? String)
        let recovery = try #require(after["last_recovery"] as? [String: Any])
        let replayed = (recovery["lanes"] as? [[String: Any]])?.reduce(0) { $0 + ($1["records_replayed"] as? Int ?? -1) }
        #expect(replayed == 0)
        #expect(try jsonObject(try get(again.port, "/v1/blocks/2"))["meta_root"] as? String == second["meta_root"] as? String)
    }

    @Test func badRequestsGetJSONErrorsAndLoseNothing() throws {
        let scratch = ScratchDirectory()
        let config = scratch.file(
            "node.toml",
            """
            [node]
            data_dir = "\(scratch.path)/data"
            [api]
            max_body_bytes = 4096
            max_ops_per_block = 3
            max_key_bytes = 8
            max_value_bytes = 16
            """)
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--config", config], logPath: scratch.path + "/node.log")
        defer { node.terminate() }
        let accepted = try jsonObject(try post(node.port, #"{"ops": [{"key": "k", "value": "v"}]}"#))
        let cases: [(String, Int, String)] = [
            ("{\"ops\": [", 400, "malformed_json"),
            ("[1, 2]", 400, "bad_request"),
            (#"{"ops": [], "extra": 1}"#, 400, "bad_request"),
            (#"{"ops": {"key": "k"}}"#, 400, "bad_request"),
            (#"{"ops": [{"key": "k"}]}"#, 400, "bad_request"),
            (#"{"ops": [{"key": "", "value": "v"}]}"#, 400, "bad_request"),
            (#"{"ops": [{"key": 7, "value": "v"}]}"#, 400, "bad_request"),
            (#"{"ops": [{"key": "k", "value": 7}]}"#, 400, "bad_request"),
            (#"{"ops": [{"key": "k", "value": "v", "ttl": 1}]}"#, 400, "bad_request"),
            (#"{"ops": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}, {"key": "c", "value": "3"}, {"key": "d", "value": "4"}]}"#, 413, "content_too_large"),
            (#"{"ops": [{"key": "a-very-long-key", "value": "v"}]}"#, 413, "content_too_large"),
            (#"{"ops": [{"key": "k", "value": "a value longer than sixteen bytes"}]}"#, 413, "content_too_large"),
            ("{\"ops\": [{\"key\": \"k\", \"value\": \"" + String(repeating: "x", count: 5_000) + "\"}]}", 413, "content_too_large"),
        ]
        for (body, status, kind) in cases {
            let response = try post(node.port, body)
            #expect(response.status == status, "\(body.prefix(60)): \(response.status) \(response.text)")
            let error = try jsonObject(response)
            #expect(error["error"] is String, "\(body.prefix(60))")
            #expect(error["kind"] as? String == kind, "\(body.prefix(60)): \(response.text)")
        }
        // A body declared larger than the limit is refused before it is read.
        let declared = try LoopbackHTTP.request(
            "POST", "/v1/blocks", port: node.port,
            rawRequest: Array("POST /v1/blocks HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 999999999\r\n\r\n{".utf8))
        #expect(declared.status == 413)
        for (path, status) in [("/v1/blocks/abc", 400), ("/v1/blocks/0", 404), ("/v1/blocks/99", 404), ("/v2/nothing", 404), ("/v1/state/" + String(repeating: "k", count: 9), 413)] {
            let response = try get(node.port, path)
            #expect(response.status == status, "\(path): \(response.text)")
            #expect(try jsonObject(response)["error"] is String)
        }
        // Still serving, nothing lost, nothing partially applied.
        #expect(try get(node.port, "/health").status == 200)
        let roots = try jsonObject(try get(node.port, "/v1/state_roots"))
        #expect(roots["global_height"] as? Int == 1)
        #expect(roots["meta_root"] as? String == accepted["meta_root"] as? String)
        #expect(try get(node.port, "/v1/metrics").text.contains("rivellum_errors_total{kind=\"content_too_large\"}"))
    }

    @Test func aSecondNodeOnTheSameDataDirectoryIsRefusedWith69() throws {
        let scratch = ScratchDirectory()
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", scratch.path + "/data"], logPath: scratch.path + "/node.log")
        defer { node.terminate() }
        let second = try runNodeCommand(["run", "--data-dir", scratch.path + "/data", "--listen", "127.0.0.1:\(try NodeProcess.freePort())"])
        #expect(second.status == 69)
        #expect(second.error.contains("locked"))
        #expect(second.error.contains(scratch.path + "/data"))
        // The offline tools refuse too while the node runs.
        let status = try runNodeCommand(["status", "--data-dir", scratch.path + "/data"])
        #expect(status.status == 69)
        // A second node on the same port (another data directory) is refused with 69 as well.
        let portTaken = try runNodeCommand(["run", "--data-dir", scratch.path + "/other", "--listen", "127.0.0.1:\(node.port)"])
        #expect(portTaken.status == 69, "\(portTaken.error)")
        #expect(portTaken.error.contains("address already in use"))
    }

    @Test func configurationErrorsNameTheKeyAndFileAndExit78() throws {
        let scratch = ScratchDirectory()
        let cases: [(String, String)] = [
            ("[wal]\nwal_fsync_polcy = \"strict\"\n", "wal.wal_fsync_polcy"),
            ("[wal]\nwal_fsync_policy = \"fast\"\n", "wal.wal_fsync_policy"),
            ("[node]\nlanes = \"four\"\n", "node.lanes"),
            ("[node]\nlanes = 0\n", "node.lanes"),
            ("[nodes]\nlanes = 2\n", "unknown section [nodes] (keys: lanes); did you mean [node]?"),
            ("[extra]\nnonsense = 1\n", "unknown section [extra] (keys: nonsense)"),
            ("[wal]\nwal_fsnc_policy = \"strict\"\n", "wal.wal_fsnc_policy: unknown key; did you mean wal_fsync_policy?"),
            ("[api]\nmax_connections = 0\n", "api.max_connections"),
            ("[api]\nlisten = \"localhost\"\n", "api.listen"),
            ("[logging]\nformat = \"xml\"\n", "logging.format"),
            ("[wal\n", "not valid TOML"),
        ]
        for (text, expected) in cases {
            let file = scratch.file("bad.toml", text)
            let result = try runNodeCommand(["run", "--config", file, "--data-dir", scratch.path + "/data"])
            #expect(result.status == 78, "\(text): \(result.error)")
            #expect(result.error.contains(expected), "\(text): \(result.error)")
            #expect(result.error.contains(file), "\(text): \(result.error)")
            let check = try runNodeCommand(["config", "check", file])
            #expect(check.status == 78)
        }
        // Nothing was created by a refused start.
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/data"))
        // Flags are checked the same way.
        let badFlag = try runNodeCommand(["run", "--data-dir", scratch.path + "/data", "--fsync-policy", "sometimes"])
        #expect(badFlag.status == 78)
        #expect(badFlag.error.contains("--fsync-policy"))
        // The embedded defaults print as a file that checks clean.
        let defaults = try runNodeCommand(["config", "default"])
        #expect(defaults.status == 0)
        let file = scratch.file("default.toml", defaults.output)
        #expect(try runNodeCommand(["config", "check", file]).status == 0)
        // A usage error is 64.
        #expect(try runNodeCommand(["run", "--no-such-flag"]).status == 64)
    }

    @Test func offlineStatusAndWALInspect() throws {
        let scratch = ScratchDirectory()
        let data = scratch.path + "/data"
        let missing = try runNodeCommand(["status", "--data-dir", data])
        #expect(missing.status == 66)
        let node = try NodeProcess.start(
            binary: NodeProcess.siblingBinary(), arguments: ["--data-dir", data, "--lanes", "3", "--chain-id", "testnet-1"],
            logPath: scratch.path + "/node.log")
        var lastRoot = ""
        for index in 0..<12 {
            let body = try jsonObject(try post(node.port, "{\"ops\": [{\"key\": \"k\(index)\", \"value\": \"v\(index)\"}, {\"key\": \"x\", \"value\": \"\(index)\"}]}"))
            lastRoot = try #require(body["meta_root"] as? String)
        }
        #expect(node.terminate() == 0)

        let table = try runNodeCommand(["status", "--data-dir", data])
        #expect(table.status == 0, "\(table.error)")
        #expect(table.output.contains("testnet-1"))
        #expect(table.output.contains(lastRoot))
        let json = try runNodeCommand(["status", "--data-dir", data, "--json"])
        let status = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect(status["log_height"] as? Int == 12)
        #expect(status["log_meta_root"] as? String == lastRoot)
        #expect(status["lanes"] as? Int == 3)
        let lanes = try #require(status["lane_status"] as? [[String: Any]])
        #expect(lanes.map { $0["applied_height"] as? Int } == [12, 12, 12])
        #expect((status["wal"] as? [[String: Any]])?.count == 4)

        let inspect = try runNodeCommand(["wal", "inspect", "--data-dir", data, "--lane", "meta", "--records", "5", "--json"])
        #expect(inspect.status == 0, "\(inspect.error)")
        let partitions = try #require(try JSONSerialization.jsonObject(with: Data(inspect.output.utf8)) as? [[String: Any]])
        #expect(partitions.count == 1)
        let records = try #require(partitions[0]["listed_records"] as? [[String: Any]])
        #expect(records.count == 5)
        #expect(records.map { $0["height"] as? Int } == [1, 2, 3, 4, 5])
        #expect(records.allSatisfy { $0["op_count"] as? Int == 2 })
        let text = try runNodeCommand(["wal", "inspect", "--data-dir", data])
        #expect(text.status == 0)
        #expect(text.output.contains("meta: LSN 1...12"))
        #expect(try runNodeCommand(["wal", "inspect", "--data-dir", data, "--lane", "9"]).status == 66)
        #expect(try runNodeCommand(["wal", "verify", "--data-dir", data]).status == 0)
        // The genesis fixes chain id and lanes: starting with others is a configuration error.
        let mismatch = try runNodeCommand(["run", "--data-dir", data, "--lanes", "5", "--listen", "127.0.0.1:\(try NodeProcess.freePort())"])
        #expect(mismatch.status == 78)
        #expect(mismatch.error.contains("genesis"))
    }
}

@Suite("rivellum-killtest (kill -9 of the real binary)", .serialized)
struct KillTestTests {
    func runKillTest(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NodeProcess.siblingBinary(named: "rivellum-killtest"))
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func noAcknowledgedBlockIsLostAcrossKills() throws {
        let result = try runKillTest(["--kills", "6", "--writers", "4", "--seed", "7"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("6 kill(s) survived"))
        #expect(result.output.contains(" 0 lost"))
    }

    /// The checker is not vacuous: a "node" that loses its data on every start is caught.
    @Test func aNodeThatLosesDataIsCaught() throws {
        let scratch = ScratchDirectory("killtest")
        let wrapper = scratch.file(
            "forgetful-node.sh",
            """
            #!/bin/sh
            # Deletes the data directory before starting: every acknowledged block is lost.
            data=""
            previous=""
            for argument in "$@"; do
              if [ "$previous" = "--data-dir" ]; then data="$argument"; fi
              previous="$argument"
            done
            rm -rf "$data"
            exec "\(NodeProcess.siblingBinary())" "$@"
            """)
        chmod(wrapper, 0o755)
        let result = try runKillTest(["--kills", "3", "--node", wrapper, "--work-dir", scratch.path + "/work"])
        #expect(result.status == 1, "\(result.output)")
        #expect(result.output.contains("FAILED"))
        #expect(result.output.contains("below the acknowledged height") || result.output.contains("acknowledged block missing"))
    }
}
