import Engine
@testable import Node
import Testing

@Suite("Node configuration (strict TOML) and block request decoding")
struct NodeConfigurationTests {
    @Test func embeddedDefaultsAreTheDocumentedValues() {
        let defaults = NodeConfiguration.defaults
        #expect(defaults == NodeConfiguration())
        #expect(defaults.node.dataDirectory == "./rivellum-data")
        #expect(defaults.walDirectory == "./rivellum-data/wal")
        #expect(defaults.snapshotDirectory == "./rivellum-data/snapshots")
        #expect(defaults.wal.fsyncPolicy == .strict)
        #expect(defaults.api.listenHost == "127.0.0.1" && defaults.api.listenPort == 7070)
        #expect(defaults.logging.format == .pretty && defaults.logging.level == "info")
        let engine = defaults.engineConfiguration
        #expect(engine.wal.segmentSizeBytes == 64 << 20)
        #expect(engine.walRetentionHours == 24)
    }

    @Test func everyKeyOverridesItsDefault() throws {
        let configuration = try NodeConfiguration.decode(
            """
            [node]
            data_dir = "/var/lib/rivellum"
            chain_id = "mainnet-7"
            lanes = 16
            [wal]
            wal_dir = "/fast/wal"
            wal_fsync_policy = "balanced"
            wal_sync_interval_ms = 50
            wal_sync_bytes = 65536
            wal_segment_size_mb = 128
            wal_retention_hours = 48
            wal_recovery_mode = "absolute"
            [api]
            listen = "[::1]:9000"
            max_body_bytes = 2048
            max_ops_per_block = 5
            max_key_bytes = 32
            max_value_bytes = 64
            max_inflight_commits = 8
            max_connections = 100
            request_head_timeout_ms = 1500
            request_body_timeout_ms = 2500
            idle_timeout_ms = 3500
            max_body_bytes_in_flight = 4096
            [logging]
            level = "debug"
            format = "json"
            [snapshot]
            dir = "/backup"
            interval_hours = 6
            keep = 3
            """, file: "t.toml")
        #expect(configuration.node.dataDirectory == "/var/lib/rivellum")
        #expect(configuration.node.chainID == "mainnet-7" && configuration.node.laneCount == 16)
        #expect(configuration.walDirectory == "/fast/wal")
        #expect(configuration.wal.fsyncPolicy == .balanced)
        #expect(configuration.wal.syncIntervalMilliseconds == 50 && configuration.wal.syncBytes == 65_536)
        #expect(configuration.engineConfiguration.wal.segmentSizeBytes == 128 << 20)
        #expect(configuration.wal.retentionHours == 48 && configuration.wal.recoveryMode == .absolute)
        #expect(configuration.api.listenHost == "::1" && configuration.api.listenPort == 9000)
        #expect(configuration.api.maxBodyBytes == 2_048 && configuration.api.maxOperationsPerBlock == 5)
        #expect(configuration.api.maxKeyBytes == 32 && configuration.api.maxValueBytes == 64 && configuration.api.maxInflightCommits == 8)
        #expect(configuration.api.maxConnections == 100 && configuration.api.requestHeadTimeoutMilliseconds == 1_500)
        #expect(configuration.api.requestBodyTimeoutMilliseconds == 2_500 && configuration.api.idleTimeoutMilliseconds == 3_500)
        #expect(configuration.api.maxBodyBytesInFlight == 4_096)
        #expect(configuration.logging.level == "debug" && configuration.logging.format == .json)
        #expect(configuration.snapshotDirectory == "/backup")
        #expect(configuration.snapshot.intervalHours == 6 && configuration.snapshot.keep == 3)
        #expect(try NodeConfiguration.decode("", file: "empty.toml") == NodeConfiguration.defaults)
    }

