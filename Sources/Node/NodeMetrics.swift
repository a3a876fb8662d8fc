import CoreMetrics
import Engine
import Prometheus
import Synchronization

/// The node's metrics, kept with swift-metrics in a Prometheus registry and served as text by
/// `GET /v1/metrics`. Names follow Prometheus conventions (`_total` counters, `_seconds`
/// durations). WAL counters are taken from the engine's per-partition statistics at each scrape;
/// sync latencies and group-commit batch sizes arrive through the WAL observer as they happen.
public final class NodeMetrics: WALObserver, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    let commitDuration: CoreMetrics.Timer
    let blocksCommitted: CoreMetrics.Counter
    let operationsCommitted: CoreMetrics.Counter
    let height: CoreMetrics.Gauge
    let durableHeight: CoreMetrics.Gauge
    let apiConnections: CoreMetrics.Gauge
    let recoveryDuration: CoreMetrics.Gauge
    let recoveryRecordsReplayed: CoreMetrics.Gauge
    let recoveryBlocksDropped: CoreMetrics.Gauge
    let snapshotsCreated: CoreMetrics.Counter
    let offsitePushes: CoreMetrics.Counter
    let snapshotDuration: CoreMetrics.Timer
    private let syncDurations: Mutex<[UInt32: CoreMetrics.Timer]>
    private let batchRecords: CoreMetrics.Recorder
    private let errors: Mutex<[String: CoreMetrics.Counter]>
    /// The WAL statistics at the last scrape, to turn totals into counter increments.
    private let lastStatistics = Mutex<[UInt32: WALPartitionStatistics]>([:])

    public init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let latencyBuckets: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
            .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
            .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
        ]
        factory.defaultDurationHistogramBuckets = latencyBuckets
        factory.valueHistogramBuckets["rivellum_wal_group_commit_batch_records"] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024]
        self.factory = factory
        commitDuration = CoreMetrics.Timer(label: "rivellum_commit_duration_seconds", factory: factory)
        blocksCommitted = CoreMetrics.Counter(label: "rivellum_blocks_committed_total", factory: factory)
        operationsCommitted = CoreMetrics.Counter(label: "rivellum_operations_committed_total", factory: factory)
        height = CoreMetrics.Gauge(label: "rivellum_height", factory: factory)
        durableHeight = CoreMetrics.Gauge(label: "rivellum_durable_height", factory: factory)
        apiConnections = CoreMetrics.Gauge(label: "rivellum_api_connections", factory: factory)
        recoveryDuration = CoreMetrics.Gauge(label: "rivellum_recovery_duration_seconds", factory: factory)
        recoveryRecordsReplayed = CoreMetrics.Gauge(label: "rivellum_recovery_records_replayed", factory: factory)
        recoveryBlocksDropped = CoreMetrics.Gauge(label: "rivellum_recovery_uncommitted_blocks_dropped", factory: factory)
        snapshotsCreated = CoreMetrics.Counter(label: "rivellum_snapshots_created_total", factory: factory)
        offsitePushes = CoreMetrics.Counter(label: "rivellum_snapshots_pushed_offsite_total", factory: factory)
        snapshotDuration = CoreMetrics.Timer(label: "rivellum_snapshot_create_duration_seconds", factory: factory)
        batchRecords = CoreMetrics.Recorder(label: "rivellum_wal_group_commit_batch_records", aggregate: true, factory: factory)
        syncDurations = Mutex([:])
        errors = Mutex([:])
    }

    /// Counts an error by kind (`bad_request`, `payload_too_large`, `overloaded`, an engine
    /// error kind, ...).
    public func countError(_ kind: String) {
        let counter = errors.withLock { counters in
            if let existing = counters[kind] { return existing }
            let created = CoreMetrics.Counter(label: "rivellum_errors_total", dimensions: [("kind", kind)], factory: factory)
            counters[kind] = created
            return created
        }
        counter.increment()
    }

    /// Counts a peer that answered falsely (`rivellum_sync_peer_faults_total{peer}`).
    public func countPeerFault(peer: String) {
        let counter = errors.withLock { counters in
            let key = "peer-fault " + peer
            if let existing = counters[key] { return existing }
            let created = CoreMetrics.Counter(label: "rivellum_sync_peer_faults_total", dimensions: [("peer", peer)], factory: factory)
            counters[key] = created
            return created
        }
        counter.increment()
    }

    public func walSynced(_ event: WALSyncEvent) {
        let key = event.partition.rawValue
        let timer = syncDurations.withLock { timers in
            if let existing = timers[key] { return existing }
            let created = CoreMetrics.Timer(
                label: "rivellum_wal_sync_duration_seconds", dimensions: [("partition", event.partition.name)],
                factory: factory)
            timers[key] = created
            return created
        }
        timer.recordNanoseconds(Int64(clamping: event.durationNanoseconds))
        if event.records > 0 { batchRecords.record(Int64(clamping: event.records)) }
    }

    /// Records what recovery did at startup.
    func recordRecovery(_ report: EngineRecoveryReport) {
        recoveryDuration.record(Double(report.durationNanoseconds) / 1e9)
        recoveryRecordsReplayed.record(report.lanes.reduce(0) { $0 + $1.recordsReplayed })
        recoveryBlocksDropped.record(Int64(clamping: report.uncommittedBlocksDropped))
    }

    /// Brings the gauges and WAL counters up to date with `engine` (and the API's open
    /// connections) and renders the registry.
    public func render(engine: Engine, connections: Int = 0) -> String {
        apiConnections.record(Int64(connections))
        let roots = engine.stateRoots()
        height.record(Int64(clamping: roots.height))
        durableHeight.record(Int64(clamping: engine.durableHeight))
        let current = engine.walStatistics
        let previous = lastStatistics.withLock { last in
            let before = last
            for (partition, statistics) in current { last[partition.rawValue] = statistics }
            return before
        }
        for (partition, statistics) in current {
            let before = previous[partition.rawValue] ?? WALPartitionStatistics()
            let labels = [("partition", partition.name)]
            func add(_ name: String, _ now: UInt64, _ then: UInt64) {
                CoreMetrics.Counter(label: name, dimensions: labels, factory: factory).increment(by: Int64(clamping: now &- min(now, then)))
            }
            add("rivellum_wal_appends_total", statistics.recordsAppended, before.recordsAppended)
            add("rivellum_wal_append_batches_total", statistics.appendBatches, before.appendBatches)
            add("rivellum_wal_bytes_total", statistics.bytesAppended, before.bytesAppended)
            add("rivellum_wal_syncs_total", statistics.syncs, before.syncs)
            add("rivellum_wal_syncs_shared_total", statistics.syncsShared, before.syncsShared)
            add("rivellum_wal_segments_rolled_total", statistics.segmentsRolled, before.segmentsRolled)
        }
        return registry.emitToString()
    }
}
