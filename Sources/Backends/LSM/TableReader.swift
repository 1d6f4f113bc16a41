// Reads a table: the footer, index, filter, tombstones and properties are loaded at open
// and kept; data blocks come through the block cache. See TableBuilder.swift for the
// layout. Every structural problem is a `.corruption` error naming the table.

import Engine
import ObjectStore
import Synchronization

/// The result of looking a key up in one source.
enum Lookup<Value> {
    case absent
    case value(Value)
    case deleted
}

final class TableReader: Sendable {
    let meta: TableMeta
    let object: any ReadableObject
    let index: Block
    let filter: [UInt8]
    /// Range tombstones sorted by start: [start, end).
    let tombstones: [(start: [UInt8], end: [UInt8])]
    let prefixLengths: Set<Int>
    /// Keys entered into the filter also without this many last bytes (0: none).
    let versionSuffix: Int
    private let cache: BlockCache
    /// Entries recently found here by point reads (RowCache).
    private let rows: RowCache
    /// Where pointer entries' values are read (nil: a pointer entry is corruption).
    let values: ValueLog?
    /// The WAL segments the table points into, open while the table is.
    private let segments: [UInt64: any ReadableObject]

    init(meta: TableMeta, object: any ReadableObject, cache: BlockCache, values: ValueLog? = nil) throws {
        self.meta = meta
        self.object = object
        self.cache = cache
        self.values = values
        rows = RowCache(budget: cache.rows)
        segments = values?.open(meta.valueRefs) ?? [:]
        let name = object.name
        // Another table under the same name (one a fenced writer wrote late) passes every
        // checksum of its own: its size tells it apart from the one the manifest names.
        guard object.size == meta.size else {
            throw KVError(.corruption, "table holds \(object.size) bytes, its manifest says \(meta.size)", path: name)
        }
        guard object.size >= TableFormat.footerSize else { throw KVError(.corruption, "table is too short", path: name) }
        let footer: [UInt8]
        do { footer = try object.read(offset: object.size - TableFormat.footerSize, length: TableFormat.footerSize) } catch {
            throw error as? KVError ?? KVError(.io, "read failed", path: name)
        }
        var reader = footer.withUnsafeBytes { ByteReader($0, what: name) }
        var handles: [(Int, Int)] = []
        var version: UInt32 = 0
        var magic: UInt64 = 0
        try footer.withUnsafeBytes { raw in
            reader = ByteReader(raw, what: name)
            // Damaged bytes may hold any offset: one past Int.max becomes -1, which the
            // check below refuses, instead of trapping here before the magic is seen.
            for _ in 0..<4 { handles.append((Int(truncatingIfNeeded: try reader.fixed64()), Int(try reader.fixed32()))) }
            version = try reader.fixed32()
            magic = try reader.fixed64()
        }
        guard magic == TableFormat.magic else { throw KVError(.corruption, "not a table (bad magic number)", path: name) }
        guard version == TableFormat.version else { throw KVError(.unsupportedFormat, "table format \(version) is not \(TableFormat.version)", path: name) }
        let body = object.size - TableFormat.footerSize
        for (offset, size) in handles where offset < 0 || size < BlockFrame.trailerSize || size > body || offset > body - size {
            throw KVError(.corruption, "table footer points outside the table", path: name)
        }
        func load(_ handle: (Int, Int)) throws -> [UInt8] {
            let stored: [UInt8]
            do { stored = try object.read(offset: handle.0, length: handle.1) } catch {
                throw error as? KVError ?? KVError(.io, "read failed", path: name)
            }
            return try BlockFrame.decode(stored, what: name)
        }
        filter = try load(handles[0])
        let tombBlock = try Block(try load(handles[1]), what: name)
        index = try Block(try load(handles[2]), what: name)
        var list: [(start: [UInt8], end: [UInt8])] = []
        let cursor = BlockCursor(tombBlock)
        cursor.seekToFirst()
        while cursor.isValid {
            list.append((Array(cursor.key), Array(cursor.value)))
            cursor.step()
        }
        if cursor.corrupt { throw KVError(.corruption, "tombstone block is malformed", path: name) }
        tombstones = list
        let props = try load(handles[3])
        var lengths: Set<Int> = []
        var suffix = 0
        try props.withUnsafeBytes { raw in
            var r = ByteReader(raw, what: name)
            _ = try r.int()
            _ = try r.int()
            _ = try r.byteArray()
            _ = try r.byteArray()
            for _ in 0..<(try r.int()) { lengths.insert(try r.int()) }
            // Tables written before the version filter existed end here.
            suffix = r.isAtEnd ? 0 : try r.int()
        }
        prefixLengths = lengths
        versionSuffix = suffix
    }