    /// The decision table of refusals: each names the file and the key.
    @Test(arguments: [
        ("[wal]\nwal_fsync_polcy = \"strict\"", "wal.wal_fsync_polcy"),
        ("[wal]\nwal_fsync_policy = \"STRICT\"", "wal.wal_fsync_policy"),
        ("[wal]\nwal_recovery_mode = \"salvage\"", "wal.wal_recovery_mode"),
        ("[wal]\nwal_segment_size_mb = 0", "wal.wal_segment_size_mb"),
        ("[wal]\nwal_sync_bytes = 10", "wal.wal_sync_bytes"),
        ("[wal]\nwal_sync_interval_ms = -1", "wal.wal_sync_interval_ms"),
        ("[node]\nlanes = 2000", "node.lanes"),
        ("[node]\nlanes = \"4\"", "node.lanes"),
        ("[node]\nchain_id = \"has space\"", "node.chain_id"),
        ("[node]\ndata_dir = \"\"", "node.data_dir"),
        ("[node]\nextra = 1", "node.extra"),
        ("top_level = 1", "top_level"),
        ("[api]\nlisten = \"127.0.0.1\"", "api.listen"),
        ("[api]\nlisten = \"127.0.0.1:0\"", "api.listen"),
        ("[api]\nmax_body_bytes = 1", "api.max_body_bytes"),
        ("[logging]\nlevel = \"loud\"", "logging.level"),
        ("[logging]\nformat = \"xml\"", "logging.format"),
        ("[snapshot]\nkeep = 0", "snapshot.keep"),
        ("[api]\nmax_connections = 0", "api.max_connections"),
        ("[api]\nrequest_head_timeout_ms = 10", "api.request_head_timeout_ms"),
        ("[api]\nrequest_body_timeout_ms = -5", "api.request_body_timeout_ms"),
        ("[api]\nidle_timeout_ms = 99999999", "api.idle_timeout_ms"),
        ("[api]\nmax_body_bytes = 4096\nmax_body_bytes_in_flight = 2048", "api.max_body_bytes_in_flight"),
        ("[sync]\npeers = [\"10.0.0.2:7070\"]", "sync.peers"),
        ("[sync]\npeers = [\"http://10.0.0.2:7070/v1\"]", "sync.peers"),
        ("[sync]\npeers = [\"http://a:1\", \"http://a:1\"]", "sync.peers"),
        ("[sync]\npeers = [\"http://a:1\"]\nquorum = 2", "sync.quorum"),
        ("[sync]\ntrust_height = 5", "sync.trust_meta_root"),
        ("[sync]\npeers = [\"http://a:1\"]\ntrust_height = 5\ntrust_meta_root = \"xyz\"", "sync.trust_meta_root"),
        ("[sync]\nfollow = true", "sync.follow"),
    ])
    func badValuesAreRefusedNamingTheKey(text: String, key: String) {
        do {
            _ = try NodeConfiguration.decode(text, file: "node.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains("node.toml"), "\(error)")
            #expect(error.description.contains(key), "\(error)")
        }
    }

    /// The messages for names that do not exist: the section and what it holds, or the key and
    /// the nearest valid one.
    @Test(arguments: [
        ("[extra]\nnonsense = 1", nil, "unknown section [extra] (keys: nonsense)"),
        ("[extra]", nil, "unknown section [extra] (keys: none)"),
        ("[wall]\nwal_dir = \"/w\"\nwal_fsync_policy = \"strict\"", nil, "unknown section [wall] (keys: wal_dir, wal_fsync_policy); did you mean [wal]?"),
        ("[wal]\nwal_fsnc_policy = \"strict\"", "wal.wal_fsnc_policy", "unknown key; did you mean wal_fsync_policy?"),
        ("[api]\nmax_conections = 5", "api.max_conections", "unknown key; did you mean max_connections?"),
        ("[api]\nbanana = 5", "api.banana", "unknown key"),
        ("[wal.extra]\nx = 1", "wal.extra", "unknown key"),
        ("lanes = 4", "lanes", "unknown key outside any section; keys belong in [node], [wal], [api], [logging], [snapshot], [sync]"),
    ])
    func unknownNamesAreNamedWithTheNearestValidOne(text: String, key: String?, message: String) {
        do {
            _ = try NodeConfiguration.decode(text, file: "node.toml")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.key == key, "\(error)")
            #expect(error.message == message, "\(error)")
            #expect(error.description == "configuration error in node.toml: " + (key.map { "\($0): " } ?? "") + message)
        }
    }

