// Read-only replicas of the lsm backend (LSMStore+Follow.swift): a replica opened on the
// objects of a writer that keeps working follows it through WAL records, flushes,
// compactions, garbage collection and a takeover by a new writer, and never writes.
// Randomized against a model; prints its seed, ZEROFS_SEED replays it.

import Engine
import Foundation
import Synchronization
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMReplicaTests {
    let factory = LSMBackendFactory()

    /// Object stores a writer and its replica share: in memory (each WAL write a whole
    /// object, as on S3) and a local folder (WAL segments that grow by appends).
    enum Objects: String, CaseIterable, CustomStringConvertible {
        case memory, folder
        var description: String { rawValue }
    }

    private func makeObjects(_ kind: Objects) throws -> (any ObjectStore, cleanUp: () -> Void) {
        switch kind {
        case .memory:
            return (MemoryObjectStore(), {})
        case .folder:
            let root = NSTemporaryDirectory() + "zerofs-replica-\(UInt32.random(in: 0...UInt32.max))"
            return (try LocalObjectStore(root: root), { try? FileManager.default.removeItem(atPath: root) })
        }
    }

    private func options(graceSeconds: Int) -> BackendOptions {
        var options = tinyLSMOptions()
        options.tuning["gc_grace_seconds"] = String(graceSeconds)
        return options
    }

    /// The store a replica follows is deleted and another made in its place: its
    /// manifests and WAL objects start again at low ids, which the replica would take
    /// for the old writer's. The identity says it is another store: catching up fails
    /// with `.storeNotFound`, and the replica keeps showing what it showed.
    @Test(arguments: Objects.allCases)
    func aStoreMadeAnewInPlaceIsNotMixedIntoAReplica(_ kind: Objects) throws {
        let (objects, cleanUp) = try makeObjects(kind)
        defer { cleanUp() }
        let writer = try factory.open(objects: objects, options: BackendOptions())
        for i in 0..<5 { try writer.put(TestBytes.key(i), [1], durable: true) }
        try writer.close()
        let replica = try factory.openReplica(objects: objects, options: BackendOptions())
        #expect(try replica.entries().count == 5)

        for prefix in ["manifest/", "wal/", "sst/", LSMStore.identityName] {
            for name in try objects.list(prefix: prefix) { try objects.delete(name) }
        }
        let other = try factory.open(objects: objects, options: BackendOptions())
        for i in 10..<13 { try other.put(TestBytes.key(i), [2], durable: true) }
        try other.close()
        let error = #expect(throws: KVError.self) { _ = try replica.catchUp() }
        #expect(error?.code == .storeNotFound)
        #expect(try replica.entries().map(\.key) == (0..<5).map { TestBytes.key($0) })
        try replica.close()

        let fresh = try factory.openReplica(objects: objects, options: BackendOptions())
        #expect(try fresh.entries().map(\.key) == (10..<13).map { TestBytes.key($0) })
        try fresh.close()
    }

    @Test(arguments: Objects.allCases)
    func followsWritesFlushesCompactionsAndATakeover(_ kind: Objects) throws {
        let (objects, cleanUp) = try makeObjects(kind)
        defer { cleanUp() }
        // No grace: tables go the moment the writer's manifest drops them, so the replica's
        // reads meet collected tables and must catch up and retry.
        try Self.followRounds("followsWritesFlushesCompactionsAndATakeover-\(kind)", rounds: 40,
                              openWriter: { try factory.open(objects: objects, options: options(graceSeconds: 0)) },
                              openReplica: { try factory.openReplica(objects: objects, options: tinyLSMOptions()) })
    }

    /// Random batches (puts, deletes, range deletes, some durable) from a writer that a new
    /// writer takes over now and then; after each round the replica, caught up, holds
    /// exactly the model. Half the rounds read the replica before it catches up too.
    static func followRounds(_ name: String, rounds: Int, openWriter: () throws -> any KVBackend, openReplica: () throws -> any KVBackend) throws {
        let seed = TestSeed.resolve(name)
        var random = SeededGenerator(seed: seed)
        var writer = try openWriter()
        try writer.put([0xFF], [1], durable: true)
        let replica = try openReplica()
        defer { try? replica.close() }
        #expect(replica.isReplica && replica.isReadOnly)
        #expect(try replica.get([0xFF]) == [1])
        var model: [[UInt8]: [UInt8]] = [[0xFF]: [1]]
        let keySpace = 3000

        for round in 0..<rounds {
            for _ in 0..<Int.random(in: 50...400, using: &random) {
                var batch = WriteBatch()
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let n = Int.random(in: 0..<keySpace, using: &random)
                    let key = TestBytes.key(n)
                    switch Int.random(in: 0..<20, using: &random) {
                    case 0:
                        let end = TestBytes.key(n + Int.random(in: 1...30, using: &random))
                        batch.deleteRange(from: key, to: end)
                        for k in model.keys where Bytes.compare(k, key) >= 0 && Bytes.compare(k, end) < 0 { model[k] = nil }
                    case 1...4:
                        batch.delete(key)
                        model[key] = nil
                    default:
                        let value = TestBytes.value(Int.random(in: 0..<1_000_000, using: &random), size: Int.random(in: 1...300, using: &random))
                        batch.put(key, value)
                        model[key] = value
                    }
                }
                try writer.write(batch, durable: Int.random(in: 0..<10, using: &random) == 0)
            }
            try writer.flush()
            if round % 13 == 12 {
                // A new writer takes the store over (a new epoch, a fence in the WAL).
                try writer.close()
                writer = try openWriter()
            }
            if Bool.random(using: &random) { _ = try replica.entries() }
            _ = try replica.catchUp()
            let seen = try replica.entries()
            let expected = model.sorted { Bytes.compare($0.key, $1.key) < 0 }.map { KVEntry(key: $0.key, value: $0.value) }
            guard seen == expected else {
                Issue.record("\(name) round \(round): the replica shows \(seen.count) entries, the writer \(expected.count); replay with ZEROFS_SEED=\(seed)")
                break
            }
            for _ in 0..<20 {
                let key = TestBytes.key(Int.random(in: 0..<keySpace, using: &random))
                #expect(try replica.get(key) == model[key], "\(name) round \(round) key \(key); ZEROFS_SEED=\(seed)")
            }
        }
        #expect { try replica.put([1], [1]) } throws: { ($0 as? KVError)?.code == .readOnly }
        #expect { _ = try replica.createCheckpoint(named: "no") } throws: { ($0 as? KVError)?.code == .readOnly }
        try writer.close()
    }

    /// The replica writes nothing: every write it could make through its object store is
    /// counted (and refused), while the writer keeps writing after the replica opened (no
    /// fence, no manifest of the replica's stands in its way).
    @Test func writesNoObject() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: tinyLSMOptions())
        for i in 0..<3000 { try writer.put(TestBytes.key(i), TestBytes.value(i, size: 100)) }
        try writer.flush()
        let watched = ReadOnlyObjects(objects)
        let replica = try factory.openReplica(objects: watched, options: tinyLSMOptions())
        for i in 3000..<6000 { try writer.put(TestBytes.key(i), TestBytes.value(i, size: 100)) }
        try writer.put([0xFE], [2], durable: true)
        _ = try replica.catchUp()
        #expect(try replica.get([0xFE]) == [2])
        #expect(try replica.entries().count == 6001)
        try replica.close()
        #expect(watched.writes.withLock { $0 } == [], "the replica tried to write")
        try writer.close()
    }

    /// A WAL id missing above every fence the manifest records is a write still landing
    /// (an older writer's, while a new one has placed its fence and not yet plugged the
    /// ids below it): the replica waits for it instead of skipping to the fence, and reads
    /// it once it lands.
    @Test func aGapAboveEveryFenceIsWaitedFor() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: tinyLSMOptions())
        try writer.put([0x01], [1], durable: true)
        try writer.close()
        let replica = try factory.openReplica(objects: objects, options: tinyLSMOptions())
        #expect(try replica.get([0x01]) == [1])
        let newest = try #require(try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).max())
        let store = try #require(replica as? LSMBackend).store
        let lastSeq = store.state.withLock { store.lastSeq }
        // A new writer's fence two ids on, before it plugged the one between.
        try objects.put(WALFormat.name(newest + 2), WALFormat.header())
        _ = try replica.catchUp()
        // The older writer's object lands in the gap.
        var late = WALFormat.header()
        var batch = WriteBatch()
        batch.put([0x02], [2])
        WALFormat.appendRecord(&late, seq: lastSeq + 1, batch: batch)
        try objects.put(WALFormat.name(newest + 1), late)
        _ = try replica.catchUp()
        #expect(try replica.get([0x02]) == [2], "the replica skipped the object still landing")
        try replica.close()
    }

    /// The writer flushes its memtable and collects the WAL objects that held it between
    /// the replica's look for a newer manifest and its listing of the WAL: the listing
    /// misses them, and the replica takes what they held from the new manifest's tables.
    @Test func aWALCollectedMidCatchUpIsFoundInTheNewTables() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: options(graceSeconds: 0))
        try writer.put([0xFF], [1], durable: true)
        let hooked = HookedObjects(objects)
        let replica = try factory.openReplica(objects: hooked, options: tinyLSMOptions())
        defer { try? replica.close() }
        for i in 0..<200 { try writer.put(TestBytes.key(i), TestBytes.value(i, size: 50), durable: i % 50 == 49) }
        hooked.beforeWALListing.withLock {
            $0 = {
                // A checkpoint flushes the memtable; its commit collects the WAL below it.
                _ = try? writer.createCheckpoint(named: "mid")
            }
        }
        _ = try replica.catchUp()
        #expect(hooked.beforeWALListing.withLock { $0 } == nil, "the hook ran")
        for i in 0..<200 { #expect(try replica.get(TestBytes.key(i)) == TestBytes.value(i, size: 50), "key \(i)") }
        try writer.close()
    }

    /// A writer still running commits a newer manifest and collects the one a new opener
    /// listed, before the opener reads it: the opener lists again and takes over, instead
    /// of reporting the store damaged ("manifest object is missing").
    @Test func anOpenerWhoseListedManifestWasCollectedTakesOver() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: options(graceSeconds: 0))
        defer { try? writer.close() }
        try writer.put([0x01], [1], durable: true)
        let listed = Set(try objects.list(prefix: "manifest/"))
        let hooked = HookedObjects(objects)
        hooked.beforeManifestGet.withLock {
            $0 = {
                _ = try? writer.createCheckpoint(named: "mid")
                try? writer.put([0x02], [2], durable: true)
            }
        }
        let opener = try factory.open(objects: hooked, options: options(graceSeconds: 0))
        defer { try? opener.close() }
        #expect(hooked.beforeManifestGet.withLock { $0 } == nil, "the hook ran")
        #expect(listed.isDisjoint(with: try objects.list(prefix: "manifest/")), "the listed manifests were collected")
        #expect(try opener.get([0x01]) == [1])
        #expect(try opener.get([0x02]) == [2])
    }

    /// The writer commits a manifest that moves nothing (a checkpoint deleted), then,
    /// while the replica installs it and lists the WAL, another that flushes the memtable
    /// and collects the WAL objects below it: the listing misses them. The replica must
    /// go on to the newer manifest without showing the older one's tables with nothing
    /// replayed, which would show what those objects held as gone meanwhile.
    @Test func anInstallOvertakenWhileListingTheWALIsNeverShown() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: options(graceSeconds: 0))
        defer { try? writer.close() }
        _ = try writer.createCheckpoint(named: "c0")
        let hooked = HookedObjects(objects)
        let replica = try factory.openReplica(objects: hooked, options: tinyLSMOptions())
        defer { try? replica.close() }
        for i in 0..<20 { try writer.put(TestBytes.key(i), [UInt8(i)], durable: true) }
        _ = try replica.catchUp()
        #expect(try replica.get(TestBytes.key(3)) == [3])
        try writer.deleteCheckpoint(named: "c0")
        let seen = Mutex<[UInt8]??>(nil)
        hooked.beforeWALListing.withLock {
            $0 = {
                _ = try? writer.createCheckpoint(named: "c1")
                // At the next listing, what the replica shows then.
                hooked.beforeWALListing.withLock { $0 = { seen.withLock { $0 = .some(try? replica.get(TestBytes.key(3))) } } }
            }
        }
        _ = try replica.catchUp()
        #expect(seen.withLock { $0 } == .some([3]), "the replica showed the overtaken manifest's tables alone")
        for i in 0..<20 { #expect(try replica.get(TestBytes.key(i)) == [UInt8(i)], "key \(i)") }
    }

    /// The writer's manifest records the sequence numbers its memtable holds, some not yet
    /// in any WAL object. A replica reads at what it replayed: a record replayed later is
    /// not shown to a read view opened before it, and shows once the catch-up ends.
    @Test func aReadViewOpenedBeforeACatchUpKeepsItsPointInTime() throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: tinyLSMOptions())
        try writer.put([0x01], [1], durable: true)
        try writer.close()
        let newest = try #require(try LSMStore.newestWholeManifest(objects))
        var manifest = try Manifest.decode(newest.bytes, name: Manifest.name(newest.id))
        let recorded = manifest.lastSeq
        manifest.lastSeq += 100
        try objects.put(Manifest.name(newest.id + 1), manifest.encode())

        let replica = try factory.openReplica(objects: objects, options: tinyLSMOptions())
        defer { try? replica.close() }
        #expect(try replica.get([0x01]) == [1])
        let view = try replica.readView()
        defer { view.close() }
        // The WAL record of a later batch lands, numbered above what the WAL held (the
        // manifest may predate the first put) and below the manifest's figure.
        let wal = (try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).max() ?? manifest.walReplayFrom) + 1
        var bytes = WALFormat.header()
        var batch = WriteBatch()
        batch.put([0x02], [2])
        batch.put([0x03], [3])
        WALFormat.appendRecord(&bytes, seq: recorded + 50, batch: batch)
        try objects.put(WALFormat.name(max(wal, manifest.walReplayFrom)), bytes)
        _ = try replica.catchUp()
        #expect(try view.get([0x02]) == nil, "a read view opened before the record saw it")
        #expect(try replica.get([0x02]) == [2] && replica.get([0x03]) == [3])
    }

    /// A replica of nothing is refused; backends without replicas say so.
    @Test func refusals() throws {
        #expect { _ = try factory.openReplica(objects: MemoryObjectStore(), options: BackendOptions()) } throws: {
            ($0 as? KVError)?.code == .storeNotFound
        }
        let folder = NSTemporaryDirectory() + "zerofs-replica-none-\(UInt32.random(in: 0...UInt32.max))"
        #expect { _ = try factory.openReplica(at: folder, options: BackendOptions()) } throws: { _ in true }
        #expect(!FileManager.default.fileExists(atPath: folder), "opening a replica created nothing")
    }

    /// With a grace period, a table the writer's manifest dropped stays until the grace
    /// has passed, so a replica a poll behind still finds it; without one it goes at once.
    @Test(arguments: [0, 3600])
    func graceKeepsDroppedTablesForReplicas(_ graceSeconds: Int) throws {
        let objects = MemoryObjectStore()
        let writer = try factory.open(objects: objects, options: options(graceSeconds: graceSeconds))
        let replica = try factory.openReplica(objects: objects, options: tinyLSMOptions())
        for round in 0..<6 {
            for i in 0..<1500 { try writer.put(TestBytes.key(i), TestBytes.value(i + round, size: 100)) }
            _ = try writer.createCheckpoint(named: "c\(round)")
            try writer.deleteCheckpoint(named: "c\(round)")
        }
        try writer.settleBackgroundWork()
        _ = try writer.createCheckpoint(named: "last")  // one more manifest commit: a GC pass
        try writer.deleteCheckpoint(named: "last")
        let tables = try objects.list(prefix: "sst/").count
        let newest = try objects.list(prefix: "manifest/").last!
        let named = try Manifest.decode(try objects.get(newest)!, name: newest).tableIDs.count
        if graceSeconds > 0 {
            #expect(tables > named, "dropped tables wait out the grace: \(tables) objects, \(named) named")
        } else {
            #expect(tables == named, "without grace only named tables stay: \(tables) objects, \(named) named")
        }
        _ = try replica.catchUp()
        #expect(try replica.get(TestBytes.key(7)) == TestBytes.value(7 + 5, size: 100))
        try replica.close()
        try writer.close()
    }
}

