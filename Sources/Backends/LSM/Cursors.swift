// The sources a merging iterator combines: a memtable at a sequence number, one L0 table,
// or one whole deeper level. Each yields every key once with its newest version in that
// source, deletions included, and says whether its range tombstones hide a key of an
// older source. `key` and `value` stay valid until the source moves.

import Engine

protocol MergeCursor: AnyObject {
    var isValid: Bool { get }
    func seekToFirst() throws
    func seek(_ key: UnsafeRawBufferPointer) throws
    func step() throws
    /// REQUIRES: isValid.
    var key: UnsafeRawBufferPointer { get }
    /// The value; a table's pointer entry is read from its WAL segment.
    var value: UnsafeRawBufferPointer { get throws }
    /// The value as stored: for a pointer entry, the pointer.
    var storedValue: UnsafeRawBufferPointer { get }
    var isDelete: Bool { get }
    /// The entry is a pointer to its value in a WAL segment (ValueLog.swift).
    var isPointer: Bool { get }
    /// Whether this source's range tombstones hide `key` in every older source.
    func hides(_ key: UnsafeRawBufferPointer) -> Bool
    var hasTombstones: Bool { get }
}

final class MemtableMergeCursor: MergeCursor {
    private var cursor: MemtableCursor
    private let table: Memtable
    private let seq: UInt64
    let hasTombstones: Bool
    private(set) var isDelete = false

    init(_ table: Memtable, seq: UInt64) {
        self.table = table
        self.seq = seq
        cursor = MemtableCursor(table, seq: seq)
        hasTombstones = table.hasRangeDeletes
    }

    private(set) var isValid = false
    private(set) var key = UnsafeRawBufferPointer(start: nil, count: 0)
    var value: UnsafeRawBufferPointer { Memtable.value(cursor.node!) }
    var storedValue: UnsafeRawBufferPointer { Memtable.value(cursor.node!) }
    var isPointer: Bool { false }

    private func classify() {
        guard let node = cursor.node else {
            isValid = false
            return
        }
        isValid = true
        key = Memtable.key(node)
        isDelete = Memtable.isDelete(node)
            || (hasTombstones && table.rangeDeleteSeq(Memtable.key(node), atOrBelow: seq) > Memtable.seq(node))
    }

    func seekToFirst() {
        cursor.seekToFirst()
        classify()
    }

    func seek(_ key: UnsafeRawBufferPointer) {
        cursor.seek(key)
        classify()
    }

    func step() {
        cursor.step()
        classify()
    }

    func hides(_ key: UnsafeRawBufferPointer) -> Bool {
        hasTombstones && table.rangeDeleteSeq(key, atOrBelow: seq) > 0
    }
}

final class TableMergeCursor: MergeCursor {
    private let cursor: TableCursor
    let table: TableReader
    let hasTombstones: Bool

    init(_ table: TableReader, fillCache: Bool = true) {
        self.table = table
        cursor = TableCursor(table, fillCache: fillCache)
        hasTombstones = !table.tombstones.isEmpty
    }

    private(set) var isValid = false
    private(set) var key = UnsafeRawBufferPointer(start: nil, count: 0)
    var isDelete: Bool { cursor.isDelete }
    var value: UnsafeRawBufferPointer { get throws { try cursor.value } }
    var storedValue: UnsafeRawBufferPointer { cursor.storedValue }
    var isPointer: Bool { cursor.isPointer }

    @inline(__always) private func refresh() {
        isValid = cursor.isValid
        if isValid { key = cursor.key }
    }

    func seekToFirst() throws {
        try cursor.seekToFirst()
        refresh()
    }

    func seek(_ key: UnsafeRawBufferPointer) throws {
        try cursor.seek(key)
        refresh()
    }

    func step() throws {
        try cursor.step()
        refresh()
    }

    func hides(_ key: UnsafeRawBufferPointer) -> Bool { table.tombstoneCovers(key) }
}

/// A whole level (>= 1): its tables in key order, read one after another.
final class LevelMergeCursor: MergeCursor {
    private let tables: [TableReader]
    private let version: Version
    private let level: Int
    private var index = 0
    private var cursor: TableCursor?
    let hasTombstones: Bool
    private let fillCache: Bool

    init(version: Version, level: Int, fillCache: Bool = true) {
        self.version = version
        self.level = level
        tables = version.levels[level]
        hasTombstones = tables.contains { !$0.tombstones.isEmpty }
        self.fillCache = fillCache
    }

