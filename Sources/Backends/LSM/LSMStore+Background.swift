// Background work of the LSM store, each on its own thread: writing buffered WAL records
// on an interval, flushing frozen memtables to L0 tables, and leveled compaction. Garbage
// collection, which the flush and compaction threads run, is LSMStore+GarbageCollection.swift.

import Engine
import Foundation
import ObjectStore

extension LSMStore {
    func startBackgroundThreads() {
        state.withLock { runningThreads = 3 }
        spawn("lsm-wal") { store in store.walLoop() }
        // Flushes and compactions yield the cores to the threads serving callers; when they
        // fall behind, writers wait for them (the throttle) and free the cores.
        spawn("lsm-flush", nice: 10) { store in store.flushLoop() }
        spawn("lsm-compact", nice: 10) { store in store.compactionLoop() }
    }

    private func spawn(_ name: String, nice: Int32 = 0, _ body: @escaping @Sendable (LSMStore) -> Void) {
        startThread(named: name, nice: nice) { [self] in
            body(self)
            state.withLock {
                runningThreads -= 1
                state.broadcast()
            }
        }
    }

    /// Stops the background threads (after the flush thread drains nothing more) and waits.
    func stopBackgroundThreads() {
        state.withLock {
            closing = true
            state.broadcast()
        }
        wal.withLock {
            wal.broadcast()
            walKick.signal()
        }
        state.withLock {
            while runningThreads > 0 { state.wait() }
        }
    }

    // MARK: WAL interval

    /// Writes buffered records every interval, or at once when writers report a full
    /// buffer (they signal `walKick`), and freezes the memtable when a writer found it full
    /// (`rotationWanted`; `rotateInBackground`).
    /// Deletions a memtable must hold for an idle flush: a few deleted files' worth (a
    /// small file's unlink deletes a handful of keys, a 200 MiB file's 6,400 chunks), so a
    /// client deleting a file now and then does not get a flush, a merge and a collection
    /// each time.
    static let idleFlushDeletions = 256

    private func walLoop() {
        let interval = Double(options.walFlushIntervalMillis) / 1000
        let idleFlush = Duration.milliseconds(options.idleFlushMillis)
        // The newest sequence number seen, and since when.
        var seen: (seq: UInt64, since: ContinuousClock.Instant) = (0, .now)
        while true {
            if state.withLock({ closing }) { return }
            let pending = wal.withLock { () -> UInt64 in
                if !walRotationKick && walPendingBytes < options.walBufferBytes { _ = walKick.wait(seconds: interval) }
                walRotationKick = false
                return walAppended > walWritten ? walAppended : 0
            }
            if options.idleFlushMillis > 0 {
                let now = ContinuousClock.now
                let idle = state.withLock { () -> Bool in
                    if lastSeq != seen.seq { seen = (lastSeq, now) }
                    guard now - seen.since >= idleFlush, immutables.isEmpty, !rotationWanted,
                          mem.deletions + mem.rangeDeleteCount >= Self.idleFlushDeletions else { return false }
                    rotationWanted = true
                    return true
                }
                if idle {
                    rotateInBackground(idleSince: seen.seq)
                    continue
                }
            }
            if state.withLock({ rotationWanted }) {
                rotateInBackground()
            } else if pending > 0 {
                try? flushWAL(upTo: pending, sync: false)
            }
        }
    }

    // MARK: Memtable flush

    private func flushLoop() {
        while true {
            let next: [Memtable] = state.withLock {
                while immutables.isEmpty && !closing { state.wait() }
                return closing ? [] : immutables
            }
            guard !next.isEmpty else { return }
            do {
                try flush(next)
            } catch {
                state.withLock {
                    backgroundError = error as? KVError ?? KVError(.io, "memtable flush failed", cause: "\(error)")
                    state.broadcast()
                }
                return
            }
        }
    }

