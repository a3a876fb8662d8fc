/// What the torn-tail decision stands on, gathered from the partition's bytes before anything
/// is decided (see `WALTornTailRule`).
struct WALTornTailEvidence: Sendable, Equatable {
    /// The fsync policy the damaged bytes were written under (from the damaged segment's header
    /// or a neighbour's; the configured policy when none survives).
    var writtenUnder: FsyncPolicy
    /// Where in its segment the damage starts (0: the segment header itself).
    var damageOffset: UInt64
    /// The segment chain is broken: a segment is missing, duplicated, or does not continue the
    /// one before it.
    var chainBroken: Bool
    /// Segment files after the damaged one.
    var laterSegments: Int
    /// The offset of a valid record of the damaged segment after its damaged header, if any.
    var ownRecordAfterDamagedHeader: Int?
    /// A valid frame after the damage that proves the damage was once durable: one of another
    /// partition or segment, one with an older LSN, or one written after the damaged LSN was
    /// synced. `nil` when none exists.
    var witness: String?
}

/// The torn-tail decision as a table, the way TigerBeetle's journal lists its recovery cases:
/// rows in order, the first that applies decides. A torn tail (an interrupted write nobody was
/// told was durable) may be dropped; every other damage is mid-log damage, and the log must not
/// be used past it. The rule behind the rows is in `docs/RULES.md` (R1–R5).
enum WALTornTailRule: String, CaseIterable, Sendable {
    /// dev_fast, the damage past the header, and a witness after it: a later sync proves it durable.
    case devFastWitnessed = "dev_fast_witnessed"
    /// dev_fast otherwise: it never syncs, so anything from the damage on may be torn (in later
    /// segments too).
    case devFastNeverSynced = "dev_fast_never_synced"
    /// The segment chain is broken: segments are synced before the next one is created.
    case chainBroken = "chain_broken"
    /// A later segment exists: a segment is synced before the next one is created.
    case laterSegmentExists = "later_segment_exists"
    /// The header is damaged but a record of this segment follows it: a header is synced (file
    /// and directory) before the segment's first record is written.
    case damagedHeaderBeforeOwnRecord = "damaged_header_before_own_record"
    /// A valid frame after the damage proves it was once durable.
    case witnessAfterDamage = "witness_after_damage"
    /// Nothing shows the damaged bytes were ever durable: a torn tail.
    case nothingProvesDurability = "nothing_proves_durability"

    var verdict: WALDamageVerdict {
        switch self {
        case .devFastNeverSynced, .nothingProvesDurability: .tornTail
        case .devFastWitnessed, .chainBroken, .laterSegmentExists, .damagedHeaderBeforeOwnRecord, .witnessAfterDamage: .midLog
        }
    }

    func applies(to evidence: WALTornTailEvidence) -> Bool {
        let devFast = evidence.writtenUnder == .devFast
        switch self {
        case .devFastWitnessed: return devFast && evidence.damageOffset > 0 && evidence.witness != nil
        case .devFastNeverSynced: return devFast
        case .chainBroken: return evidence.chainBroken
        case .laterSegmentExists: return evidence.laterSegments > 0
        case .damagedHeaderBeforeOwnRecord: return evidence.damageOffset == 0 && evidence.ownRecordAfterDamagedHeader != nil
        case .witnessAfterDamage: return evidence.witness != nil
        case .nothingProvesDurability: return true
        }
    }

    /// Why, in the words recovery reports.
    func explanation(_ evidence: WALTornTailEvidence) -> String {
        switch self {
        case .devFastWitnessed, .witnessAfterDamage: evidence.witness ?? ""
        case .devFastNeverSynced: "the segment was written under dev_fast, which never syncs"
        case .chainBroken: "the segment chain is broken; segments are synced before the next one is created"
        case .laterSegmentExists:
            "\(evidence.laterSegments) later segment(s) exist, and a segment is synced before the next is created"
        case .damagedHeaderBeforeOwnRecord:
            "a valid record of this segment sits at offset \(evidence.ownRecordAfterDamagedHeader ?? 0), "
                + "and a segment's header is synced before its first record is written"
        case .nothingProvesDurability:
            "no valid record after the damage shows it was ever durable (\(evidence.writtenUnder.rawValue) segment)"
        }
    }

    /// The first row that applies (the last row always does).
    static func decide(_ evidence: WALTornTailEvidence) -> WALTornTailRule {
        guard let row = allCases.first(where: { $0.applies(to: evidence) }) else {
            preconditionFailure("the last torn-tail rule applies to every damage")
        }
        return row
    }
}
