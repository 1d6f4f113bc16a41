// Dataset operations racing other calls: the collector merging a dead version while a
// snapshot makes a new version below the child, and a dataset delete waiting for its
// barrier while another call changes what the delete had checked. Each race is forced
// with a store that runs a step, or holds one back, at a chosen call.

@testable import FS
import Engine
import Foundation
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A store that runs `onScan` once, on the thread of the first scan whose range starts at
/// `scanStart`, runs `onGet` once before the first get of `getKey`, and holds back the
/// next write after `holdNextWrite` until `release`.
final class SteeredBackend: ForwardingBackend, @unchecked Sendable {
    private struct Steering {
        var scanStart: [UInt8]?
        var onScan: (@Sendable () -> Void)?
        var getKey: [UInt8]?
        var onGet: (@Sendable () -> Void)?
        var holding = false
    }

    private let steering = Mutex(Steering())
    private let held = NSCondition()
    private var released = false
    private var waiting = false

    func onFirstScan(from start: [UInt8], _ body: @escaping @Sendable () -> Void) {
        steering.withLock { $0.scanStart = start; $0.onScan = body }
    }

    func beforeFirstGet(of key: [UInt8], _ body: @escaping @Sendable () -> Void) {
        steering.withLock { $0.getKey = key; $0.onGet = body }
    }

    override func get(_ key: [UInt8]) throws -> [UInt8]? {
        let hook = steering.withLock { s -> (@Sendable () -> Void)? in
            guard let wanted = s.getKey, key == wanted else { return nil }
            defer { s.getKey = nil; s.onGet = nil }
            return s.onGet
        }
        hook?()
        return try inner.get(key)
    }

    func holdNextWrite() {
        steering.withLock { $0.holding = true }
    }

    /// Waits until a held write is waiting.
    func waitForHeldWrite() {
        held.lock()
        while !waiting { held.wait() }
        held.unlock()
    }

    func release() {
        held.lock()
        released = true
        held.broadcast()
        held.unlock()
    }

    override func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        let hook = steering.withLock { s -> (@Sendable () -> Void)? in
            guard let start = s.scanStart, range.start == start else { return nil }
            defer { s.scanStart = nil; s.onScan = nil }
            return s.onScan
        }
        hook?()
        return try inner.makeIterator(range)
    }

    override func write(_ batch: WriteBatch, durable: Bool) throws {
        let hold = steering.withLock { s -> Bool in
            defer { s.holding = false }
            return s.holding
        }
        if hold {
            held.lock()
            waiting = true
            held.broadcast()
            while !released { held.wait() }
            held.unlock()
        }
        try inner.write(batch, durable: durable)
    }
}

/// Runs `body` on a thread of its own; `join` waits for it.
final class Joinable: @unchecked Sendable {
    private let done = NSCondition()
    private var finished = false
    private var thread: Thread?

    init(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            body()
            done.lock()
            finished = true
            done.broadcast()
            done.unlock()
        }
        self.thread = thread
        thread.start()
    }

    func join() {
        done.lock()
        while !finished { done.wait() }
        done.unlock()
    }
}

@Suite struct DatasetRaceTests {
    func open() throws -> (StoreHarness, String, SteeredBackend, FileSystem) {
        let harness = StoreHarness(MemoryBackendFactory())
        let path = harness.freshPath()
        let store = SteeredBackend(try harness.open(path))
        return (harness, path, store, try FileSystem.open(store, options: FSFixture.testOptions))
    }

    /// Runs `body` with a filesystem on a steered store, then closes both.
    func withFS(_ body: (SteeredBackend, FileSystem) throws -> Void) throws {
        let (harness, _, store, fs) = try open()
        defer {
            try? fs.close()
            try? store.close()
            harness.cleanUp()
        }
        try body(store, fs)
    }

    /// What the steps run aside (from a store's hook) threw.
    final class Aside: @unchecked Sendable {
        private let failures = Mutex<[String]>([])

