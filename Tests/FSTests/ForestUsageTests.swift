// USED from one pass over the forest (ForestUsage) equals the definition: the WRITTEN of
// every version the removed records reach and no other record does, computed here from
// closures, on seeded random forests of versions, datasets, nested datasets and snapshots.

import Engine
@testable import FS
import KVTestSupport
import Testing

@Suite struct ForestUsageTests {
    @Test func usedMatchesTheDefinition() {
        let seed = TestSeed.resolve("usedMatchesTheDefinition")
        var random = SeededGenerator(seed: seed)
        for round in 0..<300 {
            let forest = Self.randomForest(&random)
            let usage = ForestUsage(forest)
            for record in forest.datasets.values {
                let expected = Self.definition(record.id, forest)
                let found = usage.freed(by: record.id)
                #expect(found.bytes == expected.bytes && found.mergeInto == expected.mergeInto,
                        "round \(round), record \(record.id): \(found) against \(expected); replay with ZEROFS_SEED=\(seed)")
            }
            #expect(usage.collecting == !forest.collectable().isEmpty)
        }
    }

    /// Up to 40 versions (some roots), writable datasets on some of them (nested in earlier
    /// ones at random), snapshots of those on any version.
    private static func randomForest(_ random: inout SeededGenerator) -> Forest {
        var forest = Forest()
        let versions = UInt64.random(in: 1...40, using: &random)
        for id in 1...versions {
            let parent = id == 1 || Int.random(in: 0..<8, using: &random) == 0 ? 0 : UInt64.random(in: 1..<id, using: &random)
            forest.addVersion(id, VersionNode(parent: parent, written: UInt64.random(in: 0...1000, using: &random)))
        }
        var writable: [UInt64] = []
        var next: UInt64 = 1
        for _ in 0..<Int.random(in: 1...6, using: &random) {
            let container = writable.isEmpty || Bool.random(using: &random) ? DatasetRecord.none : writable.randomElement(using: &random)!
            forest.put(DatasetRecord(id: next, name: Array("d\(next)".utf8), container: container,
                                     version: UInt64.random(in: 1...versions, using: &random), rootInode: next, createdAt: Timestamp(seconds: 0, nanoseconds: 0)))
            writable.append(next)
            next += 1
        }
        for _ in 0..<Int.random(in: 0...12, using: &random) {
            forest.put(DatasetRecord(id: next, name: Array("s\(next)".utf8), parent: writable.randomElement(using: &random)!,
                                     version: UInt64.random(in: 1...versions, using: &random), rootInode: next, createdAt: Timestamp(seconds: 0, nanoseconds: 0), isSnapshot: true))
            next += 1
        }
        return forest
    }

    /// USED as Docs/datasets.md defines it: keep every version the other records reach,
    /// with its ancestors; sum WRITTEN over what the removed records reach and is not
    /// kept. A snapshot whose version is kept, with one child and no other record at it,
    /// would merge into that child.
    private static func definition(_ id: UInt64, _ forest: Forest) -> (bytes: UInt64, mergeInto: UInt64?) {
        let record = forest.datasets[id]!
        var removed: Set<UInt64> = [id]
        if !record.isSnapshot {
            let members = forest.subtree(id)
            removed = Set(members + members.flatMap { forest.snapshots(of: $0) })
        }
        let kept = forest.closure(forest.datasets.values.filter { !removed.contains($0.id) }.map(\.version))
        let gone = forest.closure(removed.map { forest.datasets[$0]!.version }).subtracting(kept)
        let bytes = gone.reduce(UInt64(0)) { $0 + (forest.versions[$1]?.written ?? 0) }
        if record.isSnapshot, !gone.contains(record.version), let children = forest.children[record.version], children.count == 1,
           forest.datasets.values.filter({ $0.version == record.version }).count == 1 {
            return (bytes, children.first)
        }
        return (bytes, nil)
    }
}
