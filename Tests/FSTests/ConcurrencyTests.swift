// The randomized concurrent workload on every backend, then fsck (which checks the tree,
// link counts, entries against scan records and the statistics). Replay: ZEROFS_SEED=...

import Engine
import FS
import FSTestSupport
import KVTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Synchronization
import Testing

@Suite struct ConcurrencyTests {
    static let factories: [any KVBackendFactory & Sendable] = [MemoryBackendFactory(), LSMBackendFactory(), RocksDBBackendFactory(), LMDBBackendFactory()]

    @Test(arguments: ConcurrencyTests.factories.map(\.name))
    func concurrentWorkloadThenFsck(_ backend: String) throws {
        let factory = ConcurrencyTests.factories.first { $0.name == backend }!
        var options = FSFixture.testOptions
        options.chunkSize = 4096
        options.backgroundReclaim = true
        let fixture = try FSFixture(factory, options: options)
        defer { fixture.close() }
        let seed = TestSeed.resolve("concurrentWorkloadThenFsck")
        var workload = ConcurrentWorkload(seed: seed)
        workload.operationsPerThread = TestSeed.environmentInt("ZEROFS_FS_OPS", default: 400)
        let outcome = try workload.run(fixture.fs)
        #expect(outcome.unexpected == [], "seed \(seed)")
        #expect(outcome.succeeded > workload.threads * workload.operationsPerThread / 10, "the workload mostly failed")
        #expect(try fixture.fs.cacheMismatches() == [], "seed \(seed)")
        fixture.options.backgroundReclaim = false
        try fixture.reopen()
        try fixture.fs.pool.reclaimNow()
        try fixture.expectClean("after the workload, seed \(seed)")
        #expect(try Fsck.check(fixture.store).inodes == Int(fixture.fs.statfs().usedInodes))
    }

    /// Two threads move A into B and B into A at once, round after round: exactly one of
    /// each pair may win (the rename mutex and the ancestry check), or the tree gets a cycle.
    @Test(arguments: ConcurrencyTests.factories.map(\.name))
    func crossedDirectoryRenamesNeverBuildACycle(_ backend: String) throws {
        let factory = ConcurrencyTests.factories.first { $0.name == backend }!
        var options = FSFixture.testOptions
        options.durableMetadata = false
        let fixture = try FSFixture(factory, options: options)
        defer { fixture.close() }
        let fs = fixture.fs
        let rounds = 200
        var pairs: [(UInt64, UInt64)] = []
        for round in 0..<rounds {
            let a = try fs.mkdir(.root, FileSystem.rootInode, n("A\(round)"), mode: 0o755).ino
            let b = try fs.mkdir(.root, FileSystem.rootInode, n("B\(round)"), mode: 0o755).ino
            pairs.append((a, b))
        }
        let fixedPairs = pairs
        let wins = Mutex([Int](repeating: 0, count: rounds))
        let unexpected = Mutex<[String]>([])
        runOnThreads(2) { thread in
            for round in 0..<rounds {
                let (a, b) = fixedPairs[round]
                do {
                    if thread == 0 {
                        try fs.rename(.root, FileSystem.rootInode, n("A\(round)"), b, n("x"))
                    } else {
                        try fs.rename(.root, FileSystem.rootInode, n("B\(round)"), a, n("y"))
                    }
                    wins.withLock { $0[round] += 1 }
                } catch let error as FSError where error.code == .EINVAL {
                    continue
                } catch {
                    unexpected.withLock { $0.append("round \(round): \(error)") }
                }
            }
        }
        #expect(unexpected.withLock { $0 } == [])
        #expect(wins.withLock { $0 }.allSatisfy { $0 == 1 }, "each crossed pair has exactly one winner")
        try fixture.expectClean("after crossed renames")
    }
}