    var name: String { object.name }

    /// The data block at `handle` (offset, stored size), from the cache or the object
    /// (always the object with `fromDisk`, as scrub reads).
    func block(offset: Int, size: Int, fillCache: Bool = true, fromDisk: Bool = false) throws -> Block {
        let key = BlockCache.key(table: meta.id, offset: offset)
        if !fromDisk, let cached = cache.get(key) { return cached }
        let object = object
        // A miss may wait for the disk: the pool running this thread may then run another.
        // Not for a block the page cache holds: telling the pool wakes a thread for a
        // read of microseconds.
        let block = try Block.read(stored: size, what: name) { buffer in
            do {
                if try object.readIfReady(offset: offset, into: buffer) { return }
                try Blocking.during { () throws in try object.read(offset: offset, into: buffer) }
            } catch {
                throw error as? KVError ?? KVError(.io, "read failed", path: name)
            }
        }
        if fillCache { cache.insert(key, block) }
        return block
    }

    /// Whether a range tombstone of this table covers `key`.
    func tombstoneCovers(_ key: UnsafeRawBufferPointer) -> Bool {
        guard !tombstones.isEmpty else { return false }
        // Tombstones are sorted by start and, within a table, do not overlap.
        var lo = 0
        var hi = tombstones.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Bytes.compare(key, tombstones[mid].start) >= 0 { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0 else { return false }
        return Bytes.compare(key, tombstones[lo - 1].end) < 0
    }

    func mayContain(_ key: UnsafeRawBufferPointer) -> Bool {
        filter.withUnsafeBytes { BloomFilter.mayContain($0, BloomHash.hash(key)) }
    }

    /// Whether the table may hold a key starting with `prefix` (false means certainly not).
    func mayContainPrefix(_ prefix: [UInt8]) -> Bool {
        guard prefixLengths.contains(prefix.count) else { return true }
        return filter.withUnsafeBytes { f in prefix.withUnsafeBytes { BloomFilter.mayContain(f, BloomHash.hash($0) ^ 0x5052_4546) } }
    }

    /// Whether the table may hold a key that is `prefix` plus `suffixLength` bytes.
    func mayContainVersion(_ prefix: [UInt8], suffixLength: Int) -> Bool {
        guard versionSuffix == suffixLength else { return true }
        return filter.withUnsafeBytes { f in prefix.withUnsafeBytes { BloomFilter.mayContain(f, BloomHash.hash($0) ^ BloomHash.versionSeed) } }
    }

    /// Looks `key` up. The table's own entries win over its own range tombstones (a
    /// compaction keeps an entry beside a tombstone only when the entry is newer); the
    /// tombstones hide the key in older tables.
    /// Looks `key` up, copying a value out.
    func get(_ key: UnsafeRawBufferPointer) throws -> Lookup<[UInt8]> { try get(key) { Array($0) } }

    /// `read` gets the value's bytes in the block, valid only during the call; `pointed`,
    /// when given, gets a value kept in a WAL segment unread: where it lies.
    func get<R>(
        _ key: UnsafeRawBufferPointer, pointed: ((any ReadableObject, ValuePointer, String) throws -> R)? = nil,
        _ read: (UnsafeRawBufferPointer) throws -> R
    ) throws -> Lookup<R> {
        let hidden: Lookup<R> = tombstoneCovers(key) ? .deleted : .absent
        guard mayContain(key) else { return hidden }
        let hash = Bytes.hash64(key)
        switch rows.find(key, hash: hash) {
        case .value(let value): return .value(try value.withUnsafeBytes { try read($0) })
        case .deleted: return .deleted
        case .absent, nil: break
        }
        let indexCursor = BlockCursor(index)
        indexCursor.seek(key)
        guard indexCursor.isValid else {
            if indexCursor.corrupt { throw KVError(.corruption, "index block is malformed", path: name) }
            return hidden
        }
        let (offset, size) = try Self.handle(indexCursor.value, name)
        let cursor = BlockCursor(try block(offset: offset, size: size))
        cursor.seek(key)
        if cursor.corrupt { throw KVError(.corruption, "data block is malformed", path: name) }
        guard cursor.isValid, Bytes.compare(cursor.key, key) == 0 else { return hidden }
        if cursor.isDelete {
            rows.remember(key, hash: hash, value: nil)
            return .deleted
        }
        if cursor.isPointer {
            if let pointed {
                let located = try locate(cursor.value)
                return .value(try pointed(located.object, located.pointer, name))
            }
            return .value(try resolve(cursor.value).withUnsafeBytes { try read($0) })
        }
        rows.remember(key, hash: hash, value: cursor.value)
        return .value(try read(cursor.value))
    }

    /// The value a pointer entry of this table points at.
    func resolve(_ pointer: UnsafeRawBufferPointer) throws -> [UInt8] {
        try ValueLog.read(try locate(pointer), table: name)
    }

    /// Where a pointer entry's value lies (checked against its segment's size).
    func locate(_ pointer: UnsafeRawBufferPointer) throws -> (object: any ReadableObject, pointer: ValuePointer) {
        guard let values else { throw KVError(.corruption, "pointer entry in a store without WAL segments", path: name) }
        return try ValueLog.locate(pointer, in: { id in try self.segments[id] ?? values.segment(id) }, table: name)
    }

    /// Decodes a block handle (offset, stored size) from an index entry's value.
    static func handle(_ raw: UnsafeRawBufferPointer, _ name: String) throws -> (Int, Int) {
        var r = ByteReader(raw, what: name)
        return (try r.int(), try r.int())
    }
}

extension TableReader {
    /// Whether the table holds an entry (deletions included) or a range tombstone in
    /// [low, high]. Reads at most the data blocks around `low` (not into the cache).
    func hasEntries(from low: [UInt8], through high: [UInt8]) throws -> Bool {
        if tombstones.contains(where: { Bytes.compare($0.end, low) > 0 && Bytes.compare($0.start, high) <= 0 }) { return true }
        let cursor = TableCursor(self, fillCache: false)
        try low.withUnsafeBytes { try cursor.seek($0) }
        return cursor.isValid && Bytes.compare(cursor.key, high) <= 0
    }
}

/// Iterates a table's entries in order, deletions included (the merge decides). `key`
/// and `value` stay valid until the cursor moves.
final class TableCursor {
    let table: TableReader
    private let indexCursor: BlockCursor
    private var data: BlockCursor?
    let fillCache: Bool
    /// Read every block from the object, never the cache (scrub).
    var fromDisk = false

