@testable import Engine
import Testing

/// The torn-tail decision table, one case per row: the evidence that reaches the row, its
/// verdict, and that no earlier row takes it. Then the order of the rows matters where it must.
@Suite("WAL torn-tail decision table")
struct WALTornTailRuleTests {
    /// Evidence that reaches the last row: a strict segment, damage past the header, nothing after it.
    static let plain = WALTornTailEvidence(
        writtenUnder: .strict, damageOffset: 4096, chainBroken: false, laterSegments: 0, ownRecordAfterDamagedHeader: nil, witness: nil)

    static func with(_ change: (inout WALTornTailEvidence) -> Void) -> WALTornTailEvidence {
        var evidence = plain
        change(&evidence)
        return evidence
    }

    static let cases: [(WALTornTailRule, WALTornTailEvidence, WALDamageVerdict)] = [
        (.devFastWitnessed, with { $0.writtenUnder = .devFast; $0.witness = "a later sync" }, .midLog),
        (.devFastNeverSynced, with { $0.writtenUnder = .devFast }, .tornTail),
        (.chainBroken, with { $0.chainBroken = true }, .midLog),
        (.laterSegmentExists, with { $0.laterSegments = 2 }, .midLog),
        (.damagedHeaderBeforeOwnRecord, with { $0.damageOffset = 0; $0.ownRecordAfterDamagedHeader = 128 }, .midLog),
        (.witnessAfterDamage, with { $0.witness = "an older LSN after it" }, .midLog),
        (.nothingProvesDurability, plain, .tornTail),
    ]

    @Test func everyRowIsReachedAndGivesItsVerdict() {
        #expect(Set(Self.cases.map(\.0)) == Set(WALTornTailRule.allCases), "a row has no case")
        for (row, evidence, verdict) in Self.cases {
            #expect(WALTornTailRule.decide(evidence) == row, "\(evidence)")
            #expect(row.verdict == verdict, "\(row)")
            #expect(!row.explanation(evidence).isEmpty)
        }
    }

    /// dev_fast never syncs: a broken chain or a later segment proves nothing there (the rows
    /// for them come after), while under balanced the same evidence is mid-log damage.
    @Test func devFastComesBeforeTheSyncOrderRows() {
        for change in [{ (e: inout WALTornTailEvidence) in e.chainBroken = true }, { $0.laterSegments = 1 }] {
            var evidence = Self.with(change)
            evidence.writtenUnder = .devFast
            #expect(WALTornTailRule.decide(evidence).verdict == .tornTail)
            evidence.writtenUnder = .balanced
            #expect(WALTornTailRule.decide(evidence).verdict == .midLog)
        }
    }

    /// A dev_fast header damage (offset 0) is torn even with a witness after it: the witness
    /// row needs the damage past the header.
    @Test func aDevFastHeaderDamageIsTornEvenWithAWitness() {
        let evidence = Self.with { $0.writtenUnder = .devFast; $0.damageOffset = 0; $0.witness = "w"; $0.ownRecordAfterDamagedHeader = 64 }
        #expect(WALTornTailRule.decide(evidence) == .devFastNeverSynced)
    }

    /// A record of the segment after a damaged header decides only at offset 0.
    @Test func anOwnRecordAfterTheHeaderCountsOnlyForHeaderDamage() {
        #expect(WALTornTailRule.decide(Self.with { $0.ownRecordAfterDamagedHeader = 64 }) == .nothingProvesDurability)
    }

    /// Under every policy but dev_fast, and for every combination of the other facts, the
    /// verdict is a torn tail exactly when nothing at all shows durability.
    @Test func onlyEvidenceOfNothingIsATornTailOutsideDevFast() {
        for policy in [FsyncPolicy.strict, .balanced] {
            for chainBroken in [false, true] {
                for later in [0, 1] {
                    for offset: UInt64 in [0, 512] {
                        for own in [nil, 64] as [Int?] {
                            for witness in [nil, "w"] as [String?] {
                                let evidence = WALTornTailEvidence(
                                    writtenUnder: policy, damageOffset: offset, chainBroken: chainBroken, laterSegments: later,
                                    ownRecordAfterDamagedHeader: own, witness: witness)
                                let nothing = !chainBroken && later == 0 && !(offset == 0 && own != nil) && witness == nil
                                #expect((WALTornTailRule.decide(evidence).verdict == .tornTail) == nothing, "\(evidence)")
                            }
                        }
                    }
                }
            }
        }
    }
}
