// The lsm write path around memtables and compaction: values kept in their batch's bytes,
// and flushes that commit while a compaction merges.

import Engine
import Foundation
import KVTestSupport
import ObjectStore
import Testing
@testable import LSMBackend

@Suite struct LSMWritePathTests {
    /// Each level's target grows by the multiplier and saturates: accepted settings whose
    /// product overflows (2^40 bytes times 100^4) must not wrap negative, which made every
    /// level look over its target and a compaction index an empty level.
    @Test func levelTargetsSaturateInsteadOfWrapping() throws {
        var backend = BackendOptions()
        backend.tuning = ["level1_bytes": "\(1 << 40)", "level_multiplier": "100"]
        let options = try LSMOptions(backend)
        var previous = 0
        for level in 1...8 {
            let target = options.levelTarget(level)
            #expect(target >= previous && target > 0, "level \(level): \(target)")
            previous = target
        }
        #expect(options.levelTarget(5) == Int.max)
    }

    let factory = LSMBackendFactory()

    /// Large values stay in the bytes of the batch they came in, which the memtable keeps:
    /// the caller's batch going away, and memory churned after it, change nothing read.
    @Test func largeValuesOutliveTheBatchesTheyCameIn() throws {
        let store = try factory.open(objects: MemoryObjectStore(), options: BackendOptions())
        let sizes = [Memtable.inPlaceBytes - 1, Memtable.inPlaceBytes, 40_000, 300_000]
        for (i, size) in sizes.enumerated() {
            var batch = WriteBatch()
            batch.put(TestBytes.key(i), TestBytes.value(i, size: size))
            batch.put(TestBytes.key(100 + i), [UInt8(i)])
            // Durable: the WAL has written the batch and let go of it when this returns.
            try store.write(batch, durable: true)
        }
        // Reuse the freed memory with other bytes.
        for _ in 0..<64 { _ = [UInt8](repeating: 0xEE, count: 300_000) }
        for (i, size) in sizes.enumerated() {
            #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: size), "value of \(size) bytes")
            #expect(try store.get(TestBytes.key(100 + i)) == [UInt8(i)])
        }
        let entries = try store.entries()
        #expect(entries.count == 2 * sizes.count)
        for (i, size) in sizes.enumerated() {
            #expect(entries.first { $0.key == TestBytes.key(i) }?.value == TestBytes.value(i, size: size))
        }
        // And a flush writes them whole.
        _ = try store.createCheckpoint(named: "flushed")
        for (i, size) in sizes.enumerated() {
            #expect(try store.get(TestBytes.key(i)) == TestBytes.value(i, size: size))
        }
        try store.close()
    }

