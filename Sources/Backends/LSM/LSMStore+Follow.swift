// Read-only replicas (Docs/lsm.md, "Replicas"): a store opened on the objects of a writer
// that runs elsewhere, which never writes an object and follows the writer:
//   - it starts from the newest manifest (its tables) and replays the WAL objects from the
//     manifest's replay start into a memtable of its own, as an opening writer would, but
//     without a fence;
//   - `catchUp()` then reads the WAL records written since (from where it stopped: a local
//     segment grows by appends, an S3 WAL object is whole), and when a newer manifest has
//     appeared (a flush, a compaction, a new writer) installs its tables and rebuilds the
//     memtable from its replay start.
// The writer collects what its manifest no longer names: WAL objects below the replay
// start at once (a replica that meets such a gap has a newer manifest to read), tables
// after `gc_grace_seconds` (60 on remote stores), so that a replica a poll behind still
// finds the tables it reads; a read that fails anyway catches up and is tried again
// (LSMBackend).

import Engine
import ObjectStore

extension LSMStore {
    /// A replica's place in the writer's WAL (guarded by `follow`).
    struct FollowState {
        /// The next WAL object to read, and the bytes at its start already applied (0: none).
        var walID: UInt64 = 0
        var offset = 0
        /// Changes whenever what the replica shows changed.
        var generation: UInt64 = 0
    }

    /// What the replica read was collected: a newer manifest replaced it.
    private struct Superseded: Error {}

    /// Opens a replica of the store in `objects` at its newest manifest and replays the
    /// WAL written after it. Throws `.storeNotFound` when there is no store.
    static func openReplica(objects: any ObjectStore, options: LSMOptions) throws -> LSMStore {
        for _ in 0..<16 {
            // Read before the manifest: a store made anew after it is found at the next
            // catch-up.
            let identity = try objects.get(identityName)
            guard let newest = try newestWholeManifest(objects)?.id else {
                if try newestManifest(objects) != nil {
                    throw KVError(.corruption, "every manifest of the store is empty", path: objects.location)
                }
                throw KVError(.storeNotFound, "no lsm store there (no manifest)", path: objects.location)
            }
            let store: LSMStore
            do {
                store = try LSMStore(objects: objects, options: options, manifestID: newest, following: true, identity: identity)
            } catch {
                // Collected between the listing and the read: a newer one exists.
                if try newestWholeManifest(objects, above: newest) != nil { continue }
                throw error
            }
            store.follow.withLock { $0 = FollowState(walID: store.manifest.walReplayFrom) }
            _ = try store.catchUp()
            return store
        }
        throw KVError(.io, "the writer replaced its manifest faster than this replica could open it (16 attempts)", path: objects.location)
    }