    private(set) var isValid = false
    private(set) var key = UnsafeRawBufferPointer(start: nil, count: 0)
    var isDelete: Bool { cursor!.isDelete }
    var value: UnsafeRawBufferPointer { get throws { try cursor!.value } }
    var storedValue: UnsafeRawBufferPointer { cursor!.storedValue }
    var isPointer: Bool { cursor!.isPointer }

    @inline(__always) private func refresh() {
        if let cursor, cursor.isValid {
            isValid = true
            key = cursor.key
        } else {
            isValid = false
        }
    }

    private func open(_ i: Int) {
        index = i
        cursor = i < tables.count ? TableCursor(tables[i], fillCache: fillCache) : nil
    }

    private func skipExhausted() throws {
        while let c = cursor, !c.isValid, index + 1 < tables.count {
            open(index + 1)
            try cursor?.seekToFirst()
        }
    }

    func seekToFirst() throws {
        open(0)
        try cursor?.seekToFirst()
        try skipExhausted()
        refresh()
    }

    func seek(_ key: UnsafeRawBufferPointer) throws {
        var lo = 0
        var hi = tables.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Bytes.compare(tables[mid].meta.largest, key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        open(lo)
        try cursor?.seek(key)
        try skipExhausted()
        refresh()
    }

    @inline(__always)
    func step() throws {
        guard let cursor else { return }
        try cursor.step()
        if !cursor.isValid { try skipExhausted() }
        refresh()
    }

    func hides(_ key: UnsafeRawBufferPointer) -> Bool {
        guard hasTombstones, let table = version.table(level: level, covering: key) else { return false }
        return table.tombstoneCovers(key)
    }
}

/// Merges sources (newest first) into one ordered stream of visible entries: for each key
/// the newest source's entry, unless it is a deletion or a newer source's range
/// tombstone hides it. With `keepDeletes` (compaction), deletions are yielded too.
/// `key` and `source.value` stay valid until the stream moves.
struct MergedStream {
    private let sources: ContiguousArray<MergeCursor>
    private let anyTombstones: Bool
    private(set) var winner = -1
    /// Sources positioned at the winner's key besides the winner (found by `settle`).
    private var ties: ContiguousArray<Int> = []
    let keepDeletes: Bool

    init(_ sources: [MergeCursor], keepDeletes: Bool = false) {
        self.sources = ContiguousArray(sources)
        anyTombstones = sources.contains { $0.hasTombstones }
        self.keepDeletes = keepDeletes
        ties.reserveCapacity(sources.count)
    }

    var isValid: Bool { winner >= 0 }
    var source: MergeCursor { sources[winner] }
    var key: UnsafeRawBufferPointer { sources[winner].key }

    mutating func seekToFirst() throws {
        for s in sources { try s.seekToFirst() }
        try settle()
    }

    mutating func seek(_ key: UnsafeRawBufferPointer) throws {
        for s in sources { try s.seek(key) }
        try settle()
    }

    /// Moves past the current key in every source, then settles on the next visible one.
    mutating func step() throws {
        guard winner >= 0 else { return }
        try advancePast()
        try settle()
    }

    /// Steps every source positioned at the winner's key.
    private func advancePast() throws {
        for i in ties { try sources[i].step() }
        try sources[winner].step()
    }

    /// Whether a source newer than `rank` hides `key`.
    private func hidden(_ key: UnsafeRawBufferPointer, below rank: Int) -> Bool {
        guard anyTombstones else { return false }
        for r in 0..<rank where sources[r].hasTombstones && sources[r].hides(key) { return true }
        return false
    }

    /// Finds the smallest key (the newest source wins a tie) and the sources tied with it.
    private mutating func settle() throws {
        while true {
            var best = -1
            var bestKey = UnsafeRawBufferPointer(start: nil, count: 0)
            ties.removeAll(keepingCapacity: true)
            for i in 0..<sources.count {
                let s = sources[i]
                guard s.isValid else { continue }
                let k = s.key
                if best < 0 {
                    best = i
                    bestKey = k
                    continue
                }
                let c = Bytes.compare(k, bestKey)
                if c < 0 {
                    best = i
                    bestKey = k
                    ties.removeAll(keepingCapacity: true)
                } else if c == 0 {
                    ties.append(i)
                }
            }
            winner = best
            guard best >= 0 else { return }
            let visible = !hidden(bestKey, below: best)
            if visible && (keepDeletes || !sources[best].isDelete) { return }
            try advancePast()
        }
    }
}
