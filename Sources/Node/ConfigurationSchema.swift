import TOMLKit

/// The sections and keys a node configuration file may hold, and the messages for what it may
/// not: an unknown section names itself and the keys it holds, an unknown key in a known
/// section names the nearest valid key. Checked before decoding, so that a typo never reaches
/// TOMLKit's generic "unexpected keys" report. A key listed here but not decoded is still
/// refused by the strict decoder (a test checks every listed key decodes).
enum ConfigurationSchema {
    /// Section → its keys, in the order `config default` prints them.
    static let sections: KeyValuePairs<String, [String]> = [
        "node": ["data_dir", "chain_id", "lanes", "archive"],
        "wal": [
            "wal_dir", "wal_fsync_policy", "wal_sync_interval_ms", "wal_sync_bytes", "wal_segment_size_mb",
            "wal_retention_hours", "wal_recovery_mode",
        ],
        "api": [
            "listen", "max_body_bytes", "max_ops_per_block", "max_key_bytes", "max_value_bytes", "max_inflight_commits",
            "max_connections", "request_head_timeout_ms", "request_body_timeout_ms", "idle_timeout_ms", "max_body_bytes_in_flight",
        ],
        "logging": ["level", "format"],
        "snapshot": ["dir", "interval_hours", "keep", "offsite"],
        "sync": ["peers", "quorum", "trust_height", "trust_meta_root", "follow", "mode", "chunk_kib"],
    ]

    /// The first unknown section or key of `table` (sections in file order are not kept by
    /// TOMLKit, so names are checked in sorted order for a stable message), or nil. The key is
    /// `section.key` for a key, nil for a whole section (the message names it).
    static func firstProblem(in table: TOMLTable) -> (key: String?, message: String)? {
        let known = Dictionary(uniqueKeysWithValues: sections.map { ($0.key, $0.value) })
        // Bounded: one round per top-level key, then one per key of a known section.
        for name in table.keys.sorted() {
            guard let keys = known[name] else {
                if let section = table[name]?.table {
                    let held = section.keys.sorted().joined(separator: ", ")
                    return (nil, "unknown section [\(name)] (keys: \(held.isEmpty ? "none" : held))" + suggestion(name, sections.map(\.key), prefix: "["))
                }
                return (name, "unknown key outside any section; keys belong in [\(sections.map(\.key).joined(separator: "], ["))]")
            }
            guard let section = table[name]?.table else { continue }  // a wrong type: the decoder names it
            for key in section.keys.sorted() where !keys.contains(key) {
                return ("\(name).\(key)", "unknown key" + suggestion(key, keys, prefix: ""))
            }
        }
        return nil
    }

    /// "; did you mean NAME?" when a valid name is close to `name`, else "".
    static func suggestion(_ name: String, _ candidates: [String], prefix: String) -> String {
        let scored = candidates.map { ($0, editDistance(name, $0)) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
        guard let (best, distance) = scored, distance <= max(2, best.count / 3) else { return "" }
        return "; did you mean \(prefix)\(best)\(prefix == "[" ? "]" : "")?"
    }

    /// Levenshtein distance over Unicode scalars (config keys are short: O(n·m) is nothing).
    static func editDistance(_ a: String, _ b: String) -> Int {
        // Bounded: |a| × |b| steps.
        let left = Array(a.unicodeScalars)
        let right = Array(b.unicodeScalars)
        if left.isEmpty { return right.count }
        var previous = Array(0...right.count)
        var current = [Int](repeating: 0, count: right.count + 1)
        for i in 1...left.count {
            current[0] = i
            for j in stride(from: 1, through: right.count, by: 1) {
                let substitution = previous[j - 1] + (left[i - 1] == right[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[right.count]
    }
}
