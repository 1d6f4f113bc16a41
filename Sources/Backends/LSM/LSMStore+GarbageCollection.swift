// Garbage collection of the LSM store: deleting the objects no manifest, checkpoint or
// open reader still uses. The compaction thread runs it after commits
// (LSMStore+Background.swift), and so do commits that collect at once.

import Engine
import Foundation
import ObjectStore

extension LSMStore {
    /// Deletes tables no manifest, checkpoint or open reader uses, WAL objects below the
    /// replay start (never fences, nor segments such tables point into) and manifests no
    /// checkpoint pins; then marks the segments to empty (`planSegmentRewrites`).
    /// Failures are left for the next pass. A checkpoint whose manifest cannot be read
    /// pins what nobody can tell: only manifests are collected then, and the log says so
    /// (once per checkpoint and cause).
    func collectGarbage() {
        guard !readOnly else { return }
        let (current, id) = state.withLock { (manifest, manifestID) }
        var live = current.tableIDs
        var pinnedManifests: Set<UInt64> = [id]
        var pinnedByCheckpoints: [Manifest] = []
        for checkpoint in current.checkpoints { pinnedManifests.insert(checkpoint.manifestID) }
        for checkpoint in current.checkpoints {
            do {
                pinnedByCheckpoints.append(try Self.loadManifest(objects, checkpoint.manifestID))
            } catch {
                let note = "checkpoint '\(checkpoint.name)' (manifest \(checkpoint.manifestID)): \(error)"
                if unreadableCheckpoints.withLock({ $0.insert(note).inserted }) {
                    printError("zerofs: lsm \(objects.location): tables and WAL objects are not collected while this checkpoint's manifest cannot be read: \(note)")
                }
                collectManifests(below: id, keeping: pinnedManifests)
                return
            }
        }
        for pinned in pinnedByCheckpoints { live.formUnion(pinned.tableIDs) }
        // nextTableID first: an id below it was in flight before it was handed out.
        let nextTable = state.withLock { nextTableID }
        live.formUnion(inFlightTables.withLock { $0 })
        openTables.withLock { open in
            open = open.filter { $0.value.table != nil }
            live.formUnion(open.keys)
        }
        let now = ContinuousClock.now
        let grace = Duration.seconds(options.gcGraceSeconds)
        var unnamed: [UInt64: ContinuousClock.Instant] = [:]
        let unnamedBefore = unnamedTables.withLock { $0 }
        for name in (try? objects.list(prefix: "sst/")) ?? [] {
            guard let tableID = UInt64(name.dropFirst(4).dropLast(4)), tableID < nextTable, !live.contains(tableID) else { continue }
            // Kept `gc_grace_seconds` from the pass that first found it unnamed.
            let since = unnamedBefore[tableID] ?? now
            if now - since < grace {
                unnamed[tableID] = since
                continue
            }
            try? objects.delete(name)
            cache.evict(table: tableID)
        }
        unnamedTables.withLock { $0 = unnamed }
        // WAL segments below the replay start go, but for fences and segments a table of
        // the current manifest, a checkpoint or an open reader points into; one that some
        // table pointed into is kept `gc_grace_seconds` from the pass that first found
        // none does, as tables are.
        var pointed = current.valueSegments
        let segmentsOfCheckpoints = pinnedByCheckpoints.reduce(into: Set<UInt64>()) { $0.formUnion($1.valueSegments) }
        pointed.formUnion(segmentsOfCheckpoints)
        openTables.withLock { open in
            for weak in open.values { if let table = weak.table { pointed.formUnion(table.meta.valueRefs.map(\.segment)) } }
        }
        let fences = Set(current.fences)
        for name in (try? objects.list(prefix: "wal/")) ?? [] {
            guard let walID = WALFormat.id(of: name), walID < current.walReplayFrom, !fences.contains(walID), !pointed.contains(walID) else { continue }
            if isPlug(walID, name, fences: current.fences) { continue }
            let held = pointedSegments.withLock { seen -> Bool in
                guard let entry = seen[walID] else { return false }
                let since = entry ?? now
                if now - since < grace {
                    seen[walID] = since
                    return true
                }
                seen[walID] = nil
                return false
            }
            if held { continue }
            try? objects.delete(name)
        }
        pointedSegments.withLock { seen in for id in pointed where seen[id] != nil { seen[id] = .some(nil) } }
        planSegmentRewrites(current, pinned: segmentsOfCheckpoints)
        collectManifests(below: id, keeping: pinnedManifests)
    }

    /// Deletes the manifests below `id` but `pinned`.
    private func collectManifests(below id: UInt64, keeping pinned: Set<UInt64>) {
        for name in (try? objects.list(prefix: "manifest/")) ?? [] {
            guard let manifestNumber = Manifest.id(of: name), manifestNumber < id, !pinned.contains(manifestNumber) else { continue }
            try? objects.delete(name)
        }
    }

    /// Whether WAL object `walID` (`name`) is a plug an open put below one of `fences`
    /// (`placeFence`): an object of just a header, at most `plugWindow` ids below a fence.
    /// Plugs stay as long as their fence: deleted, a writer that was taken over from, its
    /// put of that id still on its way (retried through an outage), would land it and
    /// count the records acknowledged, which nobody replays.
    private func isPlug(_ walID: UInt64, _ name: String, fences: [UInt64]) -> Bool {
        guard fences.contains(where: { $0 > walID && $0 - walID <= Self.plugWindow }) else { return false }
        // Unreadable: kept, as a plug would be, until a later pass can tell.
        guard let size = try? objects.open(name)?.size else { return true }
        return size == WALFormat.header().count
    }
}
