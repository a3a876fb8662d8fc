#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The fault families of `docs/RULES.md`. Each is switched fully on or off per plan (swarm testing)
/// and, when on, has its own rate.
public enum FaultFamily: String, Sendable, CaseIterable, Codable, Comparable {
    /// At power loss each unsynced write or truncate is lost with the rate's probability; the
    /// survivors need not be a prefix.
    case lostUnsyncedWrites = "lost_unsynced_writes"
    /// At power loss the surviving unsynced changes of a file are applied in a shuffled order
    /// (the rate is the probability per file), so an older overlapping write can win.
    case reorderedWrites = "reordered_writes"
    /// At power loss an unsynced write is torn with the rate's probability: each 512-byte sector
    /// it touches independently keeps the new data, keeps the old, or becomes garbage.
    case tornWrites = "torn_writes"
    /// At power loss each directory entry change not covered by a directory sync is lost with
    /// the rate's probability.
    case lostDirectoryEntries = "lost_directory_entries"
    /// An unsynced rename is resolved per name, not atomically, with the rate's probability:
    /// after power loss both names or neither may exist.
    case nonAtomicRename = "non_atomic_rename"
    /// A write reaches the media at a sector-shifted offset (the page cache still shows the
    /// intended data until power loss).
    case misdirectedWrites = "misdirected_writes"
    /// A read returns the bytes of a sector-shifted offset (as many as the right read would;
    /// past the file's end, garbage).
    case misdirectedReads = "misdirected_reads"
    /// A read returns its data with one bit flipped.
    case bitRotOnRead = "bit_rot_on_read"
    /// At power loss one bit of a durable file flips (the rate is per file).
    case bitRotAtRest = "bit_rot_at_rest"
    /// A read fails with EIO.
    case readErrors = "read_errors"
    /// A write fails with EIO before writing anything.
    case writeErrors = "write_errors"
    /// `sync` fails with EIO and the dirty data is dropped while the cache keeps showing it
    /// ("pages marked clean"): a later sync reports success without writing it.
    case syncErrors = "sync_errors"
    /// A write or create fails with ENOSPC.
    case noSpace = "no_space"
    /// A write stores only a sector-aligned prefix and then fails with EIO.
    case shortWrites = "short_writes"
    /// A system call is interrupted (EINTR): retried inside the file system where POSIX retries
    /// it, surfaced from `close`, which must never be retried.
    case interrupts = "interrupts"

    public static func < (lhs: FaultFamily, rhs: FaultFamily) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Which faults `SimulatedFileSystem` injects and how often. A value: the simulator draws one
/// per seed and prints it. A family absent from `rates` is off.
public struct FaultPlan: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Probability per opportunity, in 0...1, for each family that is on.
    public var rates: [FaultFamily: Double]
    /// The simulated device's size: writes that would grow the total stored bytes beyond it fail
    /// with ENOSPC (not injected by chance, so not tagged `injected` unless `noSpace` fired).
    public var capacityBytes: UInt64?

    public init(rates: [FaultFamily: Double] = [:], capacityBytes: UInt64? = nil) {
        for (family, rate) in rates {
            precondition(rate >= 0 && rate <= 1, "rate of \(family) out of range: \(rate)")
        }
        self.rates = rates
        self.capacityBytes = capacityBytes
    }

    /// No faults at all: power loss then keeps every write, like a process crash.
    public static let none = FaultPlan()

    /// The rate of `family`, 0 when it is off.
    public func rate(_ family: FaultFamily) -> Double { rates[family] ?? 0 }

    public func isOn(_ family: FaultFamily) -> Bool { rate(family) > 0 }

    /// Swarm testing: every family independently on (with probability `onProbability`) or off,
    /// with a rate drawn log-uniformly between `rateMin` and `rateMax`.
    public static func swarm(
        random: inout DeterministicRandom, onProbability: Double = 0.5,
        rateMin: Double = 0.001, rateMax: Double = 0.2
    ) -> FaultPlan {
        precondition(rateMin > 0 && rateMin <= rateMax && rateMax <= 1)
        var rates: [FaultFamily: Double] = [:]
        for family in FaultFamily.allCases where random.chance(onProbability) {
            let unit = Double(random.next() >> 11) * 0x1.0p-53
            rates[family] = rateMin * exp(log(rateMax / rateMin) * unit)
        }
        return FaultPlan(rates: rates)
    }

    public var description: String {
        let families = rates.keys.sorted().map { "\($0.rawValue)=\(rates[$0]!)" }
        var text = families.isEmpty ? "no faults" : families.joined(separator: " ")
        if let capacityBytes { text += " capacity_bytes=\(capacityBytes)" }
        return text
    }
}

