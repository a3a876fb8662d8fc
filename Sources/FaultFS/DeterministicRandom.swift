/// SplitMix64: expands one 64-bit seed into a stream of well-mixed words. Used to seed
/// `DeterministicRandom` and to derive independent child seeds from one parent seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The simulation's only source of randomness: xoshiro256** seeded through SplitMix64.
///
/// A value type, so a copy replays the same stream; never shared between threads. No wall
/// clock and no system entropy ever reach it, so (seed, code, configuration) fix every draw.
public struct DeterministicRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    public init(seed: UInt64) {
        var mixer = SplitMix64(seed: seed)
        s0 = mixer.next()
        s1 = mixer.next()
        s2 = mixer.next()
        s3 = mixer.next()
        // All-zero state would be a fixed point; SplitMix64 never yields four zeros in a row.
        assert(s0 | s1 | s2 | s3 != 0)
    }

    public mutating func next() -> UInt64 {
        let result = rotateLeft(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotateLeft(s3, 45)
        return result
    }

    private func rotateLeft(_ value: UInt64, _ count: UInt64) -> UInt64 {
        (value << count) | (value >> (64 - count))
    }

    /// `true` with probability `probability` (0 never draws a word-dependent `true`).
    public mutating func chance(_ probability: Double) -> Bool {
        precondition(probability >= 0 && probability <= 1, "probability out of range: \(probability)")
        if probability == 0 { return false }
        return Double(next() >> 11) * 0x1.0p-53 < probability
    }

    /// A uniform integer in `range`.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// A uniform integer in `range`.
    public mutating func int(in range: Range<Int>) -> Int {
        Int.random(in: range, using: &self)
    }

    /// A value in `0..<bound` from exactly one draw (a slight modulo bias, irrelevant here), so
    /// that how many draws a decision takes never depends on the bound.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    /// A new generator whose stream is independent of this one's future draws.
    public mutating func fork() -> DeterministicRandom {
        DeterministicRandom(seed: next())
    }
}
