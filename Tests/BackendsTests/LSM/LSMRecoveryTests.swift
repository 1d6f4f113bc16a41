// Recovery, corruption, fencing and checkpoints of the lsm backend, on in-memory and
// crash-simulating object stores.

import Engine
import Foundation
import KVTestSupport
import MemoryBackend
import ObjectStore
import Synchronization
import Testing
@testable import LSMBackend

/// Small sizes so that every test flushes and compacts.
func tinyLSMOptions() -> BackendOptions {
    var options = BackendOptions()
    options.tuning = [
        "memtable_bytes": "65536", "block_size": "512", "l0_compaction_trigger": "2", "l0_stop_trigger": "8",
        "level1_bytes": "131072", "level_multiplier": "2", "table_target_bytes": "32768",
    ]
    return options
}

/// Puts keys `range` into `store`, values of `size` bytes.
func fill(_ store: any KVBackend, _ range: Range<Int>, size: Int = 200, durable: Bool = false) throws {
    for i in range { try store.put(TestBytes.key(i), TestBytes.value(i, size: size), durable: durable) }
}

/// A closed lsm store in memory holding keys 0..<count, each put by a durable write of its
/// own (so in a WAL object of its own).
func closedStore(durableWrites count: Int) throws -> MemoryObjectStore {
    let objects = MemoryObjectStore()
    let store = try LSMBackendFactory().open(objects: objects, options: BackendOptions())
    try fill(store, 0..<count, durable: true)
    try store.close()
    return objects
}

/// A memory object store whose WAL puts wait at `gate` while it is closed.
/// An object store in memory whose chosen calls wait at a gate the test holds: puts-if-absent
/// and new writers whose object name (and calling thread) `holds` picks.
final class HeldObjectStore: ObjectStore, @unchecked Sendable {
    let inner = MemoryObjectStore()
    let gate = HoldGate()
    let holds: @Sendable (_ name: String) -> Bool

    init(holding holds: @escaping @Sendable (_ name: String) -> Bool) {
        self.holds = holds
    }

    var location: String { inner.location }
    func get(_ name: String) throws -> [UInt8]? { try inner.get(name) }
    func open(_ name: String) throws -> (any ReadableObject)? { try inner.open(name) }
    func put(_ name: String, _ bytes: [UInt8]) throws { try inner.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        if holds(name) { gate.pass() }
        return try inner.putIfAbsent(name, bytes)
    }
    func list(prefix: String) throws -> [String] { try inner.list(prefix: prefix) }
    func delete(_ name: String) throws { try inner.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter {
        if holds(name) { gate.pass() }
        return try inner.makeWriter(name)
    }
}

/// A memory store whose next listing of manifests also names `phantom`, an object that
/// does not exist (as a manifest collected right after a listing would be).
final class StaleListingObjectStore: ObjectStore, @unchecked Sendable {
    let inner = MemoryObjectStore()
    let phantom = Mutex<String?>(nil)