    static func newestManifest(_ objects: any ObjectStore) throws -> UInt64? {
        try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).max()
    }

    /// The newest manifest above `floor` that has bytes, and its id; nil when there is
    /// none. The newest ids may be empty objects: commits whose upload was cut off before
    /// its body (SeaweedFS keeps those; s3.md). Their writer never heard back, so nothing
    /// depended on them, and every reader passes over them, as the writer's open does; a
    /// writer that replaces its own cut attempt (S3ObjectStore) fills one in later, and it
    /// is read then. Lists once; reads an object only when one above `floor` is listed.
    /// Throws `.io` when the manifests listed keep being collected before they are read.
    static func newestWholeManifest(_ objects: any ObjectStore, above floor: UInt64 = 0) throws -> (id: UInt64, bytes: [UInt8])? {
        for _ in 0..<100 {
            var ids = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).filter { $0 > floor }.sorted()
            var vanished = false
            while let id = ids.popLast() {
                // Collected between the listing and the read: a newer one exists.
                guard let bytes = try objects.get(Manifest.name(id)) else {
                    vanished = true
                    break
                }
                if !bytes.isEmpty { return (id, bytes) }
            }
            if !vanished { return nil }
        }
        throw KVError(.io, "the newest manifest was replaced before it could be read, 100 times in a row", path: objects.location)
    }

    /// For a replica: reads what the writer wrote since the last call (WAL records, and a
    /// newer manifest when there is one) and shows it to reads that start afterwards.
    /// Returns the replica's generation, which changes whenever what it shows changed.
    /// Throws `.io` when an object cannot be read; the replica keeps what it showed.
    func catchUp() throws -> UInt64 {
        guard following else { return 0 }
        return try follow.withLock { position throws -> UInt64 in
            // Its manifests and WAL objects would be taken for the writer's next ones.
            if let identity = followedIdentity, try objects.get(Self.identityName) != identity {
                throw KVError(
                    .storeNotFound, "the store this replica follows is gone, or another was made in its place (its identity changed); start the replica again",
                    path: objects.location)
            }
            for _ in 0..<16 {
                do {
                    let current = state.withLock { manifestID }
                    if let newest = try Self.newestWholeManifest(objects, above: current) {
                        try install(manifestID: newest.id, position: &position)
                        position.generation &+= 1
                    } else {
                        let table = state.withLock { mem }
                        let fenced = state.withLock { manifest.fences.max() ?? 0 }
                        if let applied = try replayWAL(into: table, from: &position, manifestID: current, fencedBelow: fenced) {
                            state.withLock { lastSeq = max(lastSeq, applied) }
                            position.generation &+= 1
                        }
                    }
                    // A WAL object the listing missed was collected under a manifest the
                    // writer committed before collecting it: when one appeared meanwhile,
                    // what the replay missed is in its tables.
                    if try Self.newestWholeManifest(objects, above: state.withLock({ manifestID })) != nil { continue }
                    return position.generation
                } catch is Superseded {
                    continue
                }
            }
            throw KVError(.io, "the writer replaced its manifest faster than this replica could follow (16 attempts)", path: objects.location)
        }
    }

    /// Moves the replica to manifest `id`: its tables, and a memtable rebuilt from the WAL
    /// after it.
    private func install(manifestID id: UInt64, position: inout FollowState) throws {
        let loaded: Manifest
        let opened: Version
        do {
            guard let bytes = try objects.get(Manifest.name(id)) else { throw Superseded() }
            loaded = try Manifest.decode(bytes, name: Manifest.name(id))
            opened = try openVersion(loaded.levels)
        } catch let error as Superseded {
            throw error
        } catch {
            try supersededOr(error, after: id)
        }
        let fresh = Memtable(firstWAL: loaded.walReplayFrom)
        var next = FollowState(walID: loaded.walReplayFrom, offset: 0, generation: position.generation)
        let applied = try replayWAL(into: fresh, from: &next, manifestID: id, fencedBelow: loaded.fences.max() ?? 0) ?? 0
        // The writer collects WAL objects below a newer manifest's replay start as soon as
        // it commits it: a listing made meanwhile misses what they held, which only that
        // manifest's tables have. Checked after the replay: if the listing missed one, the
        // newer manifest was there before it.
        if try Self.newestWholeManifest(objects, above: id) != nil { throw Superseded() }
        state.withLock {
            manifest = loaded
            manifestID = id
            nextTableID = loaded.nextTableID
            version = opened
            mem = fresh
            immutables = []
            // What it replayed, not the manifest's (LSMStore.init).
            lastSeq = applied
        }
        position = next
    }

    /// Throws `Superseded` when a manifest newer than `id` exists (what failed was
    /// collected after the writer moved on), `error` otherwise.
    private func supersededOr(_ error: any Error, after id: UInt64) throws -> Never {
        if (try? Self.newestWholeManifest(objects, above: id)) != nil { throw Superseded() }
        throw error
    }

    /// Applies the WAL records after `position` to `table` and moves `position` past them.
    /// Returns the newest sequence number applied, nil when there was nothing new. The
    /// newest object may still be growing (a local segment) or end torn: the replica stays
    /// at its last whole record and reads on from there next time; an object with a newer
    /// one after it is finished (a torn end there is a crashed writer's, which the next
    /// writer's fence closed).
    /// `fencedBelow`: the newest fence manifest `manifestID` records (gaps below it are
    /// settled).
    private func replayWAL(into table: Memtable, from position: inout FollowState, manifestID: UInt64, fencedBelow fenced: UInt64) throws -> UInt64? {
        let ids = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).filter { $0 >= position.walID }.sorted()
        var newest: UInt64?
        for (index, id) in ids.enumerated() {
            if id > position.walID {
                // Objects below the writer's replay start are collected: if that is why
                // this one is missing, a newer manifest says where to start.
                if try Self.newestWholeManifest(objects, above: manifestID) != nil { throw Superseded() }
                // Ids below a fence this manifest records are settled: the writer that
                // placed it plugged them, or replayed what an older writer landed there.
                // Above every fence, a missing id is a write still landing (an older
                // writer's, while a new one takes over and has yet to plug the ids below
                // its fence): wait for it rather than skip what it will hold.
                guard id <= fenced else { break }
                position = FollowState(walID: id, offset: 0, generation: position.generation)
            }
            let name = WALFormat.name(id)
            let isLast = index == ids.count - 1
            var bytes: [UInt8]
            let start: Int
            if position.offset == 0 {
                guard let whole = try objects.get(name) else { try supersededOr(KVError(.io, "WAL object vanished", path: name), after: manifestID) }
                if whole.count < WALFormat.headerSize {
                    if isLast { break }  // being created
                    position = FollowState(walID: id + 1, offset: 0, generation: position.generation)
                    continue
                }
                _ = try WALFormat.decode(Array(whole.prefix(WALFormat.headerSize)), name: name)  // the header's magic and version
                bytes = whole
                start = WALFormat.headerSize
            } else {
                guard let object = try objects.open(name) else { try supersededOr(KVError(.io, "WAL object vanished", path: name), after: manifestID) }
                bytes = object.size > position.offset ? try object.read(offset: position.offset, length: object.size - position.offset) : []
                start = 0
            }
            let (records, end, _, _) = try WALFormat.decodeRecords(bytes, from: start, name: name)
            for (seq, batch) in records {
                apply(batch, firstSeq: seq, to: table)
                newest = max(newest ?? 0, seq + UInt64(max(batch.count, 1)) - 1)
            }
            if isLast {
                // `end` counts from the start of `bytes`, which is the object's start when
                // nothing of it was read before.
                position.offset += end
            } else {
                position = FollowState(walID: id + 1, offset: 0, generation: position.generation)
            }
        }
        return newest
    }

    /// For a replica: the generation of what it shows (see `catchUp`).
    var followGeneration: UInt64 { follow.withLock { $0.generation } }
}
