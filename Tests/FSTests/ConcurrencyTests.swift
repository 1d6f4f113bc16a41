// The randomized concurrent workload on every backend, then fsck (which checks the tree,
// link counts, entries against scan records and the statistics). Replay: ZEROFS_SEED=...

import Engine
import FS
import FSTestSupport
import KVTestSupport
import LMDBBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct ConcurrencyTests {
    static let factories: [any KVBackendFactory & Sendable] = [MemoryBackendFactory(), RocksDBBackendFactory(), LMDBBackendFactory()]

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
        fixture.options.backgroundReclaim = false
        try fixture.reopen()
        try fixture.fs.reclaimNow()
        try fixture.expectClean("after the workload, seed \(seed)")
        #expect(try Fsck.check(fixture.store).inodes == Int(fixture.fs.statfs().usedInodes))
    }
}