    var location: String { inner.location }
    func get(_ name: String) throws -> [UInt8]? { try inner.get(name) }
    func open(_ name: String) throws -> (any ReadableObject)? { try inner.open(name) }
    func put(_ name: String, _ bytes: [UInt8]) throws { try inner.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { try inner.putIfAbsent(name, bytes) }
    func list(prefix: String) throws -> [String] {
        let listed = try inner.list(prefix: prefix)
        guard prefix == "manifest/", let extra = phantom.withLock({ value -> String? in defer { value = nil }; return value }) else { return listed }
        return (listed + [extra]).sorted()
    }
    func delete(_ name: String) throws { try inner.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { try inner.makeWriter(name) }
}

@Suite struct LSMRecoveryTests {
    let factory = LSMBackendFactory()


    @Test func flippedBytesInEachFileKindAreReportedAsCorruption() throws {
        let objects = MemoryObjectStore()
        var store = try factory.open(objects: objects, options: tinyLSMOptions())
        try fill(store, 0..<2000)
        _ = try store.createCheckpoint(named: "flush")  // everything into tables
        try fill(store, 2000..<2010, durable: true)  // and some in the WAL
        try store.close()

        // A table of the current state: a byte in the middle of its data blocks.
        let newest = try objects.list(prefix: "manifest/").last!
        let current = try Manifest.decode(try objects.get(newest)!, name: newest)
        let table = current.levels.flatMap { $0 }.max { $0.size < $1.size }!.name
        objects.tamper(table) { $0[$0.count / 3] ^= 0x5A }
        store = try factory.open(objects: objects, options: tinyLSMOptions())
        #expect { _ = try store.entries() } throws: { error in
            guard let e = error as? KVError else { return false }
            return e.code == .corruption && e.path == table
        }
        try store.close()
        objects.tamper(table) { $0[$0.count / 3] ^= 0x5A }

        // The newest manifest.
        let manifest = try objects.list(prefix: "manifest/").last!
        objects.tamper(manifest) { $0[$0.count - 1] ^= 0x01 }
        #expect { _ = try factory.open(objects: objects, options: tinyLSMOptions()) } throws: { error in
            (error as? KVError)?.code == .corruption && (error as? KVError)?.path == manifest
        }
        objects.tamper(manifest) { $0[$0.count - 1] ^= 0x01 }

        // A WAL object before the newest one holding records: damage there is corruption.
        let walWithRecords = try objects.list(prefix: "wal/").filter { (try? objects.get($0))!!.count > WALFormat.headerSize }
        if walWithRecords.count >= 2 {
            let early = walWithRecords[0]
            objects.tamper(early) { $0[WALFormat.headerSize + 20] ^= 0xFF }
            #expect { _ = try factory.open(objects: objects, options: tinyLSMOptions()) } throws: { error in
                (error as? KVError)?.code == .corruption && (error as? KVError)?.path == early
            }
            objects.tamper(early) { $0[WALFormat.headerSize + 20] ^= 0xFF }
        }
        store = try factory.open(objects: objects, options: tinyLSMOptions())
        #expect(try store.entries().count == 2010)
        try store.close()
    }

    @Test func aTornWALTailIsDiscarded() throws {
        let objects = try closedStore(durableWrites: 10)
        // Cut the newest WAL object holding records in the middle of its last record.
        let newest = try objects.list(prefix: "wal/").filter { (try? objects.get($0))!!.count > WALFormat.headerSize }.last!
        objects.tamper(newest) { $0.removeLast(5) }
        let reopened = try factory.open(objects: objects, options: BackendOptions())
        let keys = try reopened.entries().map(\.key)
        #expect(keys == (0..<9).map { TestBytes.key($0) }, "only the torn record is lost")
        try reopened.put([1], [1], durable: true)
        try reopened.close()
        // Newer WAL objects now follow the torn one; it stays acceptable on every open.
        for round in 0..<2 {
            let again = try factory.open(objects: objects, options: BackendOptions())
            #expect(try again.entries().count == 10 + round)
            try again.put([2, UInt8(round)], [2], durable: true)
            try again.close()
        }
    }

    @Test func aDamagedRecordInTheNewestWALObjectOfAStoreThatWritesThemWholeIsReported() throws {
        // An interrupted upload leaves at most a cut; a whole record failing its checksum
        // is damage, and the records it hides were acknowledged.
        let objects = try closedStore(durableWrites: 10)
        let newest = try objects.list(prefix: "wal/").filter { (try? objects.get($0))!!.count > WALFormat.headerSize }.last!
        objects.tamper(newest) { $0[$0.count - 3] ^= 0x40 }
        let error = #expect(throws: KVError.self) { try factory.open(objects: objects, options: BackendOptions()) }
        #expect(error?.code == .corruption)
        #expect(error?.path == newest)
        #expect(error?.message.contains("the newest WAL object is damaged") == true, "\(String(describing: error))")

        // The way out the message names keeps the records before the damage, and strict
        // opens agree once newer WAL objects follow (the manifest names it as accepted).
        var pointInTime = BackendOptions()
        pointInTime.tuning = ["wal_recovery": "point_in_time"]
        let recovered = try factory.open(objects: objects, options: pointInTime)
        #expect(try recovered.entries().map(\.key) == (0..<9).map { TestBytes.key($0) })
        try recovered.put([1], [1], durable: true)
        try recovered.close()
        let again = try factory.open(objects: objects, options: BackendOptions())
        #expect(try again.entries().count == 10)
        try again.close()
    }