    init(_ table: TableReader, fillCache: Bool = true) {
        self.table = table
        indexCursor = BlockCursor(table.index)
        self.fillCache = fillCache
    }

    /// A pointed value read for `value` (`resolvedLength` bytes of `resolvedCapacity`),
    /// for the entry at `resolvedAt` (a count of the cursor's moves).
    private var resolved: UnsafeMutableRawPointer?
    private var resolvedCapacity = 0
    private var resolvedLength = 0
    private var steps = 0
    private var resolvedAt = -1

    deinit { resolved?.deallocate() }

    var isValid: Bool { data?.isValid ?? false }
    var key: UnsafeRawBufferPointer { data!.key }
    /// The entry's value, read from its WAL segment for a pointer entry.
    var value: UnsafeRawBufferPointer {
        get throws {
            guard data!.isPointer else { return data!.value }
            if resolvedAt != steps {
                let located = try table.locate(data!.value)
                let count = located.pointer.length
                if count > resolvedCapacity {
                    resolved?.deallocate()
                    resolvedCapacity = max(count, 2 * resolvedCapacity)
                    resolved = UnsafeMutableRawPointer.allocate(byteCount: resolvedCapacity, alignment: 16)
                }
                try ValueLog.read(located, into: UnsafeMutableRawBufferPointer(start: resolved, count: count), table: table.name)
                resolvedLength = count
                resolvedAt = steps
            }
            return UnsafeRawBufferPointer(start: resolved, count: resolvedLength)
        }
    }
    /// The value as stored: a pointer entry's pointer (compaction copies it as it is).
    var storedValue: UnsafeRawBufferPointer { data!.value }
    var isDelete: Bool { data!.isDelete }
    var isPointer: Bool { data!.isPointer }

    func seekToFirst() throws {
        steps += 1
        indexCursor.seekToFirst()
        try loadBlock()
        data?.seekToFirst()
        try skipEmpty()
    }

    func seek(_ target: UnsafeRawBufferPointer) throws {
        steps += 1
        indexCursor.seek(target)
        try loadBlock()
        data?.seek(target)
        try skipEmpty()
    }