    /// A kept batch counts with its whole allocation, and a batch whose large values fill
    /// little of it is copied instead of kept (compressed file chunks in a batch sized for
    /// the raw data).
    @Test func keptBatchesCountWholeAndSparseOnesAreCopied() throws {
        let backend = try factory.open(objects: MemoryObjectStore(), options: BackendOptions())
        let store = try #require(backend as? LSMBackend).store
        func memtableBytes() -> Int { store.state.withLock { store.mem.approximateBytes } }
        var sparse = WriteBatch()
        sparse.reserve(1 << 20)
        for i in 0..<10 { sparse.put(TestBytes.key(i), TestBytes.value(i, size: 3000)) }
        let before = memtableBytes()
        try backend.write(sparse, durable: false)
        let copied = memtableBytes() - before
        #expect(copied > 30_000 && copied < 64 << 10, "copied: \(copied) bytes counted")
        var dense = WriteBatch()
        for i in 0..<32 { dense.put(TestBytes.key(100 + i), TestBytes.value(i, size: 32 << 10)) }
        let capacity = dense.rep.capacity
        try backend.write(dense, durable: false)
        #expect(memtableBytes() - before - copied >= capacity, "kept: its allocation of \(capacity) bytes counted")
        for i in 0..<10 { #expect(try backend.get(TestBytes.key(i)) == TestBytes.value(i, size: 3000)) }
        for i in 0..<32 { #expect(try backend.get(TestBytes.key(100 + i)) == TestBytes.value(i, size: 32 << 10)) }
        try backend.close()
    }

    /// A memtable that holds enough deletions and gets no write for `idle_flush_ms` is
    /// flushed, and L0 taken down; with 0, with puts alone or with a few deletions, not.
    @Test func anIdleMemtableIsFlushed() throws {
        for idle in [150, 0] {
            var options = BackendOptions()
            options.tuning = ["idle_flush_ms": "\(idle)", "wal_flush_interval_ms": "10"]
            let objects = MemoryObjectStore()
            let backend = try factory.open(objects: objects, options: options)
            let store = (backend as! LSMBackend).store
            let count = LSMStore.idleFlushDeletions + 10
            for i in 0..<count { try backend.put(TestBytes.key(i), TestBytes.value(i, size: 100), durable: false) }
            for i in 0..<10 { try backend.delete(TestBytes.key(i), durable: false) }
            if idle > 0 {
                // Puts and a few deletions stay.
                Thread.sleep(forTimeInterval: Double(idle) / 1000 * 4)
                #expect(store.state.withLock { store.mem.entryCount == count + 10 })
            }
            for i in 10..<count { try backend.delete(TestBytes.key(i), durable: false) }
            try backend.put(TestBytes.key(count), [7], durable: false)
            // With 0, longer than the default's second.
            let deadline = Date().addingTimeInterval(idle == 0 ? 3 : 10)
            // Flushed, and its table gone on down though L0 holds fewer than its trigger.
            func settled() -> Bool {
                store.state.withLock { store.mem.entryCount == 0 && store.version.levels[0].isEmpty && store.version.levels.count > 1 }
            }
            while Date() < deadline && !settled() { Thread.sleep(forTimeInterval: 0.02) }
            #expect(settled() == (idle > 0), "idle_flush_ms \(idle)")
            #expect(try backend.get(TestBytes.key(count)) == [7])
            #expect(try backend.get(TestBytes.key(5)) == nil)
            try backend.close()
        }
    }

    /// The WAL thread took the rotation request for an idle memtable, and a write came
    /// before it froze it: a writer that filled the memtable meanwhile left the request
    /// to it, so the memtable is frozen for its size all the same (and not as idle).
    @Test func anIdleRotationAWriteOvertookStillFreezesAFullMemtable() throws {
        var options = BackendOptions()
        // The WAL thread sleeps through the test: the rotations are the test's own calls.
        options.tuning = ["memtable_bytes": "65536", "idle_flush_ms": "0", "wal_flush_interval_ms": "60000"]
        let backend = try factory.open(objects: MemoryObjectStore(), options: options)
        defer { try? backend.close() }
        let store = (backend as! LSMBackend).store
        try backend.put(TestBytes.key(0), [0], durable: false)
        let idleSeq = store.state.withLock { store.lastSeq }
        try backend.put(TestBytes.key(1), [1], durable: false)
        func claim() { store.state.withLock { store.rotationWanted = true } }
        // A write came since, and the memtable is small: nothing is frozen.
        claim()
        store.rotateInBackground(idleSince: idleSeq)
        #expect(store.state.withLock { store.mem.entryCount } == 2)
        // Filled while the request was taken: the writer does not ask again.
        claim()
        for i in 2..<80 { try backend.put(TestBytes.key(i), TestBytes.value(i, size: 1000), durable: false) }
        #expect(store.state.withLock { store.mem.approximateBytes } >= 65536)
        store.rotateInBackground(idleSince: idleSeq)
        #expect(store.state.withLock { store.mem.entryCount } == 0)
        #expect(store.state.withLock { store.rotationWanted } == false)
        for i in 0..<80 { #expect(try backend.get(TestBytes.key(i)) != nil) }
    }

    /// A compaction merges without the manifest lock: a memtable frozen meanwhile is
    /// flushed and committed while the merge is still writing its tables, so writers do
    /// not wait for a flush that waits for a compaction.
    @Test func aFlushCommitsWhileACompactionMerges() throws {
        let objects = HeldObjectStore { name in
            return name.hasPrefix("sst/") && currentThreadName() == "lsm-compact"
        }
        var options = BackendOptions()
        options.tuning = [
            "memtable_bytes": "65536", "l0_compaction_trigger": "2", "l0_stop_trigger": "64",
            "wal_flush_interval_ms": "60000",
        ]
        let store = try factory.open(objects: objects, options: options)
        func newestManifest() throws -> String? { try objects.list(prefix: "manifest/").max() }
        // Keys in scrambled order, so that every memtable's table overlaps the others and
        // compaction has to merge them (no move by metadata).
        let fill: @Sendable (_ round: Int) throws -> Void = { round in
            for i in 0..<200 {
                let n = i * 7919 % 1000
                try store.put(TestBytes.key(n), TestBytes.value(n + round, size: 1000), durable: false)
            }
        }
        objects.gate.hold(true)
        try fill(0)
        #expect(objects.gate.waitForWaiter(timeout: 10), "no compaction started")
        let before = try newestManifest()
        // More than two memtables' worth: at least one more flush, on another thread, as the
        // writer may have to wait for it.
        let finished = DispatchSemaphore(value: 0)
        let writer = Thread {
            try? fill(1)
            try? fill(2)
            finished.signal()
        }
        writer.start()
        let deadline = Date().addingTimeInterval(10)
        while try newestManifest() == before && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(try newestManifest() != before, "no flush committed while the compaction was held")
        objects.gate.hold(false)
        #expect(finished.wait(timeout: .now() + 30) == .success, "the writer never finished")
        for i in 0..<200 {
            let n = i * 7919 % 1000
            #expect(try store.get(TestBytes.key(n)) == TestBytes.value(n + 2, size: 1000))
        }
        try store.close()
    }

    /// A compaction whose last key comes before a table of the output level that stays,
    /// with a range tombstone past that table: the outputs end at the table, so no output
    /// spans it (one that did hid its keys from point reads in that level).
    @Test func tombstonesPastATableThatStaysGoAfterIt() throws {
        let backend = try factory.open(objects: MemoryObjectStore(), options: BackendOptions())
        defer { try? backend.close() }
        let store = try #require(backend as? LSMBackend).store
        var batch = WriteBatch()
        batch.put(Array("a".utf8), [1])
        batch.deleteRange(from: Array("x".utf8), to: Array("y".utf8))
        try backend.write(batch, durable: false)
        _ = try backend.createCheckpoint(named: "flushed")
        let inputs = store.state.withLock { store.version.levels[0] }
        try #require(inputs.count == 1)
        // A table [m, n] of the output level stays: the outputs are cut at "m".
        let outputs = try Compaction(store: store, inputs: inputs, keepDeletes: true, cuts: [Array("m".utf8)]).run()
        defer { store.inFlightTables.withLock { for table in outputs { _ = $0.remove(table.meta.id) } } }
        #expect(!outputs.isEmpty)
        for table in outputs {
            #expect(!LSMStore.overlaps(table.meta, Array("m".utf8), Array("n".utf8)),
                    "output \(table.meta.smallest)...\(table.meta.largest) spans the table that stays")
        }
        #expect(outputs.contains { !$0.tombstones.isEmpty }, "the tombstone was lost")
    }
}
