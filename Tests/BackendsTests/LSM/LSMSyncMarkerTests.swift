// WAL sync markers of the lsm store (format-wal.md, "Sync markers"): what the writer
// leaves, how an open tells a tear a machine crash made from damage, and machine crashes
// of WAL segments in a local folder, simulated in memory.

import Engine
import Foundation
import KVTestSupport
import ObjectStore
import Synchronization
import Testing
@testable import LSMBackend

@Suite struct LSMSyncMarkerTests {
    let factory = LSMBackendFactory()

    private func fill(_ store: any KVBackend, _ range: Range<Int>, durable: Bool) throws {
        for i in range { try store.put(TestBytes.key(i), TestBytes.value(i, size: 200), durable: durable) }
    }

    /// On a local folder: a store with three durable keys, then two WAL segments as a
    /// machine crash can leave them: the first sealed and never synced, cut short in its
    /// third record (keys 3, 4 whole); the second holding key 6, and a sync marker when
    /// `marked` (a durable write reached it). `version` is the second segment's format.
    private func crashedSegments(marked: Bool, version: UInt8 = UInt8(WALFormat.version), afterRecords: Bool = true) throws -> (StoreHarness, String, [UInt64]) {
        let harness = StoreHarness(factory)
        let path = harness.freshPath()
        let store = try factory.open(at: path, options: BackendOptions())
        try fill(store, 0..<3, durable: true)
        try store.close()
        let objects = try LocalObjectStore(root: path + "/objects")
        let next = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).max()! + 1
        func record(_ i: Int, into buffer: inout [UInt8]) {
            var batch = WriteBatch()
            batch.put(TestBytes.key(i), TestBytes.value(i, size: 200))
            WALFormat.appendRecord(&buffer, seq: UInt64(i + 1), batch: batch)
        }
        var sealed = WALFormat.header()
        for i in 3..<6 { record(i, into: &sealed) }
        sealed.removeLast(5)
        var after = WALFormat.header()
        after[4] = version
        if afterRecords { record(6, into: &after) }
        if marked { after += WALFormat.syncMarker }
        try objects.put(WALFormat.name(next), sealed)
        try objects.put(WALFormat.name(next + 1), after)
        return (harness, path, [next, next + 1])
    }

    @Test func everySegmentADurableWriteReachedHoldsASyncMarker() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        let store = try factory.open(at: path, options: tinyLSMOptions())
        let folder = path + "/objects/wal/"
        var reached: Set<String> = []
        // Durable and buffered writes in turns, over several memtables (so several segments).
        for i in 0..<400 {
            let durable = i % 3 == 0
            try store.put(TestBytes.key(i), TestBytes.value(i, size: 1000), durable: durable)
            guard durable else { continue }
            // The newest segment holding records (or a marker alone, after them), each read
            // once: a background flush may delete a segment between the listing and the read
            // once its memtable is a table (and a newer, empty one is open).
            var newest: (name: String, contents: WALFormat.Contents)?
            for name in try FileOps.list(folder).filter({ $0.hasSuffix(".wal") }).sorted().reversed() {
                guard let bytes = try? FileOps.readFile(folder + name) else { continue }
                let contents = try WALFormat.decode(bytes, name: name)
                if !contents.records.isEmpty || contents.marked {
                    newest = (name, contents)
                    break
                }
            }
            // All flushed already (only a new, empty segment left): nothing to look at.
            guard let found = newest else { continue }
            #expect(found.contents.marked, "\(found.name) after write \(i)")
            reached.insert(found.name)
        }
        #expect(reached.count >= 3, "the writes span several segments")
        try store.close()
    }

    /// A durable write that finds its records already written by a memtable rotation, into
    /// a segment since sealed, and no segment open (an empty durable write, as the
    /// filesystem's group commit makes): it still returns only once a sync marker follows
    /// every record on disk.
    @Test func aDurableWriteAfterARotationLeavesAMarkerEvenWithNoSegmentOpen() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var options = BackendOptions()
        options.tuning = ["memtable_bytes": "65536", "wal_flush_interval_ms": "60000"]
        let backend = try factory.open(at: path, options: options)
        let store = try #require(backend as? LSMBackend).store
        let folder = path + "/objects/wal/"
        var next = 0
        for round in 0..<4 {
            // Buffered writes past the memtable's size: it is frozen and its segment sealed.
            let newestBefore = store.wal.withLock { store.walNewestWritten }
            while store.wal.withLock({ store.walSegment != nil || store.walNewestWritten == newestBefore }) {
                try backend.put(TestBytes.key(next), TestBytes.value(next, size: 1000), durable: false)
                next += 1
                if next % 100 == 0 { Thread.sleep(forTimeInterval: 0.01) }
                try #require(next < 10_000, "round \(round): no rotation")
            }
            try backend.write(WriteBatch(), durable: true)
            #expect(!store.wal.withLock { store.walUnmarked }, "round \(round)")
            let objects = try FileOps.list(folder).filter { $0.hasSuffix(".wal") }.sorted()
                .compactMap { name in try? WALFormat.decode(try FileOps.readFile(folder + name), name: name) }
            // (A memtable flush may have deleted every segment meanwhile: their records
            // are in tables then.)
            let newest = objects.last { !$0.records.isEmpty || $0.marked }
            #expect(newest?.marked ?? true, "round \(round): the newest segment holding records holds a marker after them")
        }
        try backend.close()
    }

    @Test func aSealedSegmentACrashCutShortEndsTheLogByItself() throws {
        let (harness, path, ids) = try crashedSegments(marked: false)
        defer { harness.cleanUp() }
        // No durable write came after the tear (no marker after it): the crash's, not damage.
        let reopened = try factory.open(at: path, options: BackendOptions())
        #expect(try reopened.entries().map(\.key) == (0..<5).map { TestBytes.key($0) })
        try reopened.put(TestBytes.key(9), [9], durable: true)
        try reopened.close()
        // The segment after the tear is gone, so no later open replays key 6 after key 9.
        #expect(!FileManager.default.fileExists(atPath: path + "/objects/" + WALFormat.name(ids[1])))
        let again = try factory.open(at: path, options: BackendOptions())
        #expect(try again.entries().map(\.key) == (0..<5).map { TestBytes.key($0) } + [TestBytes.key(9)])
        try again.close()
    }

    /// The segment after the torn one was made and never synced, so its header, which only
    /// its first sync makes durable, is lost too (in whole or in part): the log still ends
    /// at the tear by itself.
    @Test(arguments: [0, 5])
    func aSegmentAfterTheTearThatLostItsHeaderEndsTheLogToo(bytes: Int) throws {
        let (harness, path, ids) = try crashedSegments(marked: false)
        defer { harness.cleanUp() }
        let objects = try LocalObjectStore(root: path + "/objects")
        try objects.put(WALFormat.name(ids[1]), Array(WALFormat.header().prefix(bytes)))
        let reopened = try factory.open(at: path, options: BackendOptions())
        #expect(try reopened.entries().map(\.key) == (0..<5).map { TestBytes.key($0) })
        try reopened.close()
        #expect(!FileManager.default.fileExists(atPath: path + "/objects/" + WALFormat.name(ids[1])))
    }

    /// The sealed segment kept its header and lost every record: a crash's tear at its
    /// start, so key 6 in the next segment is not replayed after the lost keys 3 to 5.
    @Test func aSealedSegmentCutToItsHeaderEndsTheLogByItself() throws {
        let (harness, path, ids) = try crashedSegments(marked: false)
        defer { harness.cleanUp() }
        let objects = try LocalObjectStore(root: path + "/objects")
        try objects.put(WALFormat.name(ids[0]), WALFormat.header() + [UInt8](repeating: 0, count: 64))
        let reopened = try factory.open(at: path, options: BackendOptions())
        #expect(try reopened.entries().map(\.key) == (0..<3).map { TestBytes.key($0) })
        try reopened.close()
        #expect(!FileManager.default.fileExists(atPath: path + "/objects/" + WALFormat.name(ids[1])))
    }

    /// The same with a sync marker after it: acknowledged writes follow, the open refuses.
    @Test func aSegmentCutToItsHeaderBeforeADurableWriteIsDamage() throws {
        let (harness, path, ids) = try crashedSegments(marked: true)
        defer { harness.cleanUp() }
        let objects = try LocalObjectStore(root: path + "/objects")
        try objects.put(WALFormat.name(ids[0]), WALFormat.header())
        #expect { try factory.open(at: path, options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .corruption && "\($0)".contains("holds a sync marker")
        }
    }

    /// A segment without its header between the tear and a segment holding a sync marker:
    /// the marker still says acknowledged writes follow the tear, and the open refuses.
    @Test func aSegmentWithoutItsHeaderDoesNotHideALaterMarker() throws {
        let (harness, path, ids) = try crashedSegments(marked: true)
        defer { harness.cleanUp() }
        let objects = try LocalObjectStore(root: path + "/objects")
        let marked = try #require(try objects.get(WALFormat.name(ids[1])))
        try objects.put(WALFormat.name(ids[1] + 1), marked)
        try objects.put(WALFormat.name(ids[1]), Array(WALFormat.header().prefix(3)))
        #expect { try factory.open(at: path, options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .corruption && "\($0)".contains("holds a sync marker")
        }
    }

    @Test func aTearBeforeADurableWriteIsDamage() throws {
        // A marker after the tear: a durable write synced the torn segment before it, so
        // the tear is damage, and acknowledged writes follow it: the open refuses.
        let (harness, path, _) = try crashedSegments(marked: true)
        defer { harness.cleanUp() }
        #expect { try factory.open(at: path, options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .corruption && "\($0)".contains("holds a sync marker")
        }
        var pointInTime = BackendOptions()
        pointInTime.tuning = ["wal_recovery": "point_in_time"]
        let recovered = try factory.open(at: path, options: pointInTime)
        #expect(try recovered.entries().map(\.key) == (0..<5).map { TestBytes.key($0) })
        try recovered.close()
    }

    @Test func aTearBeforeASegmentHoldingOnlyAMarkerIsDamage() throws {
        // The marker says the torn segment was synced before it, though no record follows.
        let (harness, path, _) = try crashedSegments(marked: true, afterRecords: false)
        defer { harness.cleanUp() }
        #expect { try factory.open(at: path, options: BackendOptions()) } throws: { ($0 as? KVError)?.code == .corruption }
    }

    @Test func aTearBeforeSegmentsOfAWriterWithoutMarkersIsDamage() throws {
        // Version 2 writers left no markers: their absence proves nothing.
        let (harness, path, _) = try crashedSegments(marked: false, version: 2)
        defer { harness.cleanUp() }
        #expect { try factory.open(at: path, options: BackendOptions()) } throws: { ($0 as? KVError)?.code == .corruption }
    }
}