    @Test func aTornObjectFollowedOnlyByAFenceIsTheTail() throws {
        // A crash during open: the fence was written, the new manifest was not.
        let objects = try closedStore(durableWrites: 6)
        let ids = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:))
        let newest = try ids.filter { (try objects.get(WALFormat.name($0)))!.count > WALFormat.headerSize }.max()!
        objects.tamper(WALFormat.name(newest)) { $0.removeLast(4) }
        try objects.put(WALFormat.name(ids.max()! + 1), WALFormat.header())
        let reopened = try factory.open(objects: objects, options: BackendOptions())
        #expect(try reopened.entries().count == 5)
        try reopened.close()
    }

    @Test func aTearBeforeTheEndFailsTheOpenUnlessPointInTimeRecoveryIsAsked() throws {
        // One WAL object per durable write here; the third is cut short while later ones
        // hold records, as a machine crash can leave a sealed segment that was never synced.
        let objects = try closedStore(durableWrites: 6)
        let withRecords = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).sorted()
            .filter { (try objects.get(WALFormat.name($0)))!.count > WALFormat.headerSize }
        #expect(withRecords.count == 6)
        objects.tamper(WALFormat.name(withRecords[2])) { $0.removeLast(4) }

        #expect(throws: KVError.self) { try factory.open(objects: objects, options: BackendOptions()) }
        var pointInTime = BackendOptions()
        pointInTime.tuning = ["wal_recovery": "point_in_time"]
        let recovered = try factory.open(objects: objects, options: pointInTime)
        #expect(try recovered.entries().map(\.key) == [TestBytes.key(0), TestBytes.key(1)])
        try recovered.put(TestBytes.key(9), [9], durable: true)
        try recovered.close()
        // The objects after the tear are gone: a strict open now agrees.
        for id in withRecords[3...] { #expect(try objects.get(WALFormat.name(id)) == nil) }
        let again = try factory.open(objects: objects, options: BackendOptions())
        #expect(try again.entries().map(\.key) == [TestBytes.key(0), TestBytes.key(1), TestBytes.key(9)])
        try again.close()
        // A value the option does not know is refused by name.
        var wrong = BackendOptions()
        wrong.tuning = ["wal_recovery": "lenient"]
        #expect(throws: KVError.self) { try factory.open(objects: MemoryObjectStore(), options: wrong) }
    }

    /// A frozen memtable's last records are written after the freeze, outside the state
    /// lock; its flush must not commit before them, or garbage collection could delete
    /// their WAL object while the write is still being retried.
    @Test func aFlushCommitsOnlyAfterItsMemtablesLastRecordsAreWritten() throws {
        let objects = HeldObjectStore { $0.hasPrefix("wal/") }
        var options = BackendOptions()
        options.tuning = ["memtable_bytes": "65536", "wal_flush_interval_ms": "60000"]
        let store = try factory.open(objects: objects, options: options)
        // Old manifests are collected: the newest one's name tells whether a commit came.
        func newestManifest() throws -> String? { try objects.list(prefix: "manifest/").max() }
        let before = try newestManifest()
        objects.gate.hold(true)
        // One batch past twice the memtable size: the writer freezes the memtable itself,
        // and its WAL write of the frozen memtable's records is held.
        let writer = Thread {
            try? store.put(TestBytes.key(1), TestBytes.value(1, size: 140_000), durable: false)
        }
        writer.start()
        #expect(objects.gate.waitForWaiter(timeout: 10), "the frozen memtable's WAL write never came")
        Thread.sleep(forTimeInterval: 0.3)
        #expect(try newestManifest() == before, "the flush committed before the WAL write")
        objects.gate.hold(false)
        let deadline = Date().addingTimeInterval(10)
        while try newestManifest() == before && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(try newestManifest() != before)
        #expect(try store.get(TestBytes.key(1)) == TestBytes.value(1, size: 140_000))
        try store.close()
    }

    @Test func aTornSegmentInALocalFolderIsDiscardedOnEveryOpen() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var store = try factory.open(at: path, options: BackendOptions())
        for i in 0..<10 { try store.put(TestBytes.key(i), [UInt8(i)], durable: true) }
        try store.close()
        let segments = try FileOps.list(path + "/objects/wal").filter { $0.hasSuffix(".wal") }
        let withRecords = try segments.filter { try FileOps.readFile(path + "/objects/wal/" + $0).count > WALFormat.headerSize }
        let last = path + "/objects/wal/" + withRecords.last!
        var bytes = try FileOps.readFile(last)
        bytes.removeLast(3)
        try FileOps.writeFileAtomically(last, bytes)
        for round in 0..<3 {
            store = try factory.open(at: path, options: BackendOptions())
            #expect(try store.entries().count == 9 + round)
            try store.put([UInt8(0xF0 + round)], [1], durable: true)
            try store.close()
        }
    }

    /// What a killed writer left unsynced (here: copies of its files) is made
    /// durable by the next open before its manifest: otherwise a power loss after the
    /// open could drop records that later durable writes depend on. Leftover temporary
    /// files go at the same time.
    @Test func anOpenSyncsWhatItReplaysBeforeItsManifest() throws {
        let root = NSTemporaryDirectory() + "zerofs-replay-sync-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let killed = root + "/killed"
        let writer = try factory.open(objects: try LocalObjectStore(root: root + "/live"), options: BackendOptions())
        for i in 0..<10 { try writer.put(TestBytes.key(i), [UInt8(i)], durable: true) }
        // What a killed process leaves: the files as they are now (the copies' bytes are not
        // synced either), plus a half-made temporary.
        try FileManager.default.copyItem(atPath: root + "/live", toPath: killed)
        try writer.close()
        try FileOps.writeFileAtomically(killed + "/wal/99.wal.tmp.1.2", [1, 2, 3])
        let replayed = try FileOps.list(killed + "/wal").filter { $0.hasSuffix(".wal") }.map { "wal/" + $0 }

        let recording = RecordingAppendableStore(try LocalObjectStore(root: killed))
        let reopened = try factory.open(objects: recording, options: BackendOptions())
        #expect(try reopened.entries().count == 10)
        try reopened.close()
        let events = recording.events.withLock { $0 }
        let manifest = try #require(events.firstIndex { $0.hasPrefix("putIfAbsent manifest/") }, "\(events)")
        for name in replayed {
            let synced = events.firstIndex(of: "sync \(name)")
            #expect(synced != nil && synced! < manifest, "\(name) not synced before the manifest: \(events)")
        }
        #expect(!(try FileOps.list(killed + "/wal")).contains { $0.contains(".tmp.") })
    }

    @Test(arguments: ["buffered", "direct"])
    func aSegmentKeepsZerosAheadOfItsSyncsAndLosesThemAtClose(walIO: String) throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var options = BackendOptions()
        options.tuning = ["wal_io": walIO]
        let store = try factory.open(at: path, options: options)
        for i in 0..<10 { try store.put(TestBytes.key(i), [UInt8(i)], durable: true) }
        func segments(_ root: String) throws -> [(name: String, bytes: [UInt8])] {
            try FileOps.list(root + "/objects/wal").filter { $0.hasSuffix(".wal") }.sorted()
                .map { ($0, try FileOps.readFile(root + "/objects/wal/" + $0)) }
        }
        // While open: the segment ends in reserved zeros, at least 128 KiB of them.
        let open = try #require(try segments(path).last { $0.bytes.count > WALFormat.headerSize })
        let contents = try WALFormat.decode(open.bytes, name: open.name)
        #expect(contents.records.count == 10 && !contents.torn)
        // The first durable write left one sync marker in the segment, and no other did.
        #expect(contents.marked)
        #expect(open.bytes.indices.filter { open.bytes[$0...].starts(with: WALFormat.syncMarker) }.count == 1)
        #expect(open.bytes.suffix(128 << 10).allSatisfy { $0 == 0 })
        // What a killed process leaves (the files as they are now) opens with every record.
        let copy = harness.freshPath("copy")
        try FileManager.default.copyItem(atPath: path, toPath: copy)
        let reopened = try factory.open(at: copy, options: options)
        #expect(try reopened.entries().count == 10)
        try reopened.close()
        // Closing cuts the zeros off.
        try store.close()
        if walIO == "direct" {
            var wrong = options
            wrong.tuning["wal_io"] = "fast"
            #expect { try factory.open(at: harness.freshPath(), options: wrong) } throws: { "\($0)".contains("wal_io must be direct or buffered") }
        }
        let closed = try #require(try segments(path).first { $0.name == open.name })
        #expect(try closed.bytes.last != 0 && WALFormat.decode(closed.bytes, name: closed.name).records.count == 10)
    }

    @Test func anOlderWriterIsFencedAndLosesNothingAcknowledged() throws {
        let objects = MemoryObjectStore()
        let first = try factory.open(objects: objects, options: BackendOptions())
        try fill(first, 0..<5, durable: true)
        let second = try factory.open(objects: objects, options: BackendOptions())
        #expect(try second.entries().count == 5)
        #expect { try first.put([9], [9], durable: true) } throws: { ($0 as? KVError)?.code == .fenced }
        try second.put([8], [8], durable: true)
        try? first.close()
        try second.close()
        let third = try factory.open(objects: objects, options: BackendOptions())
        #expect(try third.get([8]) == [8])
        #expect(try third.get([9]) == nil)
        #expect(try third.entries().count == 6)
        try third.close()
    }

    /// A writer commits its manifest while its newest WAL object may still be on its way:
    /// the next open plugs the ids the manifest says were handed out and the listing
    /// lacks, so a late put there fails instead of landing unreplayed below the fence.
    @Test func anOpenPlugsHandedOutIdsTheListingLacks() throws {
        let objects = MemoryObjectStore()
        let first = try factory.open(objects: objects, options: BackendOptions())
        try first.put([1], [1], durable: true)
        try first.close()
        let newestWAL = try #require(try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).max())
        let newest = try #require(try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max())
        var manifest = try Manifest.decode(try #require(try objects.get(Manifest.name(newest))), name: "m")
        // Three ids handed out whose objects have not landed.
        manifest.nextWALID = newestWAL + 4
        #expect(try objects.putIfAbsent(Manifest.name(newest + 1), manifest.encode()))
        let second = try factory.open(objects: objects, options: BackendOptions())
        for id in (newestWAL + 1)...(newestWAL + 3) {
            #expect(try objects.get(WALFormat.name(id)) == WALFormat.header(), "id \(id) is not plugged")
        }
        #expect(try second.get([1]) == [1])
        // The plugs stay once the replay start has passed them and garbage collection has
        // run: deleted, the late put would land after all.
        try fill(second, 0..<50, durable: true)
        _ = try second.createCheckpoint(named: "flushed")
        try second.deleteCheckpoint(named: "flushed")
        try second.settleBackgroundWork()
        let store = try #require(second as? LSMBackend).store
        #expect(store.state.withLock { store.manifest.walReplayFrom } > newestWAL + 3)
        for id in (newestWAL + 1)...(newestWAL + 3) {
            #expect(try objects.putIfAbsent(WALFormat.name(id), [1, 2, 3]) == false, "the plug at \(id) was collected")
        }
        try second.close()
    }

    /// Each writer hands out table ids from a range of its own (from the next multiple of
    /// 2^40 at its open), so a fenced
    /// writer that finishes a table late cannot replace one of the new writer's: tables
    /// are written by name. And a table whose size is not the manifest's is refused, not
    /// read through its own (valid) footer.
    @Test func eachWriterHandsOutTableIDsOfItsOwn() throws {
        let objects = MemoryObjectStore()
        func nextTableID(_ backend: any KVBackend) throws -> UInt64 {
            let store = try #require(backend as? LSMBackend).store
            return store.state.withLock { store.nextTableID }
        }
        let first = try factory.open(objects: objects, options: tinyLSMOptions())
        try fill(first, 0..<1500)
        try first.settleBackgroundWork()
        let firstNext = try nextTableID(first)
        try first.close()
        let second = try factory.open(objects: objects, options: tinyLSMOptions())
        let secondNext = try nextTableID(second)
        #expect(secondNext % LSMStore.tableIDsPerEpoch == 0 && secondNext > firstNext, "\(firstNext) then \(secondNext)")
        try fill(second, 1500..<3000)
        try second.settleBackgroundWork()
        let secondStore = try #require(second as? LSMBackend).store
        let tables = secondStore.state.withLock { secondStore.version.levels.flatMap { $0.map { $0.meta } } }
        #expect(tables.contains { $0.id >= secondNext })
        try second.close()

        let replaced = try #require(tables.first)
        let other = try #require(tables.first { $0.size != replaced.size })
        try objects.put(replaced.name, try #require(try objects.get(other.name)))
        #expect { try factory.open(objects: objects, options: tinyLSMOptions()) } throws: {
            ($0 as? KVError)?.code == .corruption && "\($0)".contains("its manifest says")
        }
    }

    /// A file written in order: each batch puts a low key (its inode record) and the next
    /// high key (a chunk), so every memtable spans all older chunks. Level 1 is large
    /// enough to hold it all, so every compaction goes from L0 into L1.
    struct OrderedFile {
        let backend: any KVBackend
        let store: LSMStore

        init(_ factory: LSMBackendFactory) throws {
            var options = tinyLSMOptions()
            options.tuning["level1_bytes"] = String(1 << 30)
            backend = try factory.open(objects: MemoryObjectStore(), options: options)
            store = try #require(backend as? LSMBackend).store
        }

        func write(_ range: Range<Int>) throws {
            for i in range {
                var batch = WriteBatch()
                batch.put([0x01], Array("inode \(i)".utf8))
                batch.put([0xFE] + TestBytes.key(i), TestBytes.value(i, size: 300))
                try backend.write(batch, durable: false)
            }
            try backend.settleBackgroundWork()
        }

        func tables() -> [(id: UInt64, smallest: [UInt8], largest: [UInt8])] {
            store.state.withLock { store.version.levels.flatMap { $0.map { ($0.meta.id, $0.meta.smallest, $0.meta.largest) } } }
        }

        /// Every record is still there; closes the store.
        func checkAndClose(upTo count: Int) throws {
            #expect(try backend.get([0x01]) == Array("inode \(count - 1)".utf8))
            for i in stride(from: 0, to: count, by: 97) { #expect(try backend.get([0xFE] + TestBytes.key(i)) == TestBytes.value(i, size: 300)) }
            try backend.close()
        }
    }

    @Test func aFileWrittenInOrderDoesNotRewriteItsOlderTables() throws {
        let file = try OrderedFile(factory)
        try file.write(0..<1500)
        // Tables holding only chunks: what the second half must leave alone.
        let chunkTables = file.tables().filter { $0.smallest.first == 0xFE }
        #expect(chunkTables.count >= 4)
        try file.write(1500..<3000)
        let now = Set(file.tables().map(\.id))
        let kept = chunkTables.filter { now.contains($0.id) }
        // Merging by the inputs' whole range rewrote every one of them (0 of 12 kept).
        #expect(kept.count * 2 >= chunkTables.count, "\(kept.count) of \(chunkTables.count) chunk tables kept")
        try file.checkAndClose(upTo: 3000)
    }

    @Test func flushesKeepALargeRunOfOneKindApartAndItMovesDownWithoutRewrites() throws {
        // Each memtable holds the inode record (0x01) and a run of chunks (0xFE) far above
        // a sixteenth of the memtable.
        let file = try OrderedFile(factory)
        try file.write(0..<1500)
        // No table mixes the two kinds: the chunks were flushed into tables of their own.
        for table in file.tables() {
            #expect(table.smallest.first == table.largest.first, "table \(table.id) spans \(table.smallest) ... \(table.largest)")
        }
        let chunkTables = file.tables().filter { $0.smallest.first == 0xFE }
        #expect(chunkTables.count >= 4)
        try file.write(1500..<3000)
        // Every chunk table moved down by metadata or stayed: none was rewritten.
        let now = Set(file.tables().map(\.id))
        let rewritten = chunkTables.filter { !now.contains($0.id) }
        #expect(rewritten.isEmpty, "\(rewritten.count) of \(chunkTables.count) chunk tables rewritten")
        try file.checkAndClose(upTo: 3000)
    }

    @Test func levelZeroCountsOverlapDepthAndStillMovesSortedLoadsDown() throws {
        let backend = try factory.open(objects: MemoryObjectStore(), options: tinyLSMOptions())
        let store = try #require(backend as? LSMBackend).store
        // Keys in order: every flush is disjoint from the ones before (depth 1), yet L0
        // must not collect them without end.
        for i in 0..<3000 { try backend.put([0xFE] + TestBytes.key(i), TestBytes.value(i, size: 300)) }
        try backend.settleBackgroundWork()
        let level0 = store.state.withLock { store.version.levels[0].count }
        #expect(level0 < 4, "\(level0) tables left in L0")
        for i in stride(from: 0, to: 3000, by: 89) { #expect(try backend.get([0xFE] + TestBytes.key(i)) == TestBytes.value(i, size: 300)) }
        try backend.close()
        // Depth: the most ranges sharing a key (inclusive ends).
        func meta(_ id: UInt64, _ low: UInt8, _ high: UInt8) -> TableMeta {
            TableMeta(id: id, size: 0, smallest: [low], largest: [high], entries: 1, tombstones: 0)
        }
        #expect(Version.depth([]) == 0)
        #expect(Version.depth([meta(1, 1, 5)]) == 1)
        #expect(Version.depth([meta(1, 1, 5), meta(2, 6, 9)]) == 1)
        #expect(Version.depth([meta(1, 1, 5), meta(2, 5, 9)]) == 2)
        #expect(Version.depth([meta(1, 1, 9), meta(2, 2, 3), meta(3, 3, 4), meta(4, 7, 8)]) == 3)
    }

    @Test func checkpointsSurviveChurnAndFreeTheirFilesWhenDeleted() throws {
        let objects = MemoryObjectStore()
        let store = try factory.open(objects: objects, options: tinyLSMOptions())
        try fill(store, 0..<3000)
        let before = try store.entries()
        _ = try store.createCheckpoint(named: "before")
        // Heavy churn: overwrites, deletes, a range delete, many flushes and compactions.
        try fill(store, 1000..<4000, size: 300)
        var batch = WriteBatch()
        batch.deleteRange(from: TestBytes.key(0), to: TestBytes.key(1500))
        try store.write(batch, durable: false)
        for i in stride(from: 2000, to: 3000, by: 3) { try store.delete(TestBytes.key(i)) }
        // The churn's compactions done (they run beside the writes), so that "after" no
        // longer names every table "before" does.
        try store.settleBackgroundWork()
        _ = try store.createCheckpoint(named: "after")
        let after = try store.entries()

        let frozen = try factory.openCheckpoint(objects: objects, named: "before", options: BackendOptions())
        #expect(try frozen.entries() == before)
        try frozen.close()

        // Flushes and compactions done first, so only the checkpoint's deletion changes the files.
        try store.settleBackgroundWork()
        _ = try store.createCheckpoint(named: "settled")
        // Its flush may have started a compaction, which runs beside commits.
        try store.settleBackgroundWork()
        let tablesWithBoth = Set(try objects.list(prefix: "sst/"))
        try store.deleteCheckpoint(named: "before")
        // The next commit collects garbage: files only the checkpoint held go.
        _ = try store.createCheckpoint(named: "gc")
        let tablesAfter = Set(try objects.list(prefix: "sst/"))
        #expect(tablesAfter.isSubset(of: tablesWithBoth) && tablesAfter.count < tablesWithBoth.count, "deleting a checkpoint frees its tables")

        // A clone restored from "after" and the original diverge independently.
        let cloneObjects = MemoryObjectStore()
        try factory.restoreCheckpoint(objects: objects, named: "after", into: cloneObjects)
        let clone = try factory.open(objects: cloneObjects, options: tinyLSMOptions())
        #expect(try clone.entries() == after)
        try clone.put([0xFF], [1], durable: true)
        try store.put([0xFE], [2], durable: true)
        #expect(try clone.get([0xFE]) == nil)
        #expect(try store.get([0xFF]) == nil)
        try clone.close()
        try store.close()
    }

    /// A checkpoint opened beside a running store: between listing the manifests and reading
    /// the newest, a commit can supersede it and garbage collection delete it. The listing
    /// here names, once, a newest manifest that is already gone; the open reads again.
    @Test func aCheckpointOpensWhenTheNewestManifestIsCollectedAfterTheListing() throws {
        let objects = StaleListingObjectStore()
        let store = try factory.open(objects: objects, options: tinyLSMOptions())
        try fill(store, 0..<500)
        _ = try store.createCheckpoint(named: "cp")
        let expected = try store.entries()
        try fill(store, 500..<600)
        let newest = try #require(try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max())
        objects.phantom.withLock { $0 = Manifest.name(newest + 1) }
        let frozen = try factory.openCheckpoint(objects: objects, named: "cp", options: BackendOptions())
        #expect(objects.phantom.withLock { $0 } == nil, "the phantom was listed")
        #expect(try frozen.entries() == expected)
        try frozen.close()
        try store.close()
    }

    /// Crashes at a random object-store operation (the put that meets it may land, whole
    /// or, for a WAL object, cut short), restarts, and checks the store equals the model at
    /// some point no earlier than the last acknowledged durable write.
    @Test func crashesAtRandomObjectOperationsKeepAcknowledgedWrites() throws {
        let seed = TestSeed.resolve("crashesAtRandomObjectOperationsKeepAcknowledgedWrites")
        var random = SeededGenerator(seed: seed)
        let rounds = TestSeed.environmentInt("ZEROFS_CRASH_ROUNDS", default: 4) * 3
        for round in 0..<rounds {
            let crashing = CrashingObjectStore(seed: random.next())
            var history: [[KVEntry]] = [[]]
            var lastDurable = 0
            var model: [[UInt8]: [UInt8]] = [:]
            let store = try factory.open(objects: crashing, options: tinyLSMOptions())
            crashing.crash(afterOperations: Int.random(in: 1...400, using: &random), tearing: "wal/")
            let snapshot = { model.map { KVEntry(key: $0.key, value: $0.value) }.sorted { Bytes.compare($0.key, $1.key) < 0 } }
            writes: for _ in 0..<2000 {
                let batch = randomBatch(&random, &model)
                let durable = Int.random(in: 0..<3, using: &random) == 0
                do {
                    try store.write(batch, durable: durable)
                } catch {
                    // Its WAL object may have landed whole: a state that may follow, never
                    // one that must.
                    history.append(snapshot())
                    break writes
                }
                history.append(snapshot())
                if durable { lastDurable = history.count - 1 }
            }
            try? store.close()
            let restarted = crashing.restarted(seed: random.next())
            let reopened = try factory.open(objects: restarted, options: tinyLSMOptions())
            let state = try reopened.entries()
            let match = history.indices.last { history[$0] == state }
            #expect(match != nil && match! >= lastDurable,
                    "round \(round): recovered state matches history point \(String(describing: match)), last durable \(lastDurable) (seed \(seed))")
            try reopened.close()
        }
    }
}

/// A local folder that records which objects were synced and which put-if-absent calls
/// came, in order.
final class RecordingAppendableStore: AppendableObjectStore, @unchecked Sendable {
    let inner: LocalObjectStore
    let events = Mutex<[String]>([])

    init(_ inner: LocalObjectStore) { self.inner = inner }

    var location: String { inner.location }
    func get(_ name: String) throws -> [UInt8]? { try inner.get(name) }
    func open(_ name: String) throws -> (any ReadableObject)? { try inner.open(name) }
    func put(_ name: String, _ bytes: [UInt8]) throws { try inner.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool {
        events.withLock { $0.append("putIfAbsent \(name)") }
        return try inner.putIfAbsent(name, bytes)
    }
    func list(prefix: String) throws -> [String] { try inner.list(prefix: prefix) }
    func delete(_ name: String) throws { try inner.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { try inner.makeWriter(name) }
    func createAppendable(_ name: String, header: [UInt8]) throws -> (any AppendableObject)? {
        try inner.createAppendable(name, header: header)
    }
    func syncObject(_ name: String) throws {
        events.withLock { $0.append("sync \(name)") }
        try inner.syncObject(name)
    }
    func deleteDurably(_ name: String) throws { try inner.deleteDurably(name) }
    func removeLeftovers(prefix: String) throws { try inner.removeLeftovers(prefix: prefix) }
}

/// One to four random puts (values up to 400 bytes; with `largeValues`, one in 20 of
/// 16-24 KiB) and deletes of 300 keys, applied to `model` too: the crash tests' writes.
func randomBatch(_ random: inout SeededGenerator, _ model: inout [[UInt8]: [UInt8]], largeValues: Bool = false) -> WriteBatch {
    var batch = WriteBatch()
    for _ in 0..<Int.random(in: 1...4, using: &random) {
        let key = TestBytes.key(Int.random(in: 0..<300, using: &random))
        if Int.random(in: 0..<5, using: &random) == 0 {
            batch.delete(key)
            model[key] = nil
        } else {
            let index = Int.random(in: 0..<1000, using: &random)
            let size = largeValues && Int.random(in: 0..<20, using: &random) == 0 ? Int.random(in: 16_384...24_000, using: &random)
                : Int.random(in: 0...400, using: &random)
            let value = TestBytes.value(index, size: size)
            batch.put(key, value)
            model[key] = value
        }
    }
    return batch
}