    /// Writes frozen memtables, the oldest `tables.count` in order, as L0 tables and
    /// commits them in one new manifest. Each memtable makes one table, or, when it holds a
    /// run of at least a sixteenth of its size of keys with one first byte (the
    /// filesystem's file chunks: kind 0xFE), that run in a table of its own, apart from the
    /// keys around it (inode records and directory entries of the same moment). The tables
    /// of one memtable do not overlap, so a file written in order leaves chunk tables that
    /// later move down the levels by metadata alone (`moveTrivially`) instead of being
    /// merged with every memtable's inode record and rewritten.
    ///
    /// The flush thread takes every memtable frozen when it starts: when a large write
    /// freezes them faster than one flush's syncs take (each waits for the writeback of the
    /// WAL being filled), the next flush commits the ones that queued up meanwhile with the
    /// same number of syncs, rather than one flush per memtable with writers throttled
    /// behind (lsm.md, "Flush").
    func flush(_ tables: [Memtable]) throws {
        var ids: [UInt64] = []
        defer { inFlightTables.withLock { for id in ids { _ = $0.remove(id) } } }
        var writers: [any ObjectWriter] = []
        defer { for writer in writers { writer.abort() } }
        var metas: [TableMeta] = []
        var pointed: Set<UInt64> = []
        for table in tables {
            let written = try writeTables(table, ids: &ids)
            writers += written.writers
            // Newer memtables' tables go first in L0, ahead of older ones'.
            metas.insert(contentsOf: written.metas, at: 0)
            pointed.formUnion(written.pointed)
        }
        let last = tables[tables.count - 1]
        // The freeze may still be writing the last memtable's last records (rotateMemtable).
        try waitForWALWritten(last.walEnd)
        // The values the tables point at must be durable before a manifest names them.
        // Their sync and the tables' run together: each waits for the same writeback.
        struct Handed: @unchecked Sendable { let store: LSMStore; let writers: [any ObjectWriter] }
        let handed = Handed(store: self, writers: writers)
        let walEnd = last.walEnd
        let segments = pointed
        var syncs: [@Sendable () throws -> Void] = [{ try handed.store.objects.commit(handed.writers) }]
        if !segments.isEmpty { syncs.append { try handed.store.syncSealed(segments, orUpTo: walEnd) } }
        try runConcurrently(syncs)
        let readers = try metas.map { try openTable($0) }
        try manifestLock.withLock { _ in
            // Deleting the WAL segments this makes obsolete is left to the compaction
            // thread: with online discard a delete waits for the device, and the next
            // memtable's flush should not.
            try commit(removingImmutables: tables.count, collecting: false, idle: tables.contains { $0.frozenWhenIdle }) { _, levels in
                levels[0].insert(contentsOf: readers, at: 0)
            }
        }
    }

    /// Writes one frozen memtable's tables (`flush`), not yet committed: their writers, what
    /// each table will be, and the WAL segments they point into. Their ids join `ids`.
    private func writeTables(_ table: Memtable, ids: inout [UInt64]) throws -> (writers: [any ObjectWriter], metas: [TableMeta], pointed: Set<UInt64>) {
        let all = UInt64.max >> 8
        let rangeDeletes = table.rangeDeletes(atOrBelow: all)
        let tombstones = Self.disjoint(rangeDeletes.map { ($0.start, $0.end) })
        // Range deletes may span the cuts: such a memtable stays one table.
        let cuts = rangeDeletes.isEmpty ? Self.flushCuts(table, separating: max(options.memtableBytes / 16, 1)) : []
        let places = try valuePlaces(table)
        var writers: [any ObjectWriter] = []
        var handedOver = false
        defer { if !handedOver { for writer in writers { writer.abort() } } }
        var metas: [TableMeta] = []
        var pointed: Set<UInt64> = []
        var cursor = MemtableCursor(table, seq: all)
        cursor.seekToFirst()
        var nextCut = 0
        // At least one pass: a memtable of range deletes alone still leaves their table.
        repeat {
            let id = try allocateTableID()
            ids.append(id)
            let writer = try objects.makeWriter(TableMeta.name(id))
            var kept = false
            defer { if !kept { writer.abort() } }
            var builder = TableBuilder(options: options.table) { try writer.append($0) }
            while let node = cursor.node {
                let key = Memtable.key(node)
                if nextCut < cuts.count, cuts[nextCut].withUnsafeBytes({ Bytes.compare(key, $0) >= 0 }) {
                    while nextCut < cuts.count, cuts[nextCut].withUnsafeBytes({ Bytes.compare(key, $0) >= 0 }) { nextCut += 1 }
                    // This key starts the next table.
                    if !builder.isEmpty { break }
                }
                // A range delete of the same memtable newer than the entry hides it for good.
                if table.rangeDeleteSeq(key, atOrBelow: all) <= Memtable.seq(node) {
                    let value = Memtable.value(node)
                    if Memtable.isInPlace(node), value.count >= options.walValueMinBytes, let pointer = places.pointer(to: value) {
                        pointed.insert(pointer.segment)
                        try pointer.encoded().withUnsafeBytes { try builder.add(key, $0, isDelete: false, isPointer: true) }
                    } else {
                        try builder.add(key, value, isDelete: Memtable.isDelete(node))
                    }
                }
                cursor.step()
            }
            if cursor.node == nil { for t in tombstones { builder.addTombstone(t.start, t.end) } }
            if !builder.isEmpty {
                let (_, meta) = try builder.finish(id: id)
                writers.append(writer)
                metas.append(meta)
                kept = true
            }
        } while cursor.node != nil
        handedOver = true
        return (writers, metas, pointed)
    }

