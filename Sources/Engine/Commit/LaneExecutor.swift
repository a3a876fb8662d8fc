import Dispatch
import FaultFS
import Synchronization

/// Runs per-lane work for one block. Production runs lanes in parallel with bounded
/// concurrency; the simulator runs them one at a time in a seeded order, so a seed fixes every
/// file-system operation's order.
public protocol LaneExecutor: Sendable {
    /// Calls `body` once for each of `lanes`, in some order, possibly concurrently; returns after
    /// all have finished. Throws the first error (by lane order) after all have run.
    func run(_ lanes: [Int], _ body: @Sendable (Int) throws(EngineError) -> Void) throws(EngineError)
}

/// One lane after another, in lane order.
public struct SerialLaneExecutor: LaneExecutor {
    public init() {}

    public func run(_ lanes: [Int], _ body: @Sendable (Int) throws(EngineError) -> Void) throws(EngineError) {
        for lane in lanes { try body(lane) }
    }
}

/// One lane after another, in an order drawn from a seed for every block.
public final class SeededLaneExecutor: LaneExecutor {
    private let random: Mutex<DeterministicRandom>

    public init(seed: UInt64) {
        random = Mutex(DeterministicRandom(seed: seed))
    }

    public func run(_ lanes: [Int], _ body: @Sendable (Int) throws(EngineError) -> Void) throws(EngineError) {
        let order = random.withLock { random in lanes.shuffled(using: &random) }
        for lane in order { try body(lane) }
    }
}

/// Lanes in parallel on Dispatch's pool, at most `maximumConcurrency` at a time.
public struct ConcurrentLaneExecutor: LaneExecutor {
    public let maximumConcurrency: Int

    public init(maximumConcurrency: Int) {
        precondition(maximumConcurrency >= 1)
        self.maximumConcurrency = maximumConcurrency
    }

    public func run(_ lanes: [Int], _ body: @Sendable (Int) throws(EngineError) -> Void) throws(EngineError) {
        guard lanes.count > 1 && maximumConcurrency > 1 else {
            for lane in lanes { try body(lane) }
            return
        }
        let errors = Mutex<[Int: EngineError]>([:])
        let chunks = min(maximumConcurrency, lanes.count)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            for position in stride(from: chunk, to: lanes.count, by: chunks) {
                do throws(EngineError) {
                    try body(lanes[position])
                } catch {
                    errors.withLock { $0[position] = error }
                }
            }
        }
        if let first = errors.withLock({ found in found.keys.min().map { found[$0]! } }) { throw first }
    }
}
