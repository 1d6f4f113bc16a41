// Collecting a deleted snapshot costs what changed next to it, not what it holds:
// deleting the oldest snapshot of a large dataset absorbs the next snapshot's few changes
// into it (Collector+Absorb.swift) instead of moving the whole dataset down. Checked by
// counting the key operations the collector writes, not by timing.

import Engine
@testable import FS
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Testing

@Suite struct CollectCostTests {
    private struct Run {
        var cost = 0
        var problems: [String] = []
        /// Whether the kept snapshot now references the deleted one's version.
        var absorbed = false
    }

    /// `files` files of one chunk in the root; snapshots s0 and s1 with `changed` files
    /// rewritten between them, one more after s1; then `deleted` goes and is collected.
    private func collectCost(files: Int, changed: Int, deleted: String) throws -> Run {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let counting = CountingBackend(try harness.open(harness.freshPath()))
        let fs = try FileSystem.open(counting, options: costTestOptions())
        defer { try? fs.close() }
        let pool = fs.pool
        var inodes: [UInt64] = []
        for i in 0..<files {
            let file = try fs.create(.root, FileSystem.rootInode, Array("f\(i)".utf8), mode: 0o644)
            _ = try fs.write(.root, file.ino, offset: 0, [UInt8](repeating: UInt8(i % 251), count: 4096))
            inodes.append(file.ino)
        }
        try pool.snapshot("root", "s0")
        for i in 0..<changed { _ = try fs.write(.root, inodes[i], offset: 0, [UInt8](repeating: 1, count: 4096)) }
        try pool.snapshot("root", "s1")
        _ = try fs.write(.root, inodes[files - 1], offset: 100, [2])
        let head = try fingerprint(fs)
        let kept = try fingerprint(try pool.filesystem(named: deleted == "s0" ? "root@s1" : "root@s0"))
        let versionOf = { (name: String) in
            pool.state.withLock { s in s.forest.datasets[s.forest.snapshot(of: 0, named: Array(name.utf8))!]!.version }
        }
        let deletedVersion = versionOf(deleted)
        try pool.deleteSnapshot("root@\(deleted)")
        let before = counting.operations.withLock { $0 }
        try pool.collectGarbage()
        var run = Run(cost: counting.operations.withLock { $0 } - before)
        run.absorbed = deleted == "s0" && versionOf("s1") == deletedVersion
        #expect(try fingerprint(fs) == head)
        #expect(try fingerprint(try pool.filesystem(named: deleted == "s0" ? "root@s1" : "root@s0")) == kept)
        #expect(!pool.isCollecting)
        run.problems = try Fsck.check(counting).problems
        return run
    }

    @Test func deletingTheOldestSnapshotCostsWhatChangedAfterIt() throws {
        let small = try collectCost(files: 20, changed: 3, deleted: "s0")
        let large = try collectCost(files: 1000, changed: 3, deleted: "s0")
        #expect(small.problems == [] && large.problems == [])
        #expect(large.cost == small.cost, "collecting s0 wrote \(small.cost) key operations for 20 files and \(large.cost) for 1,000")
        #expect(small.absorbed && large.absorbed, "s1 took over s0's version")
        #expect(large.cost < 100)
    }

    @Test func deletingTheNewestSnapshotCostsWhatItChanged() throws {
        // s1's child is the head, which keeps its id: s1's changes move down into it.
        let small = try collectCost(files: 20, changed: 3, deleted: "s1")
        let large = try collectCost(files: 1000, changed: 3, deleted: "s1")
        #expect(small.problems == [] && large.problems == [])
        #expect(large.cost == small.cost, "collecting s1 wrote \(small.cost) key operations for 20 files and \(large.cost) for 1,000")
    }

    @Test func aSnapshotWhoseFilesWereMostlyRewrittenMergesDown() throws {
        // s1 rewrote most of s0's files: moving s0's few files that are left down into s1
        // moves less than moving s1's many changes up, so s0 merges down.
        let run = try collectCost(files: 200, changed: 190, deleted: "s0")
        #expect(run.problems == [])
        #expect(!run.absorbed, "s0 merged down into s1")
    }
}
