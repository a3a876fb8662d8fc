import Crypto

/// A 32-byte SHA-256 digest: lane roots, node hashes, key paths and the MetaRoot.
public struct Hash32: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The four 64-bit words, big-endian order of the digest bytes (word 0 holds bytes 0..<8).
    public var words: (UInt64, UInt64, UInt64, UInt64)

    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    public init(bytes: some Collection<UInt8>) {
        precondition(bytes.count == 32, "a Hash32 has 32 bytes, got \(bytes.count)")
        var values: [UInt64] = [0, 0, 0, 0]
        for (index, byte) in bytes.enumerated() {
            values[index / 8] = values[index / 8] << 8 | UInt64(byte)
        }
        words = (values[0], values[1], values[2], values[3])
    }

    /// Parses 64 hex digits.
    public init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        self.init(bytes: bytes)
    }

    public static let zero = Hash32(words: (0, 0, 0, 0))

    public var bytes: [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(32)
        for word in [words.0, words.1, words.2, words.3] {
            for shift in stride(from: 56, through: 0, by: -8) { result.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return result
    }

    /// Bit `index` (0 = the most significant bit of byte 0): the path direction at that depth.
    @inline(__always)
    public func bit(_ index: Int) -> Bool {
        precondition(index >= 0 && index < 256, "bit index out of range: \(index)")
        let word: UInt64
        switch index >> 6 {
        case 0: word = words.0
        case 1: word = words.1
        case 2: word = words.2
        default: word = words.3
        }
        return (word >> UInt64(63 - (index & 63))) & 1 == 1
    }

    /// This hash with every bit from `depth` on cleared: the path prefix of a tree position.
    public func prefix(_ depth: Int) -> Hash32 {
        precondition(depth >= 0 && depth <= 256)
        func keep(_ word: UInt64, _ wordIndex: Int) -> UInt64 {
            let bitsKept = min(64, max(0, depth - wordIndex * 64))
            if bitsKept == 64 { return word }
            if bitsKept == 0 { return 0 }
            return word & ~(UInt64.max >> UInt64(bitsKept))
        }
        return Hash32(words: (keep(words.0, 0), keep(words.1, 1), keep(words.2, 2), keep(words.3, 3)))
    }

    /// The first bit index at which two hashes differ, or nil when equal.
    public func firstDifferingBit(_ other: Hash32) -> Int? {
        let pairs = [(words.0, other.words.0), (words.1, other.words.1), (words.2, other.words.2), (words.3, other.words.3)]
        for (index, pair) in pairs.enumerated() where pair.0 != pair.1 {
            return index * 64 + (pair.0 ^ pair.1).leadingZeroBitCount
        }
        return nil
    }

    public var hex: String { Hex.encode(bytes) }

    public var description: String { hex }

    public static func == (lhs: Hash32, rhs: Hash32) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2 && lhs.words.3 == rhs.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }

    public static func < (lhs: Hash32, rhs: Hash32) -> Bool {
        (lhs.words.0, lhs.words.1, lhs.words.2, lhs.words.3) < (rhs.words.0, rhs.words.1, rhs.words.2, rhs.words.3)
    }
}

/// The domain-separated SHA-256 hashing of the state commitments (docs/FORMATS.md).
public enum StateHashing {
    /// Tags prefixed to every hashed message so a leaf can never be read as a branch, and so on.
    public enum Domain: UInt8 {
        case leaf = 0x00
        case branch = 0x01
        case empty = 0x02
        case metaLeaf = 0x10
        case metaNode = 0x11
        case metaRoot = 0x12
    }

    public static func sha256(_ bytes: some Sequence<UInt8>) -> Hash32 {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return Hash32(bytes: Array(hasher.finalize()))
    }

    static func digest(_ domain: Domain, _ parts: [[UInt8]]) -> Hash32 {
        var hasher = SHA256()
        hasher.update(data: [domain.rawValue])
        for part in parts { hasher.update(data: part) }
        return Hash32(bytes: Array(hasher.finalize()))
    }

    /// The path of a key in its lane's tree: SHA-256 of the key bytes.
    public static func keyPath(_ key: [UInt8]) -> Hash32 { sha256(key) }

    /// The hash stored for a value: SHA-256 of the value bytes.
    public static func valueHash(_ value: [UInt8]) -> Hash32 { sha256(value) }

    /// The hash of an empty subtree: SHA-256(0x02).
    public static let emptyTree = digest(.empty, [])

    /// A leaf: SHA-256(0x00 || key path || value hash).
    public static func leaf(path: Hash32, valueHash: Hash32) -> Hash32 {
        digest(.leaf, [path.bytes, valueHash.bytes])
    }

    /// A branch: SHA-256(0x01 || left || right).
    public static func branch(left: Hash32, right: Hash32) -> Hash32 {
        digest(.branch, [left.bytes, right.bytes])
    }
}

/// Lower-case hexadecimal text for bytes (hashes in JSON, records in snapshot manifests).
public enum Hex {
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes of an even-length hex string; nil when it is not one.
    public static func decode(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    private static func value(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