    @inline(__always)
    func step() throws {
        guard let data else { return }
        steps += 1
        data.step()
        if !data.isValid { try skipEmpty() }
    }

    private func loadBlock() throws {
        guard indexCursor.isValid else {
            if indexCursor.corrupt { throw KVError(.corruption, "index block is malformed", path: table.name) }
            data = nil
            return
        }
        let (offset, size) = try TableReader.handle(indexCursor.value, table.name)
        let block = try table.block(offset: offset, size: size, fillCache: fillCache, fromDisk: fromDisk)
        if let data { data.reset(block) } else { data = BlockCursor(block) }
    }

    /// Moves past the end of a data block into the next one.
    private func skipEmpty() throws {
        while let d = data, !d.isValid {
            if d.corrupt { throw KVError(.corruption, "data block is malformed", path: table.name) }
            indexCursor.step()
            try loadBlock()
            data?.seekToFirst()
        }
    }
}

/// Entries one table's point reads found lately, so that reads coming back to the same
/// keys (a directory's inode and its entry are read at every lookup under it) skip the
/// index and block searches: about 4,000 instructions a read. A table never changes, so
/// an entry never goes stale; the cache goes with its table. Direct-mapped by a hash of
/// the key (a collision replaces the older entry); only small values (inodes, entries),
/// never a value kept in a WAL segment, and no misses.
final class RowCache: Sendable {
    static let slotCount = 256
    static let largestValue = 512
    /// What an entry costs besides its key and value bytes (their two arrays' headers).
    static let entryOverhead = 64

    private struct Slot: Sendable {
        let hash: UInt64
        let key: [UInt8]
        /// nil: a delete.
        let value: [UInt8]?
        /// Bytes charged to the budget for it.
        let cost: Int
    }

    private struct State: Sendable {
        /// Empty until the first entry (a table no point read finds anything in costs nothing).
        var slots: [Slot?] = []
        /// Bytes charged to the budget: the slots and every entry in them.
        var charged = 0
    }

    static let slotsBytes = slotCount * MemoryLayout<Slot?>.stride

    /// `Locked`, not `Mutex`: many workers read the same hot table (Locked.swift says why).
    private let state = Locked(State())
    let budget: RowBudget

    init(budget: RowBudget) {
        self.budget = budget
    }

    deinit {
        budget.give(state.withLock { $0.charged })
    }

    /// What the table holds for `key` (hashed to `hash`), when remembered: `.value` or
    /// `.deleted`; nil when not remembered.
    func find(_ key: UnsafeRawBufferPointer, hash: UInt64) -> Lookup<[UInt8]>? {
        let slot = state.withLock { $0.slots.isEmpty ? nil : $0.slots[Int(hash % UInt64(Self.slotCount))] }
        guard let slot, slot.hash == hash, Bytes.compare(slot.key, key) == 0 else { return nil }
        return slot.value.map { .value($0) } ?? .deleted
    }

    /// Remembers that the table holds `value` for `key` (nil: a delete), if the budget
    /// shared by the store's tables has room for it.
    func remember(_ key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer?) {
        if let value, value.count > Self.largestValue { return }
        let cost = key.count + (value?.count ?? 0) + Self.entryOverhead
        let slot = Slot(hash: hash, key: Array(key), value: value.map { Array($0) }, cost: cost)
        let index = Int(hash % UInt64(Self.slotCount))
        state.withLock { s in
            let fresh = s.slots.isEmpty
            let change = cost + (fresh ? Self.slotsBytes : 0) - (fresh ? 0 : s.slots[index]?.cost ?? 0)
            if change > 0 {
                guard budget.take(change) else { return }
            } else {
                budget.give(-change)
            }
            if fresh { s.slots = Array(repeating: nil, count: Self.slotCount) }
            s.slots[index] = slot
            s.charged += change
        }
    }
}

/// The bytes every row cache of one store holds together, against a limit: an entry that
/// would pass it is not remembered. A bound per table is none: every table stays open,
/// and their number grows with the store.
final class RowBudget: Sendable {
    let limit: Int
    private let used = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    var bytes: Int { used.load(ordering: .relaxed) }

    /// Charges `bytes` if they fit under the limit.
    func take(_ bytes: Int) -> Bool {
        if used.wrappingAdd(bytes, ordering: .relaxed).newValue <= limit { return true }
        used.wrappingSubtract(bytes, ordering: .relaxed)
        return false
    }

    func give(_ bytes: Int) {
        used.wrappingSubtract(bytes, ordering: .relaxed)
    }
}
