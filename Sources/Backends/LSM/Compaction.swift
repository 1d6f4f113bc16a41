// One compaction: merges input tables (newest first) into new tables for the next level.
// Output tables are cut at the target size between keys; range tombstones that must stay
// (something older lies below) are merged into disjoint ranges and clipped to each output
// table's span, so tables of one level never overlap.

import Engine

struct Compaction {
    let store: LSMStore
    let inputs: [TableReader]
    let keepDeletes: Bool

    func run() throws -> [TableReader] {
        let sources: [MergeCursor] = inputs.map { TableMergeCursor($0, fillCache: false) }
        var stream = MergedStream(sources, keepDeletes: keepDeletes)
        try stream.seekToFirst()
        var tombstones = keepDeletes ? LSMStore.disjoint(inputs.flatMap { $0.tombstones.map { ($0.start, $0.end) } }) : []
        var outputs: [TableReader] = []
        var builder = TableBuilder(options: store.options.table)
        var spanStart: [UInt8]? = nil

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
            for t in kept { builder.addTombstone(t.start, t.end) }
            guard !builder.isEmpty else { return }
            let id = try store.allocateTableID()
            let (bytes, meta) = builder.finish(id: id)
            try store.objects.put(meta.name, bytes)
            outputs.append(try store.openTable(meta))
            builder = TableBuilder(options: store.options.table)
            spanStart = boundary
        }

        do {
            while stream.isValid {
                let key = stream.key
                if builder.estimatedSize >= store.options.tableTargetBytes {
                    try finishTable(endingBefore: Array(key))
                }
                let source = stream.source
                builder.add(key, source.value, isDelete: source.isDelete)
                try stream.step()
            }
            try finishTable(endingBefore: nil)
        } catch {
            for table in outputs { store.inFlightTables.withLock { _ = $0.remove(table.meta.id) } }
            throw error
        }
        for table in outputs { store.inFlightTables.withLock { _ = $0.remove(table.meta.id) } }
        return outputs
    }
}
