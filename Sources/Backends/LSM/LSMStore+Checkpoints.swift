// Checkpoints, SlateDB-style: a record in the manifest pinning one manifest id. Creating
// one freezes and flushes the memtable (so the pinned manifest's tables alone hold the
// state, with no WAL to replay) and commits a manifest naming itself; no table is copied.
// GC keeps every table a pinned manifest names, and every WAL segment those tables point
// into, until the checkpoint is deleted.

import Engine
import ObjectStore

extension LSMStore {
    func createCheckpoint(named name: String) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        // Freeze what was written so far and wait until it is in tables.
        let tail = try state.withLock { () throws -> WALClaim? in
            if let error = backgroundError { throw error }
            guard mem.entryCount > 0 || mem.hasRangeDeletes else { return nil }
            let tail = try rotateMemtable()
            state.broadcast()
            return tail
        }
        if let tail { try finishRotation(tail) }
        try state.withLock {
            while !immutables.isEmpty {
                if let error = backgroundError { throw error }
                state.wait()
            }
        }
        return try manifestLock.withLock { _ in
            let (existing, id) = state.withLock { (manifest.checkpoints, manifestID) }
            if existing.contains(where: { $0.name == name }) {
                throw KVError(.alreadyExists, "checkpoint '\(name)' exists", path: objects.location)
            }
            // Pins the manifest this commit writes: the next id, or a later one when
            // uploads are cut short (commitManifest moves the record along).
            let record = CheckpointRecord(name: name, manifestID: id + 1, createdNanos: FileOps.nowNanos(), expiresNanos: 0)
            try commit { next, _ in next.checkpoints.append(record) }
            return CheckpointInfo(name: name, createdAtNanos: record.createdNanos)
        }
    }

    func listCheckpoints() -> [CheckpointInfo] {
        state.withLock { manifest.checkpoints }.map { CheckpointInfo(name: $0.name, createdAtNanos: $0.createdNanos) }
            .sorted { $0.name < $1.name }
    }

    func deleteCheckpoint(named name: String) throws {
        try CheckpointName.validate(name)
        try manifestLock.withLock { _ in
            guard state.withLock({ manifest.checkpoints.contains { $0.name == name } }) else {
                throw KVError(.notFound, "no checkpoint '\(name)'", path: objects.location)
            }
            try commit { next, _ in next.checkpoints.removeAll { $0.name == name } }
        }
    }

    /// The manifest id checkpoint `name` pins, read from the newest manifest in `objects`.
    /// The store may be open and committing meanwhile: a commit between the listing and
    /// the read supersedes the newest manifest and garbage collection deletes it, so a
    /// newest manifest gone by then is looked for again.
    static func checkpointManifest(_ objects: any ObjectStore, named name: String) throws -> (Manifest, UInt64) {
        try CheckpointName.validate(name)
        // Empty newest manifests are commits cut off before their body: passed over.
        guard let newest = try newestWholeManifest(objects) else {
            throw KVError(.corruption, "the store has no manifest with bytes", path: objects.location)
        }
        let current = try Manifest.decode(newest.bytes, name: Manifest.name(newest.id))
        guard let record = current.checkpoints.first(where: { $0.name == name }) else {
            throw KVError(.notFound, "no checkpoint '\(name)'", path: objects.location)
        }
        return (try loadManifest(objects, record.manifestID), record.manifestID)
    }

    /// Writes into `target` a new store holding checkpoint `name` of `source`: its tables
    /// and the WAL segments they point into (through `copy`, given each object's name,
    /// which may link), and a first manifest with no checkpoints and nothing to replay:
    /// its WAL starts after the copied segments, which only hold values.
    static func restore(
        from source: any ObjectStore, named name: String, into target: any ObjectStore,
        copy: (String) throws -> Void
    ) throws {
        let (pinned, _) = try checkpointManifest(source, named: name)
        guard try target.list(prefix: "manifest/").isEmpty, try target.list(prefix: "sst/").isEmpty, try target.list(prefix: "wal/").isEmpty else {
            throw KVError(.alreadyExists, "the restore target already holds a store", path: target.location)
        }
        // A new identity first: a reader that finds the manifest finds it too.
        try target.put(identityName, newIdentity())
        for meta in pinned.levels.flatMap({ $0 }) { try copy(meta.name) }
        let segments = pinned.valueSegments
        for segment in segments.sorted() { try copy(WALFormat.name(segment)) }
        var fresh = pinned
        fresh.writerEpoch = 0
        fresh.checkpoints = []
        fresh.fences = []
        fresh.tornWAL = []
        fresh.walReplayFrom = (segments.max() ?? 0) + 1
        fresh.nextWALID = fresh.walReplayFrom
        guard try target.putIfAbsent(Manifest.name(1), fresh.encode()) else {
            throw KVError(.alreadyExists, "the restore target already holds a store", path: target.location)
        }
    }
}
