// A Version is one immutable set of open tables (L0 newest first, deeper levels sorted by
// key and not overlapping). Readers hold the Version they started with, which keeps its
// tables open and their files from garbage collection until the readers are released.

import Engine
import ObjectStore

final class Version: Sendable {
    let levels: [[TableReader]]
    let hasTombstones: Bool
    /// The most L0 tables whose ranges hold one key: what a point read may have to visit
    /// in L0. A flush that cuts a memtable into tables of disjoint ranges adds one, as a
    /// single table does.
    let l0Depth: Int

    /// What the compaction and write-stall triggers count: the depth, or half the L0
    /// tables when there are more (so disjoint tables of sorted loads still move down).
    var l0Pressure: Int { max(l0Depth, (levels[0].count + 1) / 2) }

    init(levels: [[TableReader]]) {
        var padded = levels
        if padded.isEmpty { padded = [[]] }
        self.levels = padded
        hasTombstones = padded.contains { $0.contains { !$0.tombstones.isEmpty } }
        l0Depth = Self.depth(padded[0].map(\.meta))
    }

    /// The most ranges of `metas` that share a key (ends count as inclusive, also an
    /// exclusive tombstone end: erring towards compacting sooner).
    static func depth(_ metas: [TableMeta]) -> Int {
        guard metas.count > 1 else { return metas.count }
        // Starts before ends at equal keys: touching inclusive ranges share that key.
        let points = metas.flatMap { [($0.smallest, 0), ($0.largest, 1)] }.sorted {
            let c = Bytes.compare($0.0, $1.0)
            return c != 0 ? c < 0 : $0.1 < $1.1
        }
        var open = 0
        var most = 0
        for (_, kind) in points {
            if kind == 0 {
                open += 1
                most = max(most, open)
            } else {
                open -= 1
            }
        }
        return most
    }

    var metas: [[TableMeta]] { levels.map { $0.map(\.meta) } }
    var tableCount: Int { levels.reduce(0) { $0 + $1.count } }

    /// The table of level `level` (>= 1) whose range may hold `key`.
    func table(level: Int, covering key: UnsafeRawBufferPointer) -> TableReader? {
        let tables = levels[level]
        var lo = 0
        var hi = tables.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if Bytes.compare(tables[mid].meta.largest, key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        // Ranges may touch (an exclusive end equal to the next table's first key).
        while lo < tables.count, !tables[lo].meta.covers(key) {
            guard Bytes.compare(key, tables[lo].meta.smallest) >= 0 else { return nil }
            lo += 1
        }
        return lo < tables.count ? tables[lo] : nil
    }

    /// Looks `key` up, newest table first; stops at the first table that knows the key.
    func get<R>(
        _ key: UnsafeRawBufferPointer, pointed: ((any ReadableObject, ValuePointer, String) throws -> R)? = nil,
        _ read: (UnsafeRawBufferPointer) throws -> R
    ) throws -> Lookup<R> {
        for table in levels[0] {
            guard table.meta.covers(key) else { continue }
            let found = try table.get(key, pointed: pointed, read)
            if case .absent = found { continue }
            return found
        }
        for level in 1..<levels.count {
            guard let table = table(level: level, covering: key) else { continue }
            let found = try table.get(key, pointed: pointed, read)
            if case .absent = found { continue }
            return found
        }
        return .absent
    }
}