/// Forwards reads to an object store, refuses and records every write.
final class ReadOnlyObjects: ObjectStore, @unchecked Sendable {
    let base: any ObjectStore
    let writes = Mutex<[String]>([])
    init(_ base: any ObjectStore) { self.base = base }
    var location: String { base.location }
    func get(_ name: String) throws -> [UInt8]? { try base.get(name) }
    func open(_ name: String) throws -> (any ReadableObject)? { try base.open(name) }
    func list(prefix: String) throws -> [String] { try base.list(prefix: prefix) }
    private func refuse(_ what: String, _ name: String) -> KVError {
        writes.withLock { $0.append("\(what) \(name)") }
        return KVError(.readOnly, "a replica wrote", path: name)
    }
    func put(_ name: String, _ bytes: [UInt8]) throws { throw refuse("put", name) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { throw refuse("putIfAbsent", name) }
    func delete(_ name: String) throws { throw refuse("delete", name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { throw refuse("makeWriter", name) }
    func setInService(_ inService: Bool) { base.setInService(inService) }
    func storeClosed() { base.storeClosed() }
}

/// Forwards to an object store; runs a hook once, before the next listing of the WAL, and
/// another once, before the next read of a manifest.
final class HookedObjects: ObjectStore, @unchecked Sendable {
    let base: any ObjectStore
    let beforeWALListing = Mutex<(@Sendable () -> Void)?>(nil)
    let beforeManifestGet = Mutex<(@Sendable () -> Void)?>(nil)
    init(_ base: any ObjectStore) { self.base = base }
    var location: String { base.location }
    func get(_ name: String) throws -> [UInt8]? {
        if name.hasPrefix("manifest/"), let hook = beforeManifestGet.withLock({ hook in defer { hook = nil }; return hook }) { hook() }
        return try base.get(name)
    }
    func open(_ name: String) throws -> (any ReadableObject)? { try base.open(name) }
    func list(prefix: String) throws -> [String] {
        if prefix == "wal/", let hook = beforeWALListing.withLock({ hook in defer { hook = nil }; return hook }) { hook() }
        return try base.list(prefix: prefix)
    }
    func put(_ name: String, _ bytes: [UInt8]) throws { try base.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { try base.putIfAbsent(name, bytes) }
    func delete(_ name: String) throws { try base.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { try base.makeWriter(name) }
    func setInService(_ inService: Bool) { base.setInService(inService) }
    func storeClosed() { base.storeClosed() }
}