        /// Runs `step` on a thread of its own and waits for it.
        func run(_ step: @escaping @Sendable () throws -> Void) {
            Joinable {
                do { try step() } catch { self.failures.withLock { $0.append("\(error)") } }
            }.join()
        }

        func expectNone(sourceLocation: SourceLocation = #_sourceLocation) {
            let failed = failures.withLock { $0 }
            #expect(failed.isEmpty, "\(failed)", sourceLocation: sourceLocation)
        }
    }

    /// The collector started from a store's hook while a read runs: `start` runs `change`
    /// (which makes `version` dead), starts the collector on a thread of its own and gives
    /// it 300 ms; `finish` waits for it and tells whether it had collected `version` by
    /// then.
    final class CollectorRace: @unchecked Sendable {
        let pool: Pool
        let version: UInt64
        private let aside = Aside()
        private let collectedEarly = Mutex<Bool?>(nil)
        private let collector = Mutex<Joinable?>(nil)

        init(_ pool: Pool, _ version: UInt64) {
            self.pool = pool
            self.version = version
        }

        func start(_ change: @escaping @Sendable () throws -> Void) {
            aside.run {
                try change()
                self.collector.withLock { $0 = Joinable { _ = try? self.pool.collectNow() } }
                usleep(300_000)
                self.collectedEarly.withLock { $0 = self.pool.state.withLock { $0.forest.versions[self.version] } == nil }
            }
        }

        func finish(sourceLocation: SourceLocation = #_sourceLocation) -> Bool? {
            aside.expectNone(sourceLocation: sourceLocation)
            collector.withLock { $0 }?.join()
            return collectedEarly.withLock { $0 }
        }
    }

    /// A dead version merges into its only child, the live head, one inode at a time. A
    /// snapshot taken meanwhile puts a new head below that child, and a chmod there copies
    /// a file's record with the dead version as its content version, before the collector
    /// reaches the file: the collector must raise that record too when it moves the file's
    /// data into the child, or reads at the new head miss the data and find an older one.
    @Test func aSnapshotDuringAMergeKeepsTheNewHeadOnItsData() throws {
        try withFS { store, fs in
            let pool = fs.pool
            let early = try fs.create(.root, fs.root, n("early"), mode: 0o644)
            let file = try fs.create(.root, fs.root, n("file"), mode: 0o644)
            #expect(early.ino < file.ino, "the collector reaches the early file first")
            try fs.write(.root, file.ino, offset: 0, n("old data"))
            try pool.snapshot("root", "s1")
            try fs.write(.root, file.ino, offset: 0, n("new data"))
            try fs.write(.root, early.ino, offset: 0, n("early"))
            try pool.snapshot("root", "s2")
            try pool.deleteSnapshot("root@s2")

            // While the collector holds the early file (its first scan), a snapshot and a
            // chmod of the later file run on another thread.
            let aside = Aside()
            store.onFirstScan(from: FSKeys.inode(early.ino)) {
                aside.run {
                    try pool.snapshot("root", "s3")
                    _ = try fs.setattr(.root, file.ino, SetAttributes(mode: 0o600))
                }
            }
            try pool.collectNow()
            aside.expectNone()
            #expect(try pool.listSnapshots(of: "root", used: false).count == 2)
            fs.inodeCache.reset()
            #expect(try fs.read(.root, file.ino, offset: 0, count: 100).data == n("new data"))
            #expect(try pool.filesystem(named: "root@s3").read(.root, file.ino, offset: 0, count: 100).data == n("new data"))
            #expect(try pool.filesystem(named: "root@s1").read(.root, file.ino, offset: 0, count: 100).data == n("old data"))
        }
    }

