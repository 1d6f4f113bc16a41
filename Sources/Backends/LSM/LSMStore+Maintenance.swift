// Space accounting and scrub for the lsm backend. Live: the tables the current manifest
// names, the WAL objects and the newest manifest. Checkpoint-only: tables that only
// checkpoint manifests name. Scrub reads every manifest and every table any of them
// names, block by block with checksums, without filling the block cache.

import Engine
import ObjectStore

extension LSMStore {
    /// The current manifest and the tables every checkpoint pins beyond it.
    private func tablesInUse() throws -> (live: [TableMeta], pinned: [TableMeta]) {
        let (current, records) = state.withLock { (manifest, manifest.checkpoints) }
        let live = current.levels.flatMap { $0 }
        var seen = Set(live.map(\.id))
        var pinned: [TableMeta] = []
        for record in records {
            for meta in try Self.loadManifest(objects, record.manifestID).levels.flatMap({ $0 }) where seen.insert(meta.id).inserted {
                pinned.append(meta)
            }
        }
        return (live, pinned)
    }

    func spaceUsage() throws -> StoreSpace {
        let (live, pinned) = try tablesInUse()
        var liveBytes = live.reduce(UInt64(0)) { $0 + UInt64($1.size) }
        for name in try objects.list(prefix: "wal/") {
            liveBytes += UInt64(try objects.open(name)?.size ?? 0)
        }
        let newest = state.withLock { manifestID }
        liveBytes += UInt64(try objects.open(Manifest.name(newest))?.size ?? 0)
        return StoreSpace(liveBytes: liveBytes, checkpointOnlyBytes: pinned.reduce(UInt64(0)) { $0 + UInt64($1.size) })
    }

    func scrub(progress: (ScrubReport) -> Void) throws -> ScrubReport {
        var report = ScrubReport()
        report.verified = "manifest and block checksums"
        let manifests = try objects.list(prefix: "manifest/")
        let (live, pinned) = try tablesInUse()
        report.objectsTotal = UInt64(manifests.count + live.count + pinned.count)
        for name in manifests {
            do {
                guard let bytes = try objects.get(name) else { continue }  // collected meanwhile
                _ = try Manifest.decode(bytes, name: name)
                report.objects += 1
                report.bytes += UInt64(bytes.count)
            } catch {
                report.failures.append(ScrubFailure(object: name, reason: "\(error)"))
            }
            progress(report)
        }
        for meta in live + pinned {
            do {
                guard let object = try objects.open(meta.name) else {
                    report.failures.append(ScrubFailure(object: meta.name, reason: "the table is missing"))
                    continue
                }
                let cursor = TableCursor(try TableReader(meta: meta, object: object, cache: cache), fillCache: false)
                try cursor.seekToFirst()
                var entries = 0
                while cursor.isValid {
                    entries += 1
                    try cursor.step()
                }
                guard entries == meta.entries else {
                    throw KVError(.corruption, "holds \(entries) entries, the manifest says \(meta.entries)", path: meta.name)
                }
                report.objects += 1
                report.values += UInt64(entries)
                report.bytes += UInt64(object.size)
            } catch {
                report.failures.append(ScrubFailure(object: meta.name, reason: "\(error)"))
            }
            progress(report)
        }
        return report
    }
}
