// Values kept in the WAL (lsm.md, "Values in the WAL"): a flush leaves large values in
// the WAL segment they were appended to and writes pointers; reads, reopening, scrub,
// checkpoints, restore, garbage collection and the emptying of mostly dead segments.

import Engine
import Foundation
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMValueLogTests {
    let factory = LSMBackendFactory()
    static let valueBytes = 20_000

    func options(_ tuning: [String: String] = [:]) -> BackendOptions {
        var options = BackendOptions()
        options.tuning = ["memtable_bytes": "4194304"].merging(tuning) { $1 }
        return options
    }

    /// One large value and one small one per batch, as the filesystem writes a chunk and
    /// its inode.
    func fill(_ store: any KVBackend, _ keys: Range<Int>, round: Int = 0) throws {
        for i in keys {
            var batch = WriteBatch()
            // The small one first: the batch's bytes then grow once, to about the large
            // value's size, and the memtable keeps the batch (`LSMStore.apply`).
            batch.put(TestBytes.key(100_000 + i), [UInt8(truncatingIfNeeded: i + round)])
            batch.put(TestBytes.key(i), TestBytes.value(i + round, size: Self.valueBytes))
            try store.write(batch, durable: false)
        }
    }

    /// Freezes the memtable and waits for its flush and the compactions after it.
    func freeze(_ store: any KVBackend) throws {
        _ = try store.createCheckpoint(named: "freeze")
        try store.deleteCheckpoint(named: "freeze")
        try store.settleBackgroundWork()
    }

    func lsm(_ store: any KVBackend) -> LSMStore { (store as! LSMBackend).store }

    func segments(_ path: String) throws -> Set<UInt64> {
        Set(try FileOps.list(path + "/objects/wal").compactMap { WALFormat.id(of: "wal/" + $0) })
    }

    func tableBytes(_ path: String) throws -> Int {
        try FileOps.list(path + "/objects/sst").reduce(0) { total, name in
            total + (FileManager.default.contents(atPath: path + "/objects/sst/" + name)?.count ?? 0)
        }
    }

    /// A store in a fresh folder of `harness` whose tables point at values `keys` in WAL
    /// segments, flushed by a checkpoint named `checkpoint` (kept) or by `freeze`; and
    /// those segments.
    func pointingStore(
        _ harness: StoreHarness, _ tuning: [String: String] = [:], keys: Range<Int> = 0..<100, checkpoint: String? = nil
    ) throws -> (store: any KVBackend, path: String, segments: Set<UInt64>) {
        let path = harness.freshPath()
        let store = try factory.open(at: path, options: options(tuning))
        try fill(store, keys)
        if let checkpoint {
            _ = try store.createCheckpoint(named: checkpoint)
            try store.settleBackgroundWork()
        } else {
            try freeze(store)
        }
        let segments = pointed(store)
        #expect(!segments.isEmpty, "no table points into a WAL segment")
        return (store, path, segments)
    }

    func pointed(_ store: any KVBackend) -> Set<UInt64> { lsm(store).state.withLock { lsm(store).manifest.valueSegments } }

    @Test func largeValuesStayInTheWALAndTablesPointAtThem() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let path = harness.freshPath()
        var store = try factory.open(at: path, options: options())
        try fill(store, 0..<100)
        try freeze(store)
        #expect(!pointed(store).isEmpty, "no table points into a WAL segment")
        // 2 MB of values; the tables hold keys, pointers and the small values.
        let tables = try tableBytes(path)
        #expect(tables < 100 * Self.valueBytes / 8, "tables of \(tables) bytes")
        func check(_ store: any KVBackend) throws {
            for i in 0..<100 {
                #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: Self.valueBytes))
                #expect(try store.withValue(TestBytes.key(i)) { $0.map { Array($0) } } == TestBytes.value(i, size: Self.valueBytes))
            }
            let entries = try store.entries(KeyRange(start: TestBytes.key(0), end: TestBytes.key(100)))
            #expect(entries.map(\.value) == (0..<100).map { TestBytes.value($0, size: Self.valueBytes) })
            #expect(try store.firstEntry(from: TestBytes.key(42), prefix: [])?.value == TestBytes.value(42, size: Self.valueBytes))
            let view = try store.readView()
            #expect(try view.get(TestBytes.key(7)) == TestBytes.value(7, size: Self.valueBytes))
            view.close()
        }
        try check(store)
        let report = try store.scrub { _ in true }
        #expect(report.failures.isEmpty, "\(report.failures)")
        #expect(report.verified == "manifest, block and value checksums")
        #expect(report.bytes >= UInt64(100 * Self.valueBytes))
        try store.close()
        store = try factory.open(at: path, options: options())
        try check(store)
        try store.close()

        // With `wal_values = copy`, flushes copy the values into tables.
        let copied = harness.freshPath()
        let copying = try factory.open(at: copied, options: options(["wal_values": "copy"]))
        try fill(copying, 0..<100)
        try freeze(copying)
        #expect(pointed(copying).isEmpty)
        #expect(try tableBytes(copied) > 100 * Self.valueBytes)
        #expect(try copying.get(TestBytes.key(3)) == TestBytes.value(3, size: Self.valueBytes))
        try copying.close()

        // Values under `wal_value_min_bytes` (16 KiB by default) are copied too.
        let small = harness.freshPath()
        let smallStore = try factory.open(at: small, options: options())
        for i in 0..<50 { try smallStore.put(TestBytes.key(i), TestBytes.value(i, size: 10_000), durable: false) }
        try freeze(smallStore)
        #expect(pointed(smallStore).isEmpty)
        #expect(try smallStore.get(TestBytes.key(49)) == TestBytes.value(49, size: 10_000))
        try smallStore.close()
    }

    /// `withValues` with room for the values' tails (the filesystem's read-ahead): values
    /// kept in a WAL segment are read split, the head passed and the tail put in the room
    /// and checksummed there, neighbours and values far apart alike; a value in a table
    /// block, one too long for its room, one without room, and one of a key written since
    /// (in the memtable) are passed whole; an absent key gets nil. Every key's body runs
    /// once, in a read view too. Rooms not one per key are refused; a damaged tail is
    /// reported.
    @Test func valuesInTheWALAreReadIntoTheRoomForTheirTails() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, path, segments) = try pointingStore(harness, keys: 0..<20)
        defer { try? store.close() }
        // Written after the flush: in the memtable.
        try store.put(TestBytes.key(30), TestBytes.value(30, size: Self.valueBytes), durable: false)
        let head = 10
        let big = Self.valueBytes - head
        // key, room (nil: none), the value expected, whether it is placed.
        let cases: [(key: [UInt8], room: Int?, value: [UInt8]?, placed: Bool)] = [
            (TestBytes.key(3), big, TestBytes.value(3, size: Self.valueBytes), true),
            (TestBytes.key(4), big + 5, TestBytes.value(4, size: Self.valueBytes), true),
            (TestBytes.key(5), big, TestBytes.value(5, size: Self.valueBytes), true),
            (TestBytes.key(9), big, TestBytes.value(9, size: Self.valueBytes), true),
            (TestBytes.key(100_007), 100, [UInt8(7)], false),
            (TestBytes.key(8), 100, TestBytes.value(8, size: Self.valueBytes), false),
            (TestBytes.key(10), nil, TestBytes.value(10, size: Self.valueBytes), false),
            (TestBytes.key(30), big, TestBytes.value(30, size: Self.valueBytes), false),
            (TestBytes.key(55), big, nil, false),
            (TestBytes.key(11), big, TestBytes.value(11, size: Self.valueBytes), true),
        ]
        func readAll(_ reader: any KVReader) throws -> [(value: [UInt8]?, placed: Int?, calls: Int)] {
            var rooms = cases.map { [UInt8](repeating: 0, count: $0.room ?? 0) }
            var got = [(value: [UInt8]?, placed: Int?, calls: Int)](repeating: (nil, nil, 0), count: cases.count)
            try withRooms(&rooms) { tails in
                try reader.withValues(cases.map(\.key), head: head, tails: cases.indices.map { cases[$0].room == nil ? nil : tails[$0] }) { index, value, placed in
                    got[index].calls += 1
                    got[index].placed = placed
                    got[index].value = value.map { Array($0) + Array(tails[index][..<(placed ?? 0)]) }
                }
            }
            return got
        }
        let view = try store.readView()
        defer { view.close() }
        for (name, reader) in [("store", store as any KVReader), ("read view", view)] {
            let got = try readAll(reader)
            for (k, expected) in cases.enumerated() {
                #expect(got[k].calls == 1, "\(name), case \(k): \(got[k].calls) calls")
                #expect(got[k].value == expected.value, "\(name), case \(k): other bytes")
                #expect((got[k].placed != nil) == expected.placed, "\(name), case \(k): placed \(String(describing: got[k].placed))")
                if expected.placed { #expect(got[k].placed == big) }
            }
        }

        // Not one room per key: refused.
        #expect {
            try store.withValues([TestBytes.key(3), TestBytes.key(4)], head: head, tails: [nil]) { _, _, _ in }
        } throws: { error in
            (error as? KVError)?.code == .invalidArgument
        }

        // Flip one byte of value 5's tail where the segment holds it.
        let file = path + "/objects/" + WALFormat.name(try #require(segments.min()))
        let bytes = try #require(FileManager.default.contents(atPath: file))
        let at = try #require(Array(bytes).firstRange(of: TestBytes.value(5, size: Self.valueBytes))?.lowerBound)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
        try handle.seek(toOffset: UInt64(at + 100))
        try handle.write(contentsOf: [bytes[at + 100] ^ 0x40])
        try handle.close()
        #expect {
            var rooms = [[UInt8](repeating: 0, count: big), [UInt8](repeating: 0, count: big)]
            try withRooms(&rooms) { tails in
                try store.withValues([TestBytes.key(4), TestBytes.key(5)], head: head, tails: tails) { _, _, _ in }
            }
        } throws: { error in
            (error as? KVError)?.code == .corruption && "\(error)".contains("value checksum mismatch")
        }
    }

    /// Runs `body` with the rooms' memory.
    func withRooms(_ rooms: inout [[UInt8]], _ body: ([UnsafeMutableRawBufferPointer]) throws -> Void) throws {
        func nest(_ k: Int, _ held: [UnsafeMutableRawBufferPointer], _ rooms: inout [[UInt8]]) throws {
            guard k < rooms.count else { return try body(held) }
            var room = rooms[k]
            try room.withUnsafeMutableBytes { raw in try nest(k + 1, held + [raw], &rooms) }
            rooms[k] = room
        }
        try nest(0, [], &rooms)
    }

    @Test func aDamagedValueIsReportedAndNotReturned() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, path, segments) = try pointingStore(harness, keys: 0..<20)
        let segment = try #require(segments.min())
        // Flip one byte of value 5 where the segment holds it.
        let file = path + "/objects/" + WALFormat.name(segment)
        let bytes = try #require(FileManager.default.contents(atPath: file))
        let value = TestBytes.value(5, size: Self.valueBytes)
        let at = try #require(Array(bytes).firstRange(of: value)?.lowerBound)
        // In place: the open table reads the segment through its own descriptor.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
        try handle.seek(toOffset: UInt64(at + 100))
        try handle.write(contentsOf: [bytes[at + 100] ^ 0x40])
        try handle.close()
        #expect {
            _ = try store.get(TestBytes.key(5))
        } throws: { error in
            (error as? KVError)?.code == .corruption && "\(error)".contains("value checksum mismatch")
        }
        #expect(try store.get(TestBytes.key(6)) == TestBytes.value(6, size: Self.valueBytes))
        // A walk over keys reads no value (the filesystem deletes a large file's chunks so):
        // it passes the damaged one's length from its pointer, where a scan reports it.
        let range = KeyRange(start: TestBytes.key(0), end: TestBytes.key(20))
        var lengths: [Int] = []
        try store.scanKeys(range) { _, length in
            lengths.append(length)
            return true
        }
        #expect(lengths == Array(repeating: Self.valueBytes, count: 20))
        #expect {
            _ = try store.entries(range)
        } throws: { error in
            (error as? KVError)?.code == .corruption && "\(error)".contains("value checksum mismatch")
        }
        let report = try store.scrub { _ in true }
        #expect(report.failures.count == 1 && report.failures.first?.reason.contains("value checksum mismatch") == true, "\(report.failures)")
        // A missing segment is reported as corruption too; the store still opens.
        try store.close()
        try FileOps.removeTree(file)
        let reopened = try factory.open(at: path, options: options())
        #expect {
            _ = try reopened.get(TestBytes.key(6))
        } throws: { error in
            (error as? KVError)?.code == .corruption && "\(error)".contains("is missing")
        }
        #expect(try reopened.get(TestBytes.key(100_006)) == [6])
        try reopened.close()
    }

    @Test func checkpointsKeepTheSegmentsTheirTablesPointIntoAndRestoreCopiesThem() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, path, kept) = try pointingStore(harness, ["l0_compaction_trigger": "2"], checkpoint: "full")
        // Everything deleted and compacted away: only the checkpoint points into them.
        var batch = WriteBatch()
        batch.deleteRange(from: TestBytes.key(0), to: TestBytes.key(100))
        try store.write(batch, durable: false)
        try freeze(store)
        #expect(pointed(store).isDisjoint(with: kept))
        // One more commit, so a collection runs after the compaction let go of its inputs.
        try freeze(store)
        #expect(try store.get(TestBytes.key(1)) == nil)
        #expect(kept.isSubset(of: try segments(path)), "a segment the checkpoint points into was deleted")

        let frozen = try factory.openCheckpoint(at: path, named: "full", options: options())
        #expect(try frozen.get(TestBytes.key(9)) == TestBytes.value(9, size: Self.valueBytes))
        try frozen.close()

        let restored = harness.freshPath("restored")
        try factory.restoreCheckpoint(at: path, named: "full", to: restored)
        #expect(kept.isSubset(of: try segments(restored)))
        let clone = try factory.open(at: restored, options: options())
        // Nothing replayed: the copied segments hold values only.
        #expect(lsm(clone).state.withLock { lsm(clone).mem.entryCount } == 0)
        for i in 0..<100 { #expect(try clone.get(TestBytes.key(i)) == TestBytes.value(i, size: Self.valueBytes)) }
        // The clone writes WAL segments after the copied ones, which it never replays.
        try fill(clone, 100..<110)
        try clone.close()
        let again = try factory.open(at: restored, options: options())
        #expect(try again.entries().count == 2 * 110)
        #expect(try again.get(TestBytes.key(105)) == TestBytes.value(105, size: Self.valueBytes))
        try again.close()

        // Once the checkpoint goes, the next commit's collection deletes the segments.
        try store.deleteCheckpoint(named: "full")
        _ = try store.createCheckpoint(named: "later")
        try store.settleBackgroundWork()
        let left = try segments(path)
        #expect(kept.isDisjoint(with: left), "segments \(kept.intersection(left)) outlived their last pointer")
        try store.close()
    }

    @Test func mostlyDeadSegmentsAreEmptiedIntoTables() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, path, first) = try pointingStore(harness, ["l0_compaction_trigger": "2"])
        // 90 of the 100 values replaced by small ones: under half of the segments lives.
        for i in 0..<90 { try store.put(TestBytes.key(i), [1, 2, 3], durable: false) }
        try freeze(store)
        _ = try store.createCheckpoint(named: "collect")
        try store.settleBackgroundWork()
        #expect(pointed(store).isDisjoint(with: first), "tables still point into \(pointed(store).intersection(first))")
        #expect(first.isDisjoint(with: try segments(path)), "mostly dead segments were not deleted")
        for i in 0..<90 { #expect(try store.get(TestBytes.key(i)) == [1, 2, 3]) }
        for i in 90..<100 { #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: Self.valueBytes)) }
        try store.close()
    }

    /// A segment a checkpoint points into stays anyway: it is not emptied into tables,
    /// which would only write its live values a second time.
    @Test func segmentsACheckpointPointsIntoAreNotEmptied() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, _, first) = try pointingStore(harness, ["l0_compaction_trigger": "2"], checkpoint: "keep")
        for i in 0..<90 { try store.put(TestBytes.key(i), [1, 2, 3], durable: false) }
        try freeze(store)
        try freeze(store)
        #expect(first.isSubset(of: pointed(store)), "the current tables' values were written inline")
        #expect(lsm(store).segmentsToEmpty.withLock { $0 }.isDisjoint(with: first))
        for i in 90..<100 { #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: Self.valueBytes)) }
        try store.close()
    }

    /// Deleted values give their segments back once the store is idle, with no further
    /// writes: the idle flush takes the deletions to a table, L0 is compacted into what
    /// they hide, and the collection after the compaction deletes the segments.
    @Test func segmentsOfDeletedValuesGoWhenTheStoreIsIdle() throws {
        let harness = StoreHarness(factory)
        defer { harness.cleanUp() }
        let (store, path, first) = try pointingStore(harness, ["idle_flush_ms": "100", "wal_flush_interval_ms": "10"])
        // Enough deletions for an idle flush (`LSMStore.idleFlushDeletions`).
        for i in 0..<100 { try store.delete(TestBytes.key(i), durable: false) }
        for i in 0..<LSMStore.idleFlushDeletions { try store.delete(TestBytes.key(200_000 + i), durable: false) }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, try !first.isDisjoint(with: segments(path)) { Thread.sleep(forTimeInterval: 0.05) }
        let left = try segments(path)
        #expect(first.isDisjoint(with: left), "segments \(first.intersection(left)) outlived their values")
        #expect(try store.get(TestBytes.key(100_050)) == [50])
        #expect(try store.get(TestBytes.key(50)) == nil)
        try store.close()
    }

    @Test func manifestsWithoutValueReferencesStayVersionOne() throws {
        var manifest = Manifest()
        manifest.levels = [[TableMeta(id: 3, size: 100, smallest: [1], largest: [2], entries: 2, tombstones: 0)]]
        let plain = manifest.encode()
        #expect(plain[4] == 1)
        #expect(try Manifest.decode(plain, name: "m") == manifest)
        manifest.levels[0][0].valueRefs = [ValueRef(segment: 7, bytes: 65_536), ValueRef(segment: 9, bytes: 10)]
        let pointing = manifest.encode()
        #expect(pointing[4] == 2)
        #expect(try Manifest.decode(pointing, name: "m") == manifest)
        #expect(manifest.valueSegments == [7, 9])
        // Table ids of 2^24 or more (a writer epoch's range) need version 3, which binaries
        // keying their block cache by 24 bits of the id refuse; it reads as version 2.
        manifest.nextTableID = 1 << 40
        let wide = manifest.encode()
        #expect(wide[4] == 3)
        #expect(try Manifest.decode(wide, name: "m") == manifest)
        manifest.levels[0][0].valueRefs = []
        #expect(try Manifest.decode(manifest.encode(), name: "m") == manifest)
        var unknown = wide
        unknown[4] = 4
        #expect { try Manifest.decode(unknown, name: "m") } throws: { ($0 as? KVError)?.code == .unsupportedFormat }
    }
}
