// One compaction: merges input tables (newest first) into new tables for the next level.
// Output tables are cut at the target size between keys; range tombstones that must stay
// (something older lies below) are merged into disjoint ranges and clipped to each output
// table's span, so tables of one level never overlap. Output tables are also cut at each
// table of the output level that the inputs' range spans but that holds none of their
// keys (`cuts`): that table stays, and the outputs fit around it. Pointer entries (values
// kept in WAL segments) are copied as pointers, but for segments being emptied (`inline`).

import Engine
import ObjectStore

struct Compaction {
    let store: LSMStore
    let inputs: [TableReader]
    let keepDeletes: Bool
    /// The smallest keys of the output level's tables that stay, in order: no input key
    /// or tombstone falls inside them (`LSMStore.overlapping`).
    var cuts: [[UInt8]] = []
    /// WAL segments whose pointed values are written inline (mostly dead segments, so
    /// garbage collection can delete them); pointers into others are copied as they are.
    var inline: Set<UInt64> = []

    func run() throws -> [TableReader] {
        let sources: [MergeCursor] = inputs.map { TableMergeCursor($0, fillCache: false) }
        var stream = MergedStream(sources, keepDeletes: keepDeletes)
        try stream.seekToFirst()
        var tombstones = keepDeletes ? LSMStore.disjoint(inputs.flatMap { $0.tombstones.map { ($0.start, $0.end) } }) : []
        var outputs: [TableReader] = []
        var spanStart: [UInt8]? = nil
        var current: (id: UInt64, writer: any ObjectWriter, builder: TableBuilder)?

        func startTable() throws {
            let id = try store.allocateTableID()
            let writer = try store.objects.makeWriter(TableMeta.name(id))
            current = (id, writer, TableBuilder(options: store.options.table) { try writer.append($0) })
        }

        func finishTable(endingBefore boundary: [UInt8]?) throws {
            // Tombstone pieces inside [spanStart, boundary) belong to this table.
            var kept: [(start: [UInt8], end: [UInt8])] = []
            while let first = tombstones.first {
                if let boundary, Bytes.compare(first.start, boundary) >= 0 { break }
                var piece = first
                if let spanStart, Bytes.compare(piece.start, spanStart) < 0 { piece.start = spanStart }
                if let boundary, Bytes.compare(piece.end, boundary) > 0 {
                    tombstones[0].start = boundary
                    piece.end = boundary
                } else {
                    tombstones.removeFirst()
                }
                if Bytes.compare(piece.start, piece.end) < 0 { kept.append(piece) }
            }
            if current == nil && !kept.isEmpty { try startTable() }
            guard var table = current else { return }
            for t in kept { table.builder.addTombstone(t.start, t.end) }
            current = nil
            guard !table.builder.isEmpty else {
                table.writer.abort()
                store.inFlightTables.withLock { _ = $0.remove(table.id) }
                return
            }
            let (_, meta) = try table.builder.finish(id: table.id)
            try table.writer.commit()
            outputs.append(try store.openTable(meta))
            spanStart = boundary
        }

        do {
            var nextCut = 0
            while stream.isValid {
                let key = stream.key
                // A table that stays lies before this key: end the output there.
                while nextCut < cuts.count, Bytes.compare(cuts[nextCut], key) <= 0 {
                    try finishTable(endingBefore: cuts[nextCut])
                    nextCut += 1
                }
                // Reads through the optional: `if let` would copy the builder per entry.
                if let size = current?.builder.estimatedSize, size >= store.options.tableTargetBytes {
                    try finishTable(endingBefore: Array(key))
                }
                if current == nil { try startTable() }
                let source = stream.source
                if source.isPointer, !source.isDelete, let pointer = ValuePointer(source.storedValue), !inline.contains(pointer.segment) {
                    try current!.builder.add(key, source.storedValue, isDelete: false, isPointer: true)
                } else {
                    try current!.builder.add(key, source.isDelete ? source.storedValue : try source.value, isDelete: source.isDelete)
                }
                try stream.step()
            }
            // Cuts past the last key still end tables: tombstones past a table that stays
            // go after it, not into one output spanning it.
            while nextCut < cuts.count {
                try finishTable(endingBefore: cuts[nextCut])
                nextCut += 1
            }
            try finishTable(endingBefore: nil)
        } catch {
            if let table = current {
                table.writer.abort()
                store.inFlightTables.withLock { _ = $0.remove(table.id) }
            }
            for table in outputs { store.inFlightTables.withLock { _ = $0.remove(table.meta.id) } }
            throw error
        }
        // The outputs stay in flight (kept by garbage collection) until the caller has
        // committed them: the merge runs without the manifest lock, so a collection can
        // come between its end and the commit.
        return outputs
    }
}