    /// Every key the schema allows is documented in the embedded defaults (set or commented out)
    /// and decodes: the schema, the decoder and `config default` cannot drift apart.
    @Test func everySchemaKeyIsDocumentedAndDecodes() throws {
        for (section, keys) in ConfigurationSchema.sections {
            #expect(NodeConfiguration.defaultTOML.contains("[\(section)]"), "[\(section)] undocumented")
            for key in keys {
                let documented = NodeConfiguration.defaultTOML.split(separator: "\n").contains {
                    $0.trimmingPrefix("# ").hasPrefix(key + " =")
                }
                #expect(documented, "\(section).\(key) is not in config default")
            }
        }
        // Every key, the commented-out ones switched on, decodes (the strict decoder would refuse
        // a key the schema lists but the file's shape lacks).
        let everyKey = NodeConfiguration.defaultTOML.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("# ") && $0.contains(" = ") ? String($0.dropFirst(2)) : String($0) }.joined(separator: "\n")
        let decoded = try NodeConfiguration.decode(everyKey, file: "every-key.toml")
        #expect(decoded.wal.walDirectory == "/var/lib/rivellum/wal" && decoded.snapshot.directory == "/var/lib/rivellum/snapshots")
        // The distance the suggestions rest on.
        #expect(ConfigurationSchema.editDistance("wal_fsnc_policy", "wal_fsync_policy") == 1)
        #expect(ConfigurationSchema.editDistance("", "abc") == 3)
        #expect(ConfigurationSchema.editDistance("kitten", "sitting") == 3)
    }

    @Test func listenParsing() {
        #expect(NodeConfiguration.parseListen("127.0.0.1:7070")! == ("127.0.0.1", 7070))
        #expect(NodeConfiguration.parseListen("[::1]:80")! == ("::1", 80))
        #expect(NodeConfiguration.parseListen("0.0.0.0:65535")! == ("0.0.0.0", 65_535))
        #expect(NodeConfiguration.parseListen(":80") == nil)
        #expect(NodeConfiguration.parseListen("host") == nil)
        #expect(NodeConfiguration.parseListen("host:port") == nil)
    }

    @Test func blockRequestsDecodePutsAndDeletes() throws {
        let decoder = BlockRequestDecoder(limits: NodeConfiguration().api)
        let operations = try decoder.decode(Array(#"{"ops": [{"key": "a", "value": "1"}, {"key": "b", "value": null}, {"value": "", "key": "ü"}]}"#.utf8))
        #expect(operations == [
            BlockOperation(key: Array("a".utf8), value: Array("1".utf8)), BlockOperation(key: Array("b".utf8), value: nil),
            BlockOperation(key: Array("ü".utf8), value: []),
        ])
        #expect(try decoder.decode(Array(#"{"ops": []}"#.utf8)).isEmpty)
    }

    /// The decision table of request refusals: status 400 for malformed, 413 for oversized.
    @Test(arguments: [
        ("", 400), ("null", 400), ("{}", 400), ("{\"ops\": null}", 400), ("{\"ops\": [null]}", 400),
        ("{\"ops\": [{\"key\": \"k\", \"value\": true}]}", 400), ("{\"ops\": [{\"key\": [\"k\"], \"value\": \"v\"}]}", 400),
        ("{\"ops\": [{\"key\": \"k\", \"value\": \"v\"}], \"height\": 3}", 400),
        ("{\"ops\": [{\"key\": \"k\", \"value\": \"v\"}, {\"key\": \"k\", \"value\": \"v\"}, {\"key\": \"k\", \"value\": \"v\"}]}", 413),
        ("{\"ops\": [{\"key\": \"0123456789\", \"value\": \"v\"}]}", 413), ("{\"ops\": [{\"key\": \"k\", \"value\": \"0123456789\"}]}", 413),
    ])
    func badRequestsAreRefused(body: String, status: Int) {
        var limits = NodeConfiguration().api
        limits.maxOperationsPerBlock = 2
        limits.maxKeyBytes = 8
        limits.maxValueBytes = 8
        do {
            _ = try BlockRequestDecoder(limits: limits).decode(Array(body.utf8))
            Issue.record("accepted: \(body)")
        } catch let error as APIError {
            #expect(Int(error.status.code) == status, "\(body): \(error.message)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
