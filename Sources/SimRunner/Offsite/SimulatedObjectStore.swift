import Engine
import FaultFS
import Foundation
import OffsiteCore
import Synchronization

/// A seeded, faulty `ObjectStore` in memory: the off-site seam as the simulator drives it, the
/// way `SimulatedFileSystem` is the storage seam. From its seed and rates: uploads lost (the
/// `put` returns, nothing is stored), uploads cut short (a prefix is stored, the `put`
/// returns), `put` and `get` failing as unavailable, and bit rot at rest (`rot`). It records every
/// fault it injected by key, so an oracle can tell damage the store did from damage a caller
/// let through. Calls run one at a time in the order made; nothing in it suspends.
final class SimulatedObjectStore: ObjectStore {
    struct Rates: CustomStringConvertible {
        var lostUpload = 0.0
        var partialUpload = 0.0
        var putUnavailable = 0.0
        var getUnavailable = 0.0

        var description: String {
            "lost_upload=\(lostUpload) partial_upload=\(partialUpload) put_unavailable=\(putUnavailable) get_unavailable=\(getUnavailable)"
        }
    }

    /// What the store did wrong since the last `takeInjected`.
    struct Injected: Equatable {
        /// Keys whose upload was lost or cut short while the `put` reported success.
        var damagedUploads: Set<String> = []
        /// Operations failed as unavailable.
        var unavailable = 0
    }

    private struct State {
        var objects: [String: [UInt8]] = [:]
        /// When each key was first stored: rot picks by this order, never by key (keys are
        /// SHA-256s of bytes that hold RocksDB's random session ids).
        var firstStored: [String: UInt64] = [:]
        var stores: UInt64 = 0
        var random: DeterministicRandom
        var rates: Rates
        var injected = Injected()
        /// Every key the store ever damaged (a lost or short upload, rot at rest).
        var everDamaged: Set<String> = []
    }

    private let state: Mutex<State>
    let description = "sim://offsite"

    init(seed: UInt64, rates: Rates) {
        state = Mutex(State(random: DeterministicRandom(seed: seed), rates: rates))
    }

    /// Switches every fault off (or back on with `rates`).
    func setRates(_ rates: Rates) { state.withLock { $0.rates = rates } }

    func takeInjected() -> Injected {
        state.withLock { state in
            defer { state.injected = Injected() }
            return state.injected
        }
    }

    /// Keys the store damaged at any time (an upload lost or cut short, or rot at rest).
    var everDamaged: Set<String> { state.withLock { $0.everDamaged } }

    /// Bit rot at rest: one bit of each of `count` stored objects under `prefix`, chosen by the
    /// seed. Returns how many objects it damaged.
    func rot(count: Int, prefix: String) -> Int {
        state.withLock { state in
            let keys = state.objects.keys.filter { $0.hasPrefix(prefix) && !(state.objects[$0]?.isEmpty ?? true) }
                .sorted { state.firstStored[$0]! < state.firstStored[$1]! }
            guard !keys.isEmpty else { return 0 }
            var rotten: Set<String> = []
            for _ in 0..<count {
                let key = keys[state.random.int(in: 0...(keys.count - 1))]
                var index = state.random.int(in: 0...(state.objects[key]!.count - 1))
                // A manifest is damaged at its first byte, so that it never decodes: whether a
                // flipped bit elsewhere still decodes depends on the SHA-256s it lists, which
                // hold RocksDB's random session ids, and would make the seed's trace depend on
                // them (I7). Any flipped bit of an object fails its SHA-256 whatever its bytes.
                if key.hasSuffix("/" + SnapshotManifest.fileName) { index = 0 }
                state.objects[key]![index] ^= UInt8(1 << state.random.int(in: 0...7))
                state.everDamaged.insert(key)
                rotten.insert(key)
            }
            return rotten.count
        }
    }

