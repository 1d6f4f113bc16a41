// What keeps writers of one store apart in its object store, where no lock can: the
// fence and plugs an open puts into the WAL ahead of an older writer, and the manifest
// commit that moves past uploads cut short. (LSMStore.swift, "Opening", uses them.)

import Engine
import ObjectStore

extension LSMStore {
    /// Puts a fence (an empty WAL object) after every WAL object that exists or is being
    /// written, and returns its id. A writer writes its WAL objects one at a time, in id
    /// order, so every id below the newest listed one is complete, and at most the next
    /// one is in flight (or, when the manifest's next WAL id is further on, the ids up to
    /// it). The fence goes at that next id; if the old writer's object lands
    /// there first, the fence goes further ahead, 2, 4, 8, ... ids after the newest listed
    /// one, and the ids between are plugged with empty objects: either a plug lands (the
    /// old writer's write there fails and is never acknowledged) or the old writer's object
    /// exists and is replayed. Either way every id below the fence is settled before the
    /// replay lists them. The growing jump outruns a writer that makes WAL objects faster
    /// than this opener can list and put (a durable write per object, on a slow listing;
    /// one id ahead lost 32 races in a row to such a writer). A writer that still wins 32
    /// times (an opener racing an opener) is reported.
    /// How many ids below the manifest's next WAL id an open plugs when they are missing.
    static let plugBelowNext: UInt64 = 16
    /// How far below its fence an open's plugs can lie: `plugBelowNext` and the longest
    /// jump ahead.
    static let plugWindow: UInt64 = plugBelowNext + (1 << 10)

    static func placeFence(_ objects: any ObjectStore, after nextWALID: UInt64, replayFrom: UInt64) throws -> UInt64 {
        for attempt in 0..<32 {
            let newest = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:)).max() ?? 0
            let next = max(newest + 1, nextWALID)
            let fence = attempt == 0 ? next : next + (UInt64(1) << UInt64(min(attempt, 10)))
            guard try objects.putIfAbsent(WALFormat.name(fence), WALFormat.header()) else { continue }
            // Also the ids the manifest says were handed out but the listing lacks: a
            // writer commits its manifest while its newest WAL object may still be on its
            // way (the id is taken under the WAL lock, the put made outside it). Only the
            // last few can be, and none below the replay start (there a missing object
            // was collected, or is a segment tables point into that must stay missing,
            // not come back empty): a restored store is not plugged from id 1.
            let handedOut = max(newest + 1, replayFrom, next >= Self.plugBelowNext ? next - Self.plugBelowNext : 0)
            for id in handedOut..<max(handedOut, fence) { _ = try objects.putIfAbsent(WALFormat.name(id), WALFormat.header()) }
            return fence
        }
        throw KVError(.fenced, "another writer kept writing WAL objects at the ids this open tried to fence", path: objects.location)
    }

    /// Attempts of one WAL write or manifest commit whose uploads were cut short (the
    /// server kept an empty object) before it gives up with `.io`.
    static let cutShortAttempts = 8

    /// Puts a manifest under the first free id from `first` on: the id it went to. An id
    /// another writer took throws `taken(id)`; an upload of ours cut short, kept empty by
    /// the server, moves on to the next id (readers pass over empty manifests, and another
    /// opener may have read this one empty and committed past it: filling it in would
    /// make a commit it never saw). `manifest` is encoded for each id it is put under: a
    /// checkpoint it records that pins `first` (the manifest itself; a later id after a
    /// cut upload moved it there) is moved along to the
    /// id it went to. Returns that id and the manifest as written.
    static func commitManifest(_ objects: any ObjectStore, _ manifest: Manifest, from first: UInt64, taken: (UInt64) -> KVError) throws -> (id: UInt64, manifest: Manifest) {
        var id = first
        var attempt = manifest
        while true {
            // A checkpoint this commit makes pins it wherever it lands (no older record
            // names a manifest from `first` on, which is not written yet).
            for index in attempt.checkpoints.indices where attempt.checkpoints[index].manifestID >= first {
                attempt.checkpoints[index].manifestID = id
            }
            switch try objects.putIfAbsentOrCut(Manifest.name(id), attempt.encode()) {
            case .written: return (id, attempt)
            case .taken: throw taken(id)
            case .cutShort:
                guard id - first + 1 < cutShortAttempts else { throw KVError(.io, "\(cutShortAttempts) uploads in a row were cut short", path: Manifest.name(id)) }
                id += 1
            }
        }
    }
}