    /// A lookup reads the directory's content hint, then searches for the entry at and
    /// below it, without the directory's lock. A merge batch that moves the directory's
    /// entries down to the child (and raises the hint) in between must not make the name
    /// vanish: the lookup looks again.
    @Test func aLookupDuringAMergeStillFindsTheName() throws {
        try withFS { store, fs in
            let pool = fs.pool
            let dir = try fs.mkdir(.root, fs.root, n("dir"), mode: 0o755)
            try pool.snapshot("root", "s1")
            let file = try fs.create(.root, dir.ino, n("f"), mode: 0o644)
            try pool.snapshot("root", "s2")
            let dead = try #require(pool.state.withLock { s in s.forest.datasets.values.first { $0.isSnapshot && $0.name == n("s2") }?.version })
            try pool.deleteSnapshot("root@s2")
            #expect(try fs.inode(dir.ino).contentVersion == dead, "the directory's hint names the dead version")

            // The lookup's first read of the entry, at the hint, waits for the whole merge.
            // Reads are drained first, as the collector would: the lookup starts after, so
            // the collector need not wait for it (ReadGate).
            pool.quiesceReads()
            let aside = Aside()
            store.beforeFirstGet(of: FSKeys.versioned(FSKeys.dirEntry(dir.ino, n("f")), dead)) {
                aside.run { try pool.collectNow() }
            }
            fs.entryCache.reset()
            let found = try fs.lookup(.root, dir.ino, n("f"))
            #expect(found.ino == file.ino)
            aside.expectNone()
            #expect(pool.state.withLock { $0.forest.versions[dead] } == nil, "the merge ran")
        }
    }

    /// A dead root version merges into its child, the live head, which becomes a root. A
    /// removal at the head while that runs writes whiteouts (the dead version is still
    /// below it), here in a directory the merge has passed: once the merge ends nothing
    /// lies below them, and the collector must drop them, or fsck finds whiteouts with
    /// nothing to hide.
    @Test func aRemovalDuringARootMergeLeavesNoWhiteouts() throws {
        try withFS { store, fs in
            let pool = fs.pool
            let dir = try fs.mkdir(.root, fs.root, n("dir"), mode: 0o755)
            let file = try fs.create(.root, dir.ino, n("f"), mode: 0o644)
            try fs.write(.root, file.ino, offset: 0, n("data"))
            let late = try fs.create(.root, fs.root, n("late"), mode: 0o644)
            #expect(dir.ino < file.ino && file.ino < late.ino)
            try pool.snapshot("root", "s1")
            try pool.deleteSnapshot("root@s1")

            // When the collector reaches the last file, the directory is merged: remove its
            // file then.
            let aside = Aside()
            store.onFirstScan(from: FSKeys.inode(late.ino)) {
                aside.run { try fs.unlink(.root, dir.ino, n("f")) }
            }
            try pool.collectNow()
            aside.expectNone()
            #expect(pool.state.withLock { s in s.forest.versions.values.allSatisfy { $0.parent == 0 } }, "one version left, a root")
            #expect(throws: FSError.self) { _ = try fs.lookup(.root, dir.ino, n("f")) }
            let report = try Fsck.check(store, collectorIdle: true)
            #expect(report.problems == [])
        }
    }

