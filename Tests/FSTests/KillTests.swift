// A real crash: `zerofs bench fs` (a child process writing through the FS with durable
// metadata) is killed with SIGKILL at a seeded moment; the store it leaves must open,
// pass fsck, and finish its reclaim queue. Complements the in-process crash points.

import Engine
import FS
import FSTestSupport
import KVTestSupport
import LMDBBackend
import LSMBackend
import RocksDBBackend
import Testing

@Suite struct KillTests {
    static let factories: [any KVBackendFactory & Sendable] = [LSMBackendFactory(), RocksDBBackendFactory(), LMDBBackendFactory()]

    @Test(arguments: KillTests.factories.map(\.name))
    func killedMidBenchmarkLeavesAConsistentStore(_ backend: String) throws {
        let factory = KillTests.factories.first { $0.name == backend }!
        let zerofs = FileOps.parentPath(ChildProcess.currentExecutable) + "/zerofs"
        try #require(FileOps.kind(of: zerofs) == .file, "run `swift build` before `swift test`")
        let seed = TestSeed.resolve("killedMidBenchmarkLeavesAConsistentStore")
        var random = SeededGenerator(seed: seed)
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        // A round whose kill came before the store existed checks nothing; keep going (up to
        // six rounds) until at least one round has run fsck, and fail if none did.
        var checked = 0
        var round = 0
        while round < 3 || (checked == 0 && round < 6) {
            defer { round += 1 }
            let dir = harness.freshPath("bench")
            try FileOps.makeDirectories(dir)
            let child = try ChildProcess(executable: zerofs, arguments: [
                "bench", "fs", "--backend", backend, "--dir", dir, "--files", "2000", "--file-mib", "16",
                "--random-ops", "3000", "--chunk-size", "4096", "--json",
            ])
            // Never before the first workload has finished: this test is about the FS, and
            // a kill during store creation is covered by the conformance suite ("a
            // creation cut short after the marker is started over").
            let killAfter = Int.random(in: 1..<8, using: &random)
            var lines = 0
            while lines < killAfter, child.readLine() != nil { lines += 1 }
            usleepMilliseconds(Int.random(in: 0..<40, using: &random))
            child.kill()
            let path = dir + "/fs-" + backend
            guard FileOps.kind(of: path) == .directory else { continue }
            let store = try factory.open(at: path, options: BackendOptions())
            defer { try? store.close() }
            guard try store.get(Array([0x06] + Array("format".utf8))) != nil else { continue }
            let report = try Fsck.check(store)
            checked += 1
            #expect(report.problems == [], "seed \(seed) round \(round), killed after \(lines) workloads")
            var options = FSOptions()
            options.backgroundReclaim = false
            let fs = try FileSystem.open(store, options: options)
            try fs.pool.reclaimNow()
            #expect(try Fsck.check(store).problems == [], "after reclaim, seed \(seed) round \(round)")
            #expect(fs.pool.storedBytes == (try Fsck.check(store).storedBytes))
            try fs.close()
        }
        #expect(checked > 0, "no round left a store to check (seed \(seed))")
    }
}
