// Space accounting and scrub for the lsm backend. Live: the tables the current manifest
// names, the WAL objects and the newest manifest. Checkpoint-only: tables that only
// checkpoint manifests name. Scrub reads every manifest and every table the current
// version or a checkpoint names, block by block from the objects (never the block
// cache), verifying each block's checksum, and each value a table keeps in a WAL segment
// against its pointer's checksum. WAL segments count as live space, also those only a
// checkpoint's tables point into.
//
// Concurrency: compaction and checkpoint deletion go on meanwhile. Scrub holds the
// current Version (its tables' files stay until it lets go) and opens checkpoint tables
// through `openTable` (kept while open); an object that vanished is a failure only if
// something still names it.

import Engine
import ObjectStore

extension LSMStore {
    /// The tables that checkpoints pin beyond `live`. A checkpoint deleted meanwhile (its
    /// manifest collected) pins nothing. A store opened read-only (one checkpoint) pins
    /// nothing of its own.
    private func pinnedTables(beyond live: Set<UInt64>) throws -> [TableMeta] {
        guard !readOnly else { return [] }
        let records = state.withLock { manifest.checkpoints }
        var seen = live
        var pinned: [TableMeta] = []
        for record in records {
            guard let bytes = try objects.get(Manifest.name(record.manifestID)) else { continue }
            let pinnedManifest = try Manifest.decode(bytes, name: Manifest.name(record.manifestID))
            for meta in pinnedManifest.levels.flatMap({ $0 }) where seen.insert(meta.id).inserted {
                pinned.append(meta)
            }
        }
        return pinned
    }

    /// Whether any manifest the store still uses names table `id`.
    private func stillNamed(_ id: UInt64) -> Bool {
        let current = state.withLock { manifest }
        if current.tableIDs.contains(id) { return true }
        return (try? pinnedTables(beyond: current.tableIDs).contains { $0.id == id }) ?? true
    }

    func spaceUsage() throws -> StoreSpace {
        let (current, newest) = state.withLock { (manifest, manifestID) }
        var liveBytes = current.levels.joined().reduce(UInt64(0)) { $0 + UInt64($1.size) }
        if !readOnly {
            for name in try objects.list(prefix: "wal/") {
                liveBytes += UInt64(try objects.open(name)?.size ?? 0)
            }
        }
        liveBytes += UInt64(try objects.open(Manifest.name(newest))?.size ?? 0)
        let pinned = try pinnedTables(beyond: current.tableIDs)
        return StoreSpace(liveBytes: liveBytes, checkpointOnlyBytes: pinned.reduce(UInt64(0)) { $0 + UInt64($1.size) })
    }

    func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport {
        var report = ScrubReport()
        report.verified = "manifest, block and value checksums"
        // Held to the end: the current version keeps its tables' files.
        let held = state.withLock { version }
        let live = held.levels.joined().map { $0 }
        let pinned = try pinnedTables(beyond: Set(live.map(\.meta.id)))
        let manifests = readOnly ? [] : try objects.list(prefix: "manifest/")
        report.objectsTotal = UInt64(manifests.count + live.count + pinned.count)
        for name in manifests {
            do {
                if let bytes = try objects.get(name) {
                    _ = try Manifest.decode(bytes, name: name)
                    report.objects += 1
                    report.bytes += UInt64(bytes.count)
                } else {
                    report.objectsTotal -= 1  // collected meanwhile (`get` answers nil then)
                }
            } catch {
                report.failures.append(ScrubFailure(object: name, reason: "\(error)"))
            }
            if !progress(report) {
                report.stopped = true
                return report
            }
        }
        for table in live {
            scrubTable(table, into: &report)
            if !progress(report) {
                report.stopped = true
                return report
            }
        }
        for meta in pinned {
            do {
                let table = try openTable(meta)
                scrubTable(table, into: &report)
            } catch {
                if stillNamed(meta.id) {
                    report.failures.append(ScrubFailure(object: meta.name, reason: "\(error)"))
                } else {
                    report.objectsTotal -= 1  // its checkpoint was deleted meanwhile
                }
            }
            if !progress(report) {
                report.stopped = true
                return report
            }
        }
        withExtendedLifetime(held) {}
        return report
    }

    /// Reads every block of `table` from its object and checks the entry count.
    private func scrubTable(_ table: TableReader, into report: inout ScrubReport) {
        do {
            let cursor = TableCursor(table, fillCache: false)
            cursor.fromDisk = true
            try cursor.seekToFirst()
            var entries = 0
            var pointed = 0
            while cursor.isValid {
                entries += 1
                // A value kept in a WAL segment is read and checked against its pointer.
                if cursor.isPointer { pointed += try cursor.value.count }
                try cursor.step()
            }
            guard entries == table.meta.entries else {
                throw KVError(.corruption, "holds \(entries) entries, the manifest says \(table.meta.entries)", path: table.name)
            }
            report.objects += 1
            report.values += UInt64(entries)
            report.bytes += UInt64(table.meta.size + pointed)
        } catch {
            report.failures.append(ScrubFailure(object: table.name, reason: "\(error)"))
        }
    }
}