    func put(_ key: String, bytes: [UInt8]) async throws(ObjectStoreError) {
        let failure: ObjectStoreError? = state.withLock { state in
            if state.random.chance(state.rates.putUnavailable) {
                state.injected.unavailable += 1
                return ObjectStoreError(.unavailable, store: description, key: key, operation: "put", "503 (injected)")
            }
            if state.random.chance(state.rates.lostUpload) {
                state.injected.damagedUploads.insert(key)
                state.everDamaged.insert(key)
                return nil
            }
            state.stores += 1
            if state.firstStored[key] == nil { state.firstStored[key] = state.stores }
            if !bytes.isEmpty, state.random.chance(state.rates.partialUpload) {
                state.objects[key] = Array(bytes.prefix(state.random.int(in: 0...(bytes.count - 1))))
                state.injected.damagedUploads.insert(key)
                state.everDamaged.insert(key)
                return nil
            }
            state.objects[key] = bytes
            return nil
        }
        if let failure { throw failure }
    }

    func get(_ key: String, bytesMax: UInt64) async throws(ObjectStoreError) -> [UInt8]? {
        let answer: Result<[UInt8]?, ObjectStoreError> = state.withLock { state in
            if state.random.chance(state.rates.getUnavailable) {
                state.injected.unavailable += 1
                return .failure(ObjectStoreError(.unavailable, store: description, key: key, operation: "get", "503 (injected)"))
            }
            guard let bytes = state.objects[key] else { return .success(nil) }
            guard UInt64(bytes.count) <= bytesMax else {
                return .failure(ObjectStoreError(.damaged, store: description, key: key, operation: "get", "\(bytes.count) bytes, more than \(bytesMax)"))
            }
            return .success(bytes)
        }
        return try answer.get()
    }

    func size(_ key: String) async throws(ObjectStoreError) -> UInt64? {
        state.withLock { $0.objects[key].map { UInt64($0.count) } }
    }

    func list(prefix: String) async throws(ObjectStoreError) -> [StoredObject] {
        state.withLock { state in
            state.objects.filter { $0.key.hasPrefix(prefix) }.map { StoredObject(key: $0.key, sizeBytes: UInt64($0.value.count)) }.sorted { $0.key < $1.key }
        }
    }

    func delete(_ key: String) async throws(ObjectStoreError) {
        _ = state.withLock { $0.objects.removeValue(forKey: key) }
    }
}

/// Runs async work to its end from the simulator's synchronous loop, on the calling thread: the
/// task prefers a `CallerDrainedExecutor` that this thread drains until the work is done. It never
/// waits for the cooperative pool, whose threads (two on a two-core machine) may all be inside
/// synchronous simulator runs like this one, as in the test process: waiting there for a pool
/// thread deadlocks. The work must not wait on anything but the simulated stores and file systems
/// (which never suspend), so its jobs run straight through, in order: the seed fixes everything.
func runToCompletion<Value: Sendable>(_ work: @escaping @Sendable () async throws -> Value) -> Result<Value, any Error> {
    let outcome = Mutex<Result<Value, any Error>?>(nil)
    let executor = CallerDrainedExecutor()
    Task(executorPreference: executor) {
        let result: Result<Value, any Error>
        do {
            result = .success(try await work())
        } catch {
            result = .failure(error)
        }
        outcome.withLock { $0 = result }
        executor.finish()
    }
    executor.drainUntilFinished()
    return outcome.withLock { $0! }
}

/// A task executor whose jobs run on the one thread that calls `drainUntilFinished`, in the order
/// they were enqueued. A job enqueued from another thread (a continuation resumed elsewhere) wakes
/// the drainer.
final class CallerDrainedExecutor: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var finished = false

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Called by the task's last job: the drainer returns once no job is left.
    func finish() {
        condition.lock()
        finished = true
        condition.signal()
        condition.unlock()
    }

    /// Runs jobs until `finish` was called and none is pending. Bounded by the jobs the work
    /// enqueues.
    func drainUntilFinished() {
        while true {
            condition.lock()
            while jobs.isEmpty && !finished { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