    /// A delete waits for the dataset's barrier while a write on it is applied; a call that
    /// makes the dataset the default meanwhile must make the delete fail (or fail itself),
    /// never both succeed: the default would then name a dataset that is gone, and the
    /// pool could not open again.
    @Test func aDeleteWaitingForItsBarrierSeesTheDefaultChangedMeanwhile() throws {
        let (harness, path, store, fs) = try open()
        defer { harness.cleanUp() }
        let pool = fs.pool
        try pool.createDataset("a")
        let a = try pool.filesystem(named: "a")
        let file = try a.create(.root, a.root, n("f"), mode: 0o644)

        // A write on "a" is held inside the store, holding a's barrier shared.
        store.holdNextWrite()
        let writer = Joinable { _ = try? a.write(.root, file.ino, offset: 0, n("x")) }
        store.waitForHeldWrite()
        /// Runs `call` on a thread of its own: "ok", or what it threw.
        func started(_ call: @escaping @Sendable () throws -> Void) -> (Joinable, Locked<String?>) {
            let outcome = Locked<String?>(nil)
            let thread = Joinable {
                do {
                    try call()
                    outcome.withLock { $0 = "ok" }
                } catch {
                    outcome.withLock { $0 = "\(error)" }
                }
            }
            return (thread, outcome)
        }
        let (deleter, deleteOutcome) = started { try pool.deleteDataset("a") }
        let (setter, setOutcome) = started { try pool.setDefault("a") }
        // Both calls get as far as they can before the write goes on.
        usleep(200_000)
        store.release()
        writer.join()
        deleter.join()
        setter.join()
        let (deleted, madeDefault) = (deleteOutcome.withLock { $0 }, setOutcome.withLock { $0 })
        #expect(deleted != "ok" || madeDefault != "ok", "both the delete and the set-default succeeded")
        #expect(deleted == "ok" || madeDefault == "ok", "one of them succeeds: \(String(describing: deleted)), \(String(describing: madeDefault))")
        try fs.close()
        try store.close()
        // The pool opens again, with a default that exists.
        let again = try harness.open(path)
        defer { try? again.close() }
        let reopened = try FileSystem.open(again, options: FSFixture.testOptions)
        #expect(try reopened.pool.getDefault().name == (madeDefault == "ok" ? "a" : "root"))
        try reopened.close()
    }

    /// A listing of a snapshot deleted while the listing runs. The collector merges the
    /// snapshot's dead version into the head, a batch per inode under that inode's lock,
    /// but a listing holds no lock: between its read of the directory and its scan of the
    /// entries, a merge would move every entry down to the head, out of the snapshot's
    /// view, and the listing would come back empty. The collector waits for the reads that
    /// began before it looked (ReadGate), so the listing sees the snapshot whole; later
    /// reads of the snapshot answer ESTALE, and the head keeps every name.
    @Test func aListingOfASnapshotDeletedMeanwhileSeesItWhole() throws {
        try withFS { store, fs in
            let pool = fs.pool
            let names = (0..<20).map { "f\($0)" }
            for name in names { _ = try fs.create(.root, fs.root, n(name), mode: 0o644) }
            try pool.snapshot("root", "s")
            let snapshot = try pool.filesystem(named: "root@s")
            let dead = snapshot.view.head

            // As the listing's scan starts, after its read of the directory: delete the snapshot
            // and start the collector, then give it time to merge before the listing goes on.
            let race = CollectorRace(pool, dead)
            store.onFirstScan(from: FSKeys.dirScan(snapshot.root, 1)) { race.start { try pool.deleteSnapshot("root@s") } }
            snapshot.inodeCache.reset()
            let listing = try snapshot.readdir(.root, snapshot.root, after: 0, limit: 100)
            #expect(race.finish() == false, "the collector waited for the listing")
            #expect(listing.eof)
            #expect(listing.entries.map { String(decoding: $0.name, as: UTF8.self) }.sorted() == names.sorted())
            #expect(pool.state.withLock { $0.forest.versions[dead] } == nil, "the merge ran after the listing")
            #expect(throws: FSError.self) { _ = try snapshot.readdir(.root, snapshot.root, after: 0, limit: 100) }
            fs.entryCache.reset()
            fs.inodeCache.reset()
            let head = try fs.readdir(.root, fs.root, after: 0, limit: 100)
            #expect(head.entries.map { String(decoding: $0.name, as: UTF8.self) }.sorted() == names.sorted())
            #expect(try Fsck.check(store, collectorIdle: true).problems == [])
        }
    }