/// A local folder as a machine crash leaves it, in memory: whole objects (tables,
/// manifests) are durable once put, as the local folder's are; an appendable object
/// (a WAL segment) keeps, after `crashed`, what was synced of it and a random part of
/// what was appended since, perhaps cut inside a record. Deletions are durable; a
/// segment deleted while open takes writes that go nowhere, as an unlinked file does.
final class MachineCrashStore: AppendableObjectStore, @unchecked Sendable {
    let inner = MemoryObjectStore()
    /// Each appendable object's bytes and how many of them are synced.
    private let appendables = Mutex<[String: (bytes: [UInt8], synced: Int)]>([:])

    var location: String { "machine-crash-simulating memory" }
    func get(_ name: String) throws -> [UInt8]? { try inner.get(name) }
    /// A segment read while it grows (values kept in the WAL) sees its appends, as a file does.
    func open(_ name: String) throws -> (any ReadableObject)? {
        appendables.withLock { $0[name] } != nil ? Live(store: self, name: name) : try inner.open(name)
    }
    func put(_ name: String, _ bytes: [UInt8]) throws { try inner.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { try inner.putIfAbsent(name, bytes) }
    func list(prefix: String) throws -> [String] { try inner.list(prefix: prefix) }
    func delete(_ name: String) throws {
        appendables.withLock { _ = $0.removeValue(forKey: name) }
        try inner.delete(name)
    }
    /// While set, tables wait to commit: no memtable flush ends, so sealed segments that
    /// were never synced stay in the log, as behind a slow disk.
    let tablesHeld = Mutex(false)
    func makeWriter(_ name: String) throws -> any ObjectWriter {
        HeldWriter(try inner.makeWriter(name), store: self, held: name.hasPrefix("sst/"))
    }
    func syncObject(_ name: String) throws {
        appendables.withLock { if let entry = $0[name] { $0[name]?.synced = entry.bytes.count } }
    }
    func deleteDurably(_ name: String) throws { try delete(name) }
    func removeLeftovers(prefix: String) throws {}

    func createAppendable(_ name: String, header: [UInt8]) throws -> (any AppendableObject)? {
        guard try inner.putIfAbsent(name, header) else { return nil }
        // As on a local folder, the header is durable only once the segment is synced.
        appendables.withLock { $0[name] = (header, 0) }
        return Segment(store: self, name: name)
    }

    fileprivate func append(_ name: String, _ bytes: UnsafeRawBufferPointer, sync: Bool) throws {
        try appendables.withLock { all in
            // Deleted while open (garbage collection of a segment a flush made obsolete):
            // as with a file, the writes still succeed, and go nowhere anyone sees.
            guard var entry = all[name] else { return }
            entry.bytes.appendRaw(bytes)
            if sync { entry.synced = entry.bytes.count }
            all[name] = entry
            try inner.put(name, entry.bytes)
        }
    }

    fileprivate func sync(_ name: String) {
        appendables.withLock { if let entry = $0[name] { $0[name]?.synced = entry.bytes.count } }
    }

    /// The objects as a restarted machine finds them, opened as a local folder is.
    func crashed(seed: UInt64) throws -> MachineCrashStore {
        var random = SeededGenerator(seed: seed)
        let restarted = MachineCrashStore()
        let after = restarted.inner
        let segments = appendables.withLock { $0 }
        for name in try inner.list(prefix: "") {
            guard var bytes = try inner.get(name) else { continue }
            if let segment = segments[name], segment.synced < bytes.count {
                bytes = Array(bytes.prefix(Int.random(in: segment.synced...bytes.count, using: &random)))
            }
            try after.put(name, bytes)
        }
        return restarted
    }

    final class Live: ReadableObject, @unchecked Sendable {
        let store: MachineCrashStore
        let name: String
        init(store: MachineCrashStore, name: String) {
            self.store = store
            self.name = name
        }
        private var bytes: [UInt8] { (try? store.inner.get(name)) ?? [] }
        var size: Int { bytes.count }
        func read(offset: Int, length: Int) throws -> [UInt8] {
            let all = bytes
            guard offset >= 0, length >= 0, offset + length <= all.count else {
                throw KVError(.corruption, "read past the end", path: name)
            }
            return Array(all[offset..<(offset + length)])
        }
    }

    final class HeldWriter: ObjectWriter {
        let inner: any ObjectWriter
        let store: MachineCrashStore
        let held: Bool
        init(_ inner: any ObjectWriter, store: MachineCrashStore, held: Bool) {
            self.inner = inner
            self.store = store
            self.held = held
        }
        func append(_ bytes: UnsafeRawBufferPointer) throws { try inner.append(bytes) }
        func commit() throws {
            while held && store.tablesHeld.withLock({ $0 }) { Thread.sleep(forTimeInterval: 0.001) }
            try inner.commit()
        }
        func abort() { inner.abort() }
    }

    final class Segment: AppendableObject {
        let store: MachineCrashStore
        let name: String
        init(store: MachineCrashStore, name: String) {
            self.store = store
            self.name = name
        }
        func append(_ bytes: UnsafeRawBufferPointer, sync: Bool) throws { try store.append(name, bytes, sync: sync) }
        func sync() throws { store.sync(name) }
        func seal() {}
    }
}

@Suite struct LSMMachineCrashTests {
    let factory = LSMBackendFactory()