    /// Where the values a memtable keeps in place lie in WAL segments.
    struct ValuePlaces {
        /// Kept batches by address, with the segment and file offset of their bytes and
        /// the CRCs of their large values by offset in the batch.
        var batches: [(base: UnsafeRawPointer, count: Int, segment: UInt64, offset: Int, crcs: [Int: UInt32])] = []

        /// A pointer to `value`, which lies in a kept batch; nil when its batch's place is
        /// unknown (written as a whole object, or replayed).
        func pointer(to value: UnsafeRawBufferPointer) -> ValuePointer? {
            guard let start = value.baseAddress, !batches.isEmpty else { return nil }
            var lo = 0
            var hi = batches.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if batches[mid].base <= start { lo = mid + 1 } else { hi = mid }
            }
            guard lo > 0 else { return nil }
            let batch = batches[lo - 1]
            let delta = start - batch.base
            guard delta + value.count <= batch.count else { return nil }
            let crc = batch.crcs[delta] ?? CRC32C.checksum(value)
            return ValuePointer(segment: batch.segment, offset: batch.offset + delta, length: value.count, crc: CRC32C.mask(crc))
        }
    }

    /// The places of `table`'s kept batches, taken out of `walLocations` (with every entry
    /// of its records, kept or not). Waits for the memtable's records to be written.
    func valuePlaces(_ table: Memtable) throws -> ValuePlaces {
        guard options.walValues, objects is any AppendableObjectStore else { return ValuePlaces() }
        let kept = table.keptBatches()
        try waitForWALWritten(table.walEnd)
        let lastSeq = table.largestSeq
        let found = walLocations.withLock { locations -> [UInt64: WALLocation] in
            var found: [UInt64: WALLocation] = [:]
            for batch in kept { if let at = locations.removeValue(forKey: batch.seq) { found[batch.seq] = at } }
            // Large batches the memtable did not keep.
            locations = locations.filter { $0.key > lastSeq }
            return found
        }
        return ValuePlaces(batches: kept.compactMap { batch in
            found[batch.seq].map { (batch.base, batch.count, $0.segment, $0.offset, $0.crcs) }
        })
    }

    /// Where a flush of `table` starts a new table: before the keys of each first byte
    /// whose keys and values add up to at least `runBytes` (the memtable counts them as
    /// they come, so no pass over it is needed), and after them. Smaller runs stay
    /// together. Cuts are one-byte keys; one that no key reaches cuts nothing.
    static func flushCuts(_ table: Memtable, separating runBytes: Int) -> [[UInt8]] {
        var cuts: [[UInt8]] = []
        for (byte, bytes) in table.firstByteSizes.enumerated() where bytes >= runBytes {
            if cuts.last != [UInt8(byte)] { cuts.append([UInt8(byte)]) }
            if byte < 255 { cuts.append([UInt8(byte + 1)]) }
        }
        return cuts
    }

    func allocateTableID() throws -> UInt64 {
        // In flight before the id is visible to GC (which reads nextTableID first).
        state.withLock { () -> UInt64 in
            let id = nextTableID
            nextTableID += 1
            inFlightTables.withLock { _ = $0.insert(id) }
            return id
        }
    }

    /// Commits a new manifest made by `change` from the current state, then installs it;
    /// the oldest `removed` frozen memtables leave with it (their data is in a new table).
    /// REQUIRES: `manifestLock` is held (one commit at a time).
    /// With `idle`, an idle flush's commit: L0 as it then is gets compacted down
    /// (`idleCompaction`).
    func commit(removingImmutables removed: Int = 0, collecting: Bool = true, idle: Bool = false, _ change: (inout Manifest, inout [[TableReader]]) throws -> Void) throws {
        var (next, levels, id) = state.withLock { (manifest, version.levels, manifestID) }
        try change(&next, &levels)
        while levels.count > 1 && levels.last!.isEmpty { levels.removeLast() }
        next.levels = levels.map { $0.map(\.meta) }
        (next.lastSeq, next.nextTableID, next.walReplayFrom) = state.withLock {
            // Memtables frozen later only append, so this start can only be too early.
            (lastSeq, nextTableID, immutables.dropFirst(removed).first?.firstWAL ?? mem.firstWAL)
        }
        next.nextWALID = wal.withLock { nextWALID }
        next.tornWAL = next.tornWAL.filter { $0 >= next.walReplayFrom }
        let committed: UInt64
        (committed, next) = try Self.commitManifest(objects, next, from: id + 1) { taken in
            KVError(.fenced, "another writer took over this store (manifest \(taken) exists)", path: objects.location)
        }
        // WAL segments below the new replay start hold only records now in tables.
        let obsolete = wal.withLock { () -> [any AppendableObject] in
            let dropped = unsyncedSealed.filter { $0.id < next.walReplayFrom }.map(\.segment)
            unsyncedSealed.removeAll { $0.id < next.walReplayFrom }
            syncedSealed = syncedSealed.filter { $0 >= next.walReplayFrom }
            return dropped
        }
        for segment in obsolete { segment.seal() }
        let pointed = next.valueSegments
        if !pointed.isEmpty {
            pointedSegments.withLock { seen in for id in pointed where seen[id] == nil { seen[id] = .some(nil) } }
        }
        state.withLock {
            manifest = next
            manifestID = committed
            version = Version(levels: levels)
            immutables.removeFirst(removed)
            if version.l0Pressure >= options.l0CompactionTrigger { compactionPending = true }
            let level0 = Set(version.levels[0].map(\.meta.id))
            idleCompaction.withLock { $0 = idle ? level0 : $0.intersection(level0) }
            if idle { compactionPending = true }
            if !collecting { garbagePending = true }
            state.broadcast()
        }
        if collecting { collectGarbage() }
    }

    /// Sorted, non-overlapping ranges covering the same keys as `ranges`.
    static func disjoint(_ ranges: [([UInt8], [UInt8])]) -> [(start: [UInt8], end: [UInt8])] {
        let sorted = ranges.filter { Bytes.compare($0.0, $0.1) < 0 }.sorted { Bytes.compare($0.0, $1.0) < 0 }
        var result: [(start: [UInt8], end: [UInt8])] = []
        for (start, end) in sorted {
            if let last = result.last, Bytes.compare(start, last.end) <= 0 {
                if Bytes.compare(end, last.end) > 0 { result[result.count - 1].end = end }
            } else {
                result.append((start, end))
            }
        }
        return result
    }

    /// Waits until no frozen memtable waits for its flush and no compaction is due or
    /// running.
    func settle() throws {
        while true {
            let busy = try state.withLock { () throws -> Bool in
                if let backgroundError { throw backgroundError }
                if closing { throw KVError(.closed, "the store is closing") }
                return !immutables.isEmpty || compacting || pickCompaction(version, overlaps: false) != nil
            }
            guard busy else { return }
            Thread.sleep(forTimeInterval: 0.005)
        }
    }

    // MARK: Compaction

    private func compactionLoop() {
        while true {
            let (stop, collect) = state.withLock { () -> (Bool, Bool) in
                while !closing && !compactionPending && !garbagePending && pickCompaction(version, overlaps: false) == nil { _ = state.wait(seconds: 1) }
                defer { compactionPending = false; garbagePending = false }
                return (closing, garbagePending)
            }
            if stop { return }
            if collect { collectGarbage() }
            do {
                state.withLock { compacting = true }
                defer { state.withLock { compacting = false; state.broadcast() } }
                var compacted = false
                while try compactOnce() {
                    compacted = true
                    if state.withLock({ closing }) { return }
                }
                // The last commit's collection ran while the merge still held its input
                // tables (and the WAL segments they point into): collect again now.
                if compacted { collectGarbage() }
            } catch {
                state.withLock {
                    backgroundError = error as? KVError ?? KVError(.io, "compaction failed", cause: "\(error)")
                    state.broadcast()
                }
                return
            }
        }
    }

    struct CompactionPlan {
        var level: Int
        var inputs: [TableReader]  // newest first: L0 tables, then `level`, then `level + 1`
        var overlapping: [TableReader]  // the inputs from level + 1
        /// One table rewritten where it is, its values in `inline` segments written inline.
        var inPlace = false
        var inline: Set<UInt64> = []
    }

    /// The next compaction due, or nil. Without `overlaps` the plan leaves out the tables
    /// of the next level its inputs merge with (`overlapping`, which reads table blocks).
    /// Whether a compaction is due does not depend on them, and the waits that ask only
    /// that hold the state lock, which every write and read takes.
    func pickCompaction(_ version: Version, overlaps: Bool = true) -> CompactionPlan? {
        let levels = version.levels
        func overlapping(_ inputs: [TableReader], below level: Int) -> [TableReader] {
            overlaps && level + 1 < levels.count ? Self.overlapping(inputs, in: levels[level + 1]) : []
        }
        if version.l0Pressure >= options.l0CompactionTrigger {
            let inputs = levels[0]
            let below = overlapping(inputs, below: 0)
            return CompactionPlan(level: 0, inputs: inputs + below, overlapping: below)
        }
        for level in 1..<max(levels.count, 1) where level < options.maxLevels - 1 {
            let size = levels[level].reduce(0) { $0 + $1.meta.size }
            guard !levels[level].isEmpty, size > options.levelTarget(level) else { continue }
            // The table after the last one compacted at this level, round robin by key.
            let pointer = compactPointers.withLock { $0[level] }
            let table = levels[level].first { pointer == nil || Bytes.compare($0.meta.smallest, pointer!) > 0 } ?? levels[level][0]
            let below = overlapping([table], below: level)
            return CompactionPlan(level: level, inputs: [table] + below, overlapping: below)
        }
        // After an idle flush: L0 down, whatever its pressure, while a table it held stays.
        let idle = idleCompaction.withLock { $0 }
        if !idle.isEmpty, levels[0].contains(where: { idle.contains($0.meta.id) }) {
            let below = overlapping(levels[0], below: 0)
            return CompactionPlan(level: 0, inputs: levels[0] + below, overlapping: below)
        }
        // Nothing else is due: the table below L0 pointing at the most bytes in mostly dead
        // segments (L0 tables move down soon enough, and splitting one would add to L0).
        let emptying = segmentsToEmpty.withLock { $0 }
        guard !emptying.isEmpty else { return nil }
        var best: (level: Int, table: TableReader, bytes: Int)?
        for (level, tables) in levels.enumerated() where level > 0 {
            for table in tables {
                let bytes = table.meta.valueRefs.reduce(0) { $0 + (emptying.contains($1.segment) ? $1.bytes : 0) }
                if bytes > (best?.bytes ?? 0) { best = (level, table, bytes) }
            }
        }
        guard let best else { return nil }
        return CompactionPlan(level: best.level, inputs: [best.table], overlapping: [], inPlace: true, inline: emptying)
    }

    /// Marks the WAL segments whose values still in use fill less than half of them
    /// (`segmentsToEmpty`), leaving out segments a checkpoint points into (rewriting the
    /// current tables would not free those).
    func planSegmentRewrites(_ current: Manifest, pinned: Set<UInt64>) {
        var live: [UInt64: Int] = [:]
        for level in current.levels {
            for table in level { for ref in table.valueRefs { live[ref.segment, default: 0] += ref.bytes } }
        }
        var emptying: Set<UInt64> = []
        for (segment, bytes) in live where segment < current.walReplayFrom && !pinned.contains(segment) {
            if let size = valueLog.size(of: segment), bytes * 2 < size { emptying.insert(segment) }
        }
        segmentsToEmpty.withLock { $0 = emptying }
    }

    /// The tables of the next level that `inputs` must merge with: those holding a key
    /// that an input holds an entry or tombstone near. A table that the inputs' range only
    /// spans stays where it is: a file written in order puts its inode record (low keys)
    /// and its new chunks (high keys) in every memtable, and merging every table of its
    /// older chunks in between each time rewrote the whole file per flush. Compaction then
    /// cuts its output tables around the ones left in place (`Compaction.cuts`).
    static func overlapping(_ inputs: [TableReader], in tables: [TableReader]) -> [TableReader] {
        let (low, high) = range(of: inputs.map(\.meta))
        return tables.filter { table in
            guard overlaps(table.meta, low, high) else { return false }
            return inputs.contains { input in
                guard overlaps(input.meta, table.meta.smallest, table.meta.largest) else { return false }
                // A table that cannot be read here is merged: the compaction reports it.
                return (try? input.hasEntries(from: table.meta.smallest, through: table.meta.largest)) ?? true
            }
        }
    }

    static func range(of metas: [TableMeta]) -> ([UInt8], [UInt8]) {
        var low = metas[0].smallest
        var high = metas[0].largest
        for m in metas {
            if Bytes.compare(m.smallest, low) < 0 { low = m.smallest }
            if Bytes.compare(m.largest, high) > 0 { high = m.largest }
        }
        return (low, high)
    }

    static func overlaps(_ meta: TableMeta, _ low: [UInt8], _ high: [UInt8]) -> Bool {
        Bytes.compare(meta.largest, low) >= 0 && Bytes.compare(meta.smallest, high) <= 0
    }

    /// Runs one compaction if one is due; returns whether it did.
    ///
    /// The merge runs without the manifest lock, which only the pick and the commit take:
    /// holding it throughout made every memtable flush that finished meanwhile wait for
    /// the whole merge to commit, and writers, with the memtables full, for the flush
    /// (stalls of 4-9 ms in a 200 MiB NFS write while both cores idled). Nothing a commit
    /// in between can do invalidates the merge: flushes only add L0 tables, newer than
    /// every input, and the commit keeps them; levels below L0 change only on this thread;
    /// checkpoints only add or drop checkpoint records; and the inputs stay in the current
    /// manifest, so garbage collection keeps them, until the commit removes them.
    func compactOnce() throws -> Bool {
        // The merge to run, or nil: nothing was due, or a move by metadata already committed.
        typealias Job = (plan: CompactionPlan, bottom: Bool, cuts: [[UInt8]])
        var due = false
        let picked = try manifestLock.withLock { _ -> Job? in
            let current = state.withLock { version }
            guard let plan = pickCompaction(current) else { return nil }
            due = true
            if plan.inPlace { return (plan, false, []) }
            if try moveTrivially(plan, in: current) { return nil }
            let outputLevel = plan.level + 1
            let (low, high) = Self.range(of: plan.inputs.map(\.meta))
            // With nothing older below the output, deletions and tombstones can go.
            let bottom = !current.levels.indices.contains { $0 > outputLevel && current.levels[$0].contains { Self.overlaps($0.meta, low, high) } }
            // Tables of the output level that stay: the outputs are cut around them.
            let inputIDs = Set(plan.inputs.map(\.meta.id))
            let cuts = outputLevel < current.levels.count
                ? current.levels[outputLevel].filter { !inputIDs.contains($0.meta.id) && Self.overlaps($0.meta, low, high) }.map(\.meta.smallest)
                : []
            return (plan, bottom, cuts)
        }
        guard let (plan, bottom, cuts) = picked else { return due }
        let outputLevel = plan.inPlace ? plan.level : plan.level + 1
        let inputIDs = Set(plan.inputs.map(\.meta.id))
        let inline = plan.inline.union(segmentsToEmpty.withLock { $0 })
        let outputs = try Compaction(store: self, inputs: plan.inputs, keepDeletes: !bottom, cuts: cuts, inline: inline).run()
        defer { inFlightTables.withLock { for table in outputs { _ = $0.remove(table.meta.id) } } }
        try manifestLock.withLock { _ in
            if plan.level > 0 && !plan.inPlace {
                compactPointers.withLock { $0[plan.level] = plan.inputs[0].meta.largest }
            }
            let before = Self.paranoid ? try Self.contents(state.withLock { version }) : []
            try commit { _, levels in
                if plan.inPlace {
                    // The outputs take the input's place (in L0, its place in age).
                    guard let at = levels[plan.level].firstIndex(where: { $0.meta.id == plan.inputs[0].meta.id }) else {
                        throw KVError(.corruption, "table \(plan.inputs[0].meta.id) left level \(plan.level) during its rewrite")
                    }
                    levels[plan.level].replaceSubrange(at...at, with: plan.level == 0 ? outputs : outputs.sorted { Bytes.compare($0.meta.smallest, $1.meta.smallest) < 0 })
                    return
                }
                for i in levels.indices { levels[i].removeAll { inputIDs.contains($0.meta.id) } }
                while levels.count <= outputLevel { levels.append([]) }
                levels[outputLevel] = (levels[outputLevel] + outputs).sorted { Bytes.compare($0.meta.smallest, $1.meta.smallest) < 0 }
            }
            if Self.paranoid {
                let after = state.withLock { version }
                try Self.checkInvariants(after)
                let now = try Self.contents(after)
                if now != before {
                    throw KVError(.corruption, "paranoid check: compaction of level \(plan.level) (\(plan.inputs.map(\.meta.id))) changed the contents: \(before.count) -> \(now.count) entries")
                }
            }
        }
        return true
    }

    /// Inputs of the plan's own level that overlap no other input and nothing in the
    /// output level move down by metadata alone: no table is read or rewritten (sequential
    /// loads, and the chunk tables flushes cut apart from the metadata). The rest wait
    /// for the next pick. REQUIRES: `manifestLock` is held.
    private func moveTrivially(_ plan: CompactionPlan, in current: Version) throws -> Bool {
        let own = plan.inputs.filter { input in !plan.overlapping.contains { $0 === input } }
        let outputLevel = plan.level + 1
        let below = outputLevel < current.levels.count ? current.levels[outputLevel] : []
        let movable = own.filter { table in
            !own.contains { $0 !== table && Self.overlaps($0.meta, table.meta.smallest, table.meta.largest) }
                && !below.contains { Self.overlaps($0.meta, table.meta.smallest, table.meta.largest) }
        }
        guard !movable.isEmpty else { return false }
        let moved = Set(movable.map(\.meta.id))
        if plan.level > 0 {
            compactPointers.withLock { $0[plan.level] = plan.inputs[0].meta.largest }
        }
        try commit { _, levels in
            levels[plan.level].removeAll { moved.contains($0.meta.id) }
            while levels.count <= outputLevel { levels.append([]) }
            levels[outputLevel] = (levels[outputLevel] + movable).sorted { Bytes.compare($0.meta.smallest, $1.meta.smallest) < 0 }
        }
        if Self.paranoid { try Self.checkInvariants(state.withLock { version }) }
        return true
    }

    // MARK: Paranoid checks (ZEROFS_LSM_PARANOID=1, for debugging)

    static let paranoid = ProcessInfo.processInfo.environment["ZEROFS_LSM_PARANOID"] == "1"

    /// Every visible entry of a version's tables.
    static func contents(_ version: Version) throws -> [KVEntry] {
        var stream = MergedStream(version.levels[0].map { TableMergeCursor($0, fillCache: false) as MergeCursor }
            + (1..<version.levels.count).map { LevelMergeCursor(version: version, level: $0, fillCache: false) })
        try stream.seekToFirst()
        var result: [KVEntry] = []
        while stream.isValid {
            let source = stream.source
            result.append(KVEntry(key: Array(stream.key), value: Array(try source.value)))
            try stream.step()
        }
        return result
    }

    static func checkInvariants(_ version: Version) throws {
        for level in 1..<version.levels.count {
            let tables = version.levels[level]
            for i in 1..<max(tables.count, 1) where i < tables.count {
                let a = tables[i - 1].meta
                let b = tables[i].meta
                let c = Bytes.compare(a.largest, b.smallest)
                if c > 0 || (c == 0 && !a.largestExclusive) {
                    throw KVError(.corruption, "paranoid check: level \(level) tables \(a.id) and \(b.id) overlap")
                }
            }
        }
    }
}