    /// A listing of a dataset rolled back while the listing runs: the head it started at
    /// is dead, and the collector drops its entries. It waits for the listing, which sees
    /// that head whole; the next listing shows the snapshot rolled back to.
    @Test func aListingOfADatasetRolledBackMeanwhileSeesItsHeadWhole() throws {
        try withFS { store, fs in
            let pool = fs.pool
            try pool.snapshot("root", "empty")
            let names = (0..<20).map { "f\($0)" }
            for name in names { _ = try fs.create(.root, fs.root, n(name), mode: 0o644) }
            let dead = fs.view.head

            let race = CollectorRace(pool, dead)
            store.onFirstScan(from: FSKeys.dirScan(fs.root, 1)) { race.start { try pool.rollback("root", to: "empty") } }
            fs.inodeCache.reset()
            fs.entryCache.reset()
            let listing = try fs.readdir(.root, fs.root, after: 0, limit: 100)
            #expect(race.finish() == false, "the collector waited for the listing")
            #expect(listing.entries.map { String(decoding: $0.name, as: UTF8.self) }.sorted() == names.sorted())
            #expect(pool.state.withLock { $0.forest.versions[dead] } == nil, "the old head went after the listing")
            #expect(try fs.readdir(.root, fs.root, after: 0, limit: 100).entries.isEmpty)
            #expect(try Fsck.check(store, collectorIdle: true).problems == [])
        }
    }

    /// A recursive snapshot takes the datasets nested in its target, then waits for their
    /// barriers. A dataset nested in the target meanwhile is in the snapshot too: it looks
    /// again once it holds the barriers (it missed that dataset).
    @Test func aRecursiveSnapshotTakesADatasetNestedWhileItWaited() throws {
        try withFS { _, fs in
            let pool = fs.pool
            try pool.createDataset("a")
            let a = try pool.filesystem(named: "a")
            // Held as another snapshot of "a" would hold it.
            a.barrier.lockExclusive()
            let outcome = Locked<String?>(nil)
            let snapshotter = Joinable {
                do {
                    _ = try pool.snapshot("a", "s", recursive: true)
                    outcome.withLock { $0 = "ok" }
                } catch {
                    outcome.withLock { $0 = "\(error)" }
                }
            }
            // The snapshot takes its targets and waits for the barrier.
            usleep(200_000)
            try pool.createDataset("a/b")
            a.barrier.unlockExclusive()
            snapshotter.join()
            #expect(outcome.withLock { $0 } == "ok")
            #expect(try pool.listSnapshots(used: false).map(\.name).sorted() == ["a/b@s", "a@s"])
        }
    }

    /// USED of a snapshot is counted by reading what its version holds: when the snapshot
    /// is deleted meanwhile, the collector waits for the count (ReadGate), which comes out
    /// as it would have without the delete.
    @Test func aSnapshotsUsedIsCountedWholeWhileItIsDeleted() throws {
        try withFS { store, fs in
            let pool = fs.pool
            let file = try fs.create(.root, fs.root, n("f"), mode: 0o644)
            let size = 3 * fs.chunkSize
            try fs.write(.root, file.ino, offset: 0, (0..<size).map { UInt8(truncatingIfNeeded: $0 % 251 + 1) })
            try pool.snapshot("root", "s")
            try fs.write(.root, file.ino, offset: 0, (0..<size).map { UInt8(truncatingIfNeeded: $0 % 241 + 3) })
            let version = try pool.filesystem(named: "root@s").view.head
            let expected = try #require(try pool.listSnapshots(of: "root").first?.usedBytes)
            #expect(expected > 0, "the snapshot alone holds the first data")
            pool.usedCache.withLock { $0.removeAll() }

            let race = CollectorRace(pool, version)
            store.onFirstScan(from: FSKeys.changeIndexPrefix(version)) { race.start { try pool.deleteSnapshot("root@s") } }
            let counted = try pool.listSnapshots(of: "root").first?.usedBytes
            #expect(race.finish() == false, "the collector waited for the count")
            #expect(counted == expected)
            #expect(pool.state.withLock { $0.forest.versions[version] } == nil, "the merge ran after the count")
        }
    }
}