    /// WAL segments (an appendable store) through machine crashes at random points:
    /// unsynced appends survive in part or not at all. The store must open by itself (no
    /// `.corruption` for a tear a crash made) and hold the state after some write no
    /// earlier than the last acknowledged durable one. Every other round holds the
    /// memtable flushes back and crashes once a sealed segment that was never synced has
    /// a later segment after it: the case the sync markers are for.
    @Test func machineCrashesKeepAcknowledgedWritesAndOpenByThemselves() throws {
        let seed = TestSeed.resolve("machineCrashesKeepAcknowledgedWritesAndOpenByThemselves")
        var random = SeededGenerator(seed: seed)
        let rounds = TestSeed.environmentInt("ZEROFS_CRASH_ROUNDS", default: 4) * 3
        var metTheCase = 0
        for round in 0..<rounds {
            let held = round % 2 == 0
            let objects = MachineCrashStore()
            objects.tablesHeld.withLock { $0 = held }
            var history: [[KVEntry]] = [[]]
            var lastDurable = 0
            var model: [[UInt8]: [UInt8]] = [:]
            var options = tinyLSMOptions()
            options.tuning["wal_flush_interval_ms"] = "1"
            // Room for the memtables a held round freezes, so that no write waits for a flush.
            options.tuning["max_immutable_memtables"] = "16"
            let backend = try factory.open(objects: objects, options: options)
            let store = try #require(backend as? LSMBackend).store
            var bytes = 0
            for _ in 0..<(held ? 3000 : Int.random(in: 1...1000, using: &random)) {
                // One value in 20 large enough to stay in the WAL segment, where tables
                // point at it (lsm.md, "Values in the WAL").
                let batch = randomBatch(&random, &model, largeValues: true)
                let durable = Int.random(in: 0..<30, using: &random) == 0
                try backend.write(batch, durable: durable)
                history.append(model.map { KVEntry(key: $0.key, value: $0.value) }.sorted { Bytes.compare($0.key, $1.key) < 0 })
                if durable { lastDurable = history.count - 1 }
                bytes += batch.rep.count
                guard held else { continue }
                let met = store.wal.withLock { store.unsyncedSealed.last.map { store.walNewestWritten > $0.id } ?? false }
                if met {
                    metTheCase += 1
                    break
                }
                // Ten of the sixteen memtables: stop before a write would wait for a flush.
                if bytes > 10 * 65536 { break }
            }
            // The power goes while the store runs (its background threads too).
            let restarted = try objects.crashed(seed: random.next())
            objects.tablesHeld.withLock { $0 = false }
            try? backend.close()
            let reopened: any KVBackend
            do {
                reopened = try factory.open(objects: restarted, options: options)
            } catch {
                Issue.record("round \(round): the open failed: \(error) (seed \(seed))")
                continue
            }
            let state = try reopened.entries()
            let match = history.indices.last { history[$0] == state }
            #expect(match != nil && match! >= lastDurable,
                    "round \(round): recovered state matches history point \(String(describing: match)), last durable \(lastDurable) (seed \(seed))")
            try reopened.close()
        }
        #expect(metTheCase > 0, "no held round reached a sealed segment never synced with a later one (seed \(seed))")
    }
}
