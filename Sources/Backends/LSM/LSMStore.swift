// The LSM store: recovery, the write path (memtable, throttling) and point reads. The
// WAL's group commit and the freezing of memtables are in LSMStore+WAL.swift; background
// work (memtable flush, compaction, GC) in LSMStore+Background.swift; checkpoints in
// LSMStore+Checkpoints.swift.
//
// Locks, always taken in this order: `manifestLock` (one manifest commit at a time) ->
// `state` (memtables, version, sequence numbers) -> `wal` (WAL buffer and group commit).

import Engine
import Foundation
import ObjectStore
import Synchronization

final class LSMStore: @unchecked Sendable {
    // Mutable fields are guarded as their comments say; everything else is immutable.
    let objects: any ObjectStore
    let options: LSMOptions
    let cache: BlockCache
    let readOnly: Bool
    /// A read-only replica that follows a writer elsewhere (LSMStore+Follow.swift).
    let following: Bool
    /// A replica's: the store's identity when it opened (nil: the store had none), checked
    /// at each catch-up, so that a store made anew at the same place is not mixed in.
    let followedIdentity: [UInt8]?
    /// Where a replica is in the writer's WAL; also serializes its catching up.
    let follow = Locked(FollowState())

    /// Guards memtables, version, sequence numbers and the manifest copy. Writers wait on
    /// it while throttled; background threads wait on it for work.
    let state = Monitor()
    var mem: Memtable  // state
    var immutables: [Memtable] = []  // state, oldest first
    /// The compaction thread is in its round of compactions (`settle` waits it out).
    var compacting = false  // state
    var version: Version  // state
    var lastSeq: UInt64  // state: the newest visible sequence number
    var manifest: Manifest  // state: the last committed manifest
    var manifestID: UInt64  // state
    /// The next table id to hand out; only grows (manifests persist it, installing one
    /// never rewinds it).
    var nextTableID: UInt64  // state
    var backgroundError: KVError?  // state: a failed flush or compaction stops writes
    var closing = false  // state
    /// A writer found the memtable full; the WAL thread rotates it (rotateInBackground).
    var rotationWanted = false  // state
    var compactionPending = false  // state
    /// A flush committed: the compaction thread collects garbage (the flush does not wait
    /// for the deletes).
    var garbagePending = false  // state
    var runningThreads = 0  // state

    /// Serializes manifest commits (flush, compaction, checkpoints).
    let manifestLock = Locked(())

    /// Guards the WAL buffer and group commit.
    let wal = Monitor()
    /// Wakes the WAL thread (a full buffer, closing) without waking every flusher that
    /// waits on `wal`, and without being woken by each of their syncs.
    let walKick: MonitorCondition
    /// Records appended and not yet written: their batches, kept as they are (not copied)
    /// until a WAL flush encodes them straight into the segment, so a writer's only WAL
    /// work is queueing its batch.
    var walPending: [(seq: UInt64, batch: WriteBatch)] = []  // wal
    /// The bytes of `walPending`'s batches.
    var walPendingBytes = 0  // wal
    var walAppended: UInt64 = 0  // wal: records appended, ever
    var walWritten: UInt64 = 0  // wal: records in WAL objects (perhaps not yet synced)
    var walDurable: UInt64 = 0  // wal: records in WAL objects and synced
    var walFlushing = false  // wal
    /// Set with `rotationWanted`, under this lock, so the WAL thread cannot miss it.
    var walRotationKick = false  // wal
    var nextWALID: UInt64  // wal
    var walError: KVError?  // wal
    /// The WAL segment being appended to, when the object store can append.
    var walSegment: (any AppendableObject)?  // wal
    var walSegmentID: UInt64 = 0  // wal
    /// Sealed segments not yet synced. A durable write syncs them first (prefix
    /// durability); once a committed table holds their records (their ids fall below the
    /// WAL replay start) they are dropped unsynced, so a WAL that a flush made obsolete
    /// never has to reach the disk.
    var unsyncedSealed: [(id: UInt64, segment: any AppendableObject)] = []  // wal
    /// Sealed segments synced since the replay start was last below them (a flush whose
    /// tables point into a segment waits until it is here: `syncSealed`).
    var syncedSealed: Set<UInt64> = []  // wal
    /// Sealed segments `syncSealed` is syncing, out of `unsyncedSealed`.
    var sealedSyncing: Set<UInt64> = []  // wal
    /// The furthest a syncing WAL flush got while `sealedSyncing` was not empty: durable
    /// once those segments are.
    var durableAfterSealed: UInt64 = 0  // wal
    /// WAL segments grow to about this size before a new one starts.
    static let walSegmentBytes = 64 << 20
    var walSegmentSize = 0  // wal
    /// The open segment holds a sync marker (format-wal.md).
    var walSegmentMarked = false  // wal
    /// Records were written after the newest sync marker, or into segments no marker
    /// follows: a durable write is not acknowledged until one does (format-wal.md).
    var walUnmarked = false  // wal
    /// The id of the newest WAL segment records were written to.
    var walNewestWritten: UInt64 = 0  // wal

    /// Where pointer entries' values are read.
    let valueLog: ValueLog
    /// Where the WAL wrote each batch that may hold values kept in place (a memtable keeps
    /// only such batches): segment id and the file offset of the batch's bytes, by the
    /// batch's first sequence number. A flush takes its memtable's entries out.
    let walLocations = Locked<[UInt64: WALLocation]>([:])

    /// WAL segments some committed table pointed into, with when garbage collection first
    /// found none does (`gc_grace_seconds`, as for tables); nil while one still does.
    let pointedSegments = Locked<[UInt64: ContinuousClock.Instant?]>([:])
    /// The L0 tables when an idle flush committed (`idle_flush_ms`): while any of them is
    /// in L0, L0 is compacted into L1 whatever its pressure, so the deletions flushed meet
    /// what they hide. Tables flushed later do not extend it.
    let idleCompaction = Locked<Set<UInt64>>([])
    /// WAL segments mostly dead (their live values fill under half of them): compaction
    /// writes their values inline, and picks tables pointing into them when nothing else
    /// is due (`planSegmentRewrites`).
    let segmentsToEmpty = Locked<Set<UInt64>>([])

    /// Table files being written and not yet in a manifest (GC must not delete them).
    let inFlightTables = Locked<Set<UInt64>>([])
    /// Open table readers by id (weakly), so GC keeps files that readers still use.
    let openTables = Locked<[UInt64: WeakTable]>([:])

    struct WeakTable { weak var table: TableReader? }
    /// Tables GC found that no manifest names, with when it first did (`gc_grace_seconds`).
    let unnamedTables = Locked<[UInt64: ContinuousClock.Instant]>([:])
    /// Checkpoints whose manifest garbage collection could not read, with why (logged once).
    let unreadableCheckpoints = Locked<Set<String>>([])
    /// Per level, the largest key of the last table compacted from it (round robin).
    let compactPointers = Locked<[Int: [UInt8]]>([:])

    // MARK: Opening

    /// Table ids each writer has to itself (2^40: more than any writer makes; 2^24 opens
    /// before the ids run out, and after that writers share one range again).
    static let tableIDsPerEpoch: UInt64 = 1 << 40

    /// Opens (or creates) the store in `objects`: reads the newest manifest, takes over as
    /// writer (a new epoch, a fence in the WAL), replays the WAL into the memtable.
    init(objects: any ObjectStore, options: LSMOptions) throws {
        self.objects = objects
        self.options = options
        cache = BlockCache(capacity: options.blockCacheBytes)
        valueLog = ValueLog(objects: objects)
        walKick = MonitorCondition(on: wal)
        readOnly = false
        following = false
        followedIdentity = nil
        let manifestNames = try objects.list(prefix: "manifest/")
        var current: Manifest
        let currentID: UInt64
        // The newest manifests may be empty objects: commits whose upload was cut off
        // before its body (SeaweedFS keeps those; no manifest is empty). Their writer never
        // heard back, so nothing depended on them: the newest manifest with bytes is the
        // current one, and this open commits past them.
        var ids = manifestNames.compactMap(Manifest.id(of:)).sorted()
        var listedNewest = ids.last ?? 0
        // The store's identity, written before its first manifest: a new store gets a new
        // one (whatever a store deleted from here left), a store made before identities
        // existed gets one. A disk cache keeps its pages for one identity only.
        if ids.isEmpty {
            try objects.put(Self.identityName, Self.newIdentity())
        } else if try objects.get(Self.identityName) == nil {
            _ = try objects.putIfAbsent(Self.identityName, Self.newIdentity())
        }
        var loaded: (UInt64, Manifest)?
        // A writer still running (the one this open takes over from) may commit a newer
        // manifest and collect the listed one before it is read: then the listing is taken
        // again. A manifest that vanished with nothing newer is damage.
        var relistings = 0
        while let newest = ids.popLast() {
            let name = Manifest.name(newest)
            guard let bytes = try objects.get(name) else {
                let again = try objects.list(prefix: "manifest/").compactMap(Manifest.id(of:)).sorted()
                guard let newer = again.last, newer > newest, relistings < 100 else {
                    throw KVError(.corruption, "manifest object is missing", path: name)
                }
                relistings += 1
                ids = again
                listedNewest = max(listedNewest, newer)
                continue
            }
            if bytes.isEmpty { continue }
            loaded = (newest, try Manifest.decode(bytes, name: name))
            break
        }
        if let (newest, manifest) = loaded {
            currentID = newest
            current = manifest
        } else {
            currentID = 0
            current = Manifest()
        }
        // Take over. First a fence: an empty WAL object at the next id, so an older writer's
        // next WAL write fails; then the WAL replay; then a manifest with a new epoch that
        // records the fence. A concurrent opener loses one of the put-if-absent races.
        if let appendable = objects as? any AppendableObjectStore {
            for prefix in ["wal/", "sst/", "manifest/"] { try appendable.removeLeftovers(prefix: prefix) }
        }
        let fenceID = try Self.placeFence(objects, after: current.nextWALID, replayFrom: current.walReplayFrom)
        let existingWAL = try objects.list(prefix: "wal/").compactMap(WALFormat.id(of:))
        let replayFrom = current.walReplayFrom
        manifest = current
        manifestID = currentID
        nextTableID = current.nextTableID
        lastSeq = current.lastSeq
        mem = Memtable(firstWAL: replayFrom)
        version = Version(levels: [])
        nextWALID = fenceID + 1

        // Replay the WAL: every object from walReplayFrom up to the fence, in order. The
        // newest may be torn (cut short by a crash; on a store that writes objects whole,
        // only cut short), and so may the objects an earlier open found torn (the
        // manifest lists them); any other damage is corruption.
        let walIDs = existingWAL.filter { $0 >= replayFrom && $0 < fenceID }.sorted()
        var decoded: [(id: UInt64, contents: WALFormat.Contents)] = []
        var headerOnly: Set<UInt64> = []
        for id in walIDs {
            // Listed a moment ago, and only this writer deletes WAL objects: one that cannot
            // be read now is not skipped (its records would be lost once a flush moves the
            // replay start past it).
            guard let bytes = try objects.get(WALFormat.name(id)) else {
                // A writer still running may have committed a newer manifest and collected
                // it: that is a takeover lost, not a disk fault.
                if let newest = try? Self.newestWholeManifest(objects, above: currentID) {
                    throw KVError(.fenced, "another writer committed manifest \(newest.id) while this store was opening", path: objects.location)
                }
                throw KVError(.io, "WAL object vanished while the store was opening", path: WALFormat.name(id))
            }
            // An empty object where each WAL write is an object of its own is an upload cut
            // off before its body (SeaweedFS keeps those): it never held a record, and its
            // writer put the records under the next id (or died first). It is passed over
            // wherever it stands, not taken for a torn end.
            if bytes.isEmpty && !(objects is any AppendableObjectStore) {
                decoded.append((id, WALFormat.Contents(records: [], tear: nil)))
                continue
            }
            var contents = try WALFormat.decode(bytes, name: WALFormat.name(id))
            // A segment holding its header and nothing else (but reserved zeros) was cut
            // to its header by a machine crash, or is an open's fence or plug that a crash
            // left before its first sync: the writer makes a segment only to put records
            // or a sync marker in it, and its first sync makes the header durable with
            // them. It is taken as torn at its start, so that later segments' records are
            // not replayed after the gap. Not below the newest fence (an open after it
            // synced it as it is), nor where WAL objects are written whole.
            if objects is any AppendableObjectStore, contents.records.isEmpty, !contents.torn, !contents.marked,
               id > (current.fences.max() ?? 0) {
                contents.tear = .cut
                headerOnly.insert(id)
            }
            decoded.append((id, contents))
        }
        // A torn object is the tail of the log when nothing after it holds records (only
        // fences of opens that followed), or when an earlier open already accepted it.
        // Otherwise it is damage, or (after a machine crash) a sealed segment that was
        // never synced. The sync markers tell which on a local folder: a durable write is
        // acknowledged only once a marker follows every record, left after syncing the
        // sealed segments (format-wal.md), so when no later segment holds one, and their
        // writer wrote markers, no write after the tear was acknowledged as durable, and
        // the tear is the crash's. The log then ends there, as it does for any tear with
        // wal_recovery = point_in_time, and the objects after it that hold records are
        // deleted before the new manifest, so no later open replays them.
        // A later object holding only a sync marker counts: it says the torn one was synced.
        let lastWithRecords = decoded.lastIndex { !$0.contents.records.isEmpty || $0.contents.torn || $0.contents.marked }
        var torn = Set(current.tornWAL)
        var endedAt: UInt64?
        var dropped: [UInt64] = []
        for (index, object) in decoded.enumerated() {
            if endedAt != nil {
                if !object.contents.records.isEmpty || object.contents.torn { dropped.append(object.id) }
                continue
            }
            if let tear = object.contents.tear {
                // A store that writes WAL objects whole (one put each) can be left the last
                // one cut short by a writer that died during its upload (SeaweedFS keeps an
                // empty object for a PUT cut off before its body), never with a whole
                // record failing its checksum: that is damage, and the records it hides
                // were acknowledged.
                let appendable = objects is any AppendableObjectStore
                let tail = index == lastWithRecords && (appendable || tear == .cut)
                if !tail && !torn.contains(object.id) {
                    let later = decoded[(index + 1)...].map(\.contents).filter { !$0.records.isEmpty || $0.torn || $0.marked }
                    // Every object below the newest fence was synced by the open that wrote
                    // it: a crash cannot have cut those short.
                    let belowFence = object.id <= (current.fences.max() ?? 0)
                    let crashed = appendable && !belowFence && later.allSatisfy { ($0.marking || $0.headerless) && !$0.marked }
                    guard crashed || options.walRecoveryPointInTime else {
                        // Why it is not taken for a crash's tear, and what the way out costs.
                        let why = !appendable && index == lastWithRecords ? "a whole record in it is damaged, which an interrupted upload cannot leave"
                            : !appendable ? "this store writes WAL objects whole, so a crash tears only the last"
                            : belowFence ? "an open after it synced it, so the tear is damage"
                            : later.contains { $0.marked } ? "a later WAL object holds a sync marker, so acknowledged durable writes follow the damage"
                            : "later WAL objects come from a writer without sync markers, so whether acknowledged writes follow cannot be told"
                        let what = index == lastWithRecords ? "the newest WAL object is damaged" : "WAL object is damaged before the end of the log"
                        throw KVError(.corruption, "\(what): \(why) (lsm tuning wal_recovery = point_in_time ends the log there and drops what follows)", path: WALFormat.name(object.id))
                    }
                    if crashed {
                        // For a header-only segment (`headerOnly`) the note does not claim records
                        // were cut: it may be a fence or plug, and nothing was lost with it.
                        let lost = later.reduce(0) { $0 + $1.records.count }
                        let what = headerOnly.contains(object.id)
                            ? "holds nothing after its header (a crash came before its first sync)"
                            : "was cut short by a machine crash before it was synced"
                        let after = lost == 0 ? "no later WAL object holds records" : "\(lost) later records, none acknowledged as durable, are dropped"
                        let note = "zerofs lsm: \(objects.location): WAL object \(WALFormat.name(object.id)) \(what); the log ends there (\(after))\n"
                        FileHandle.standardError.write(Data(note.utf8))
                    }
                    endedAt = object.id
                }
                torn.insert(object.id)
            }
            for (seq, batch) in object.contents.records {
                apply(batch, firstSeq: seq, to: mem)
                lastSeq = max(lastSeq, seq + UInt64(max(batch.count, 1)) - 1)
            }
        }
        if let appendable = objects as? any AppendableObjectStore {
            // What was replayed may still be only in the operating system's cache (the
            // last process crashed before syncing it): made durable before this open's
            // manifest, and before any new write, which must not outlast the records it
            // follows. The dropped objects' deletion is made durable too, before the
            // manifest that lists the torn object as accepted.
            for id in walIDs where !dropped.contains(id) { try appendable.syncObject(WALFormat.name(id)) }
            for id in dropped { try appendable.deleteDurably(WALFormat.name(id)) }
        } else {
            for id in dropped { try objects.delete(WALFormat.name(id)) }
        }
        current.writerEpoch += 1
        // Table ids of this writer start in a range of their own, at the next multiple of
        // 2^40, above any id an older writer can still hand out: tables are written by
        // name, not put-if-absent, and a fenced writer finishing a table late must not
        // replace one of this writer's (nor may its garbage collection, which spares ids
        // at or above its own counter, delete them). By the counter, not the epoch: a
        // restored store starts again at epoch 0 with the counter it had.
        let (boundary, overflow) = (current.nextTableID / Self.tableIDsPerEpoch + 1).multipliedReportingOverflow(by: Self.tableIDsPerEpoch)
        if !overflow { current.nextTableID = boundary }
        nextTableID = current.nextTableID
        current.fences = Array((current.fences + [fenceID]).suffix(Manifest.maxFences))
        current.nextWALID = fenceID + 1
        current.tornWAL = torn.filter { $0 >= replayFrom }.sorted()
        current.lastSeq = lastSeq
        let (committing, written) = try Self.commitManifest(objects, current, from: max(currentID, listedNewest) + 1) { taken in
            KVError(.fenced, "another writer committed manifest \(taken) while this store was opening", path: objects.location)
        }
        current = written
        manifest = current
        manifestID = committing
        version = try openVersion(current.levels)
        // Segments below the replay start are left only because tables pointed into them
        // (or a collection had not come yet): each gets the grace of one once unpointed,
        // as before this restart.
        pointedSegments.withLock { seen in for id in existingWAL where id < replayFrom { seen[id] = .some(nil) } }
        startBackgroundThreads()
    }

    /// A read-only store over the state of one manifest (a checkpoint): no WAL, no threads.
    /// With `following`, a replica: it also replays the WAL after that manifest, and
    /// `catchUp()` moves it to what the writer wrote since.
    init(objects: any ObjectStore, options: LSMOptions, manifestID id: UInt64, following: Bool = false, identity: [UInt8]? = nil) throws {
        self.objects = objects
        self.options = options
        cache = BlockCache(capacity: options.blockCacheBytes)
        valueLog = ValueLog(objects: objects)
        walKick = MonitorCondition(on: wal)
        readOnly = true
        self.following = following
        followedIdentity = identity
        let loaded = try Self.loadManifest(objects, id)
        manifest = loaded
        manifestID = id
        nextTableID = loaded.nextTableID
        // A replica reads at the newest sequence number it replayed, never the manifest's:
        // the writer records the numbers its memtable holds, some not yet in any WAL
        // object, and records replayed later at or below that number would show one
        // operation at a time. Tables carry no sequence numbers, so a checkpoint's reads
        // do not depend on it.
        lastSeq = following ? 0 : loaded.lastSeq
        mem = Memtable(firstWAL: loaded.nextWALID)
        nextWALID = loaded.nextWALID
        version = Version(levels: [])
        version = try openVersion(loaded.levels)
    }

    /// The object holding the store's identity: 16 random bytes, written when the store is
    /// made (created or restored) and never changed after.
    static let identityName = "store-id"

    static func newIdentity() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    static func loadManifest(_ objects: any ObjectStore, _ id: UInt64) throws -> Manifest {
        let name = Manifest.name(id)
        guard let bytes = try objects.get(name) else { throw KVError(.corruption, "manifest object is missing", path: name) }
        return try Manifest.decode(bytes, name: name)
    }

    func openTable(_ meta: TableMeta) throws -> TableReader {
        if let open = openTables.withLock({ $0[meta.id]?.table }) { return open }
        guard let object = try objects.open(meta.name) else {
            throw KVError(.corruption, "table object is missing", path: meta.name)
        }
        let table = try TableReader(meta: meta, object: object, cache: cache, values: valueLog)
        openTables.withLock { $0[meta.id] = WeakTable(table: table) }
        return table
    }

    func openVersion(_ levels: [[TableMeta]]) throws -> Version {
        Version(levels: try levels.map { try $0.map { try openTable($0) } })
    }

    // MARK: Writing

    /// Inserts a batch's operations into `table` with consecutive sequence numbers. When
    /// values of `Memtable.inPlaceBytes` or more fill at least half the batch's allocation,
    /// they stay in the batch's bytes, which the memtable then keeps (`Memtable.keep`);
    /// otherwise everything is copied, so a batch of small or compressed values is not
    /// held for a few of its bytes.
    func apply(_ batch: WriteBatch, firstSeq: UInt64, to table: Memtable) {
        var large = 0
        // A batch smaller than one such value holds none: no second pass over it.
        if batch.rep.count >= Memtable.inPlaceBytes {
            batch.forEach { op, _, b in
                if op == .put && b.count >= Memtable.inPlaceBytes { large += b.count }
            }
        }
        let keep = large > 0 && large * 2 >= batch.rep.capacity
        // `forEach` lends bytes of `batch.rep` itself, the array the memtable keeps.
        if keep { table.keep(batch.rep, seq: firstSeq) }
        var seq = firstSeq
        batch.forEach { op, a, b in
            switch op {
            case .put:
                table.add(a, b, seq: seq, isDelete: false, inPlace: keep && b.count >= Memtable.inPlaceBytes)
            case .delete: table.add(a, UnsafeRawBufferPointer(start: nil, count: 0), seq: seq, isDelete: true)
            case .deleteRange: table.addRangeDelete(a, b, seq: seq)
            }
            seq += 1
        }
    }

    func write(_ batch: WriteBatch, durable: Bool) throws {
        var position: UInt64 = 0
        var tail: WALClaim?
        try state.withLock {
            while true {
                if let error = backgroundError { throw error }
                if closing { throw KVError(.closed, "store is closed") }
                let l0 = version.l0Pressure
                if immutables.count < options.maxImmutableMemtables && l0 < options.l0StopTrigger { break }
                // Throttle: never more memory than the configured memtables. A waiting
                // thread leaves its pool's turn to another (Blocking).
                Blocking.during { state.wait() }
            }
            if !batch.isEmpty {
                let first = lastSeq + 1
                position = try wal.withLock {
                    if let error = walError { throw error }
                    walPending.append((first, batch))
                    walPendingBytes += batch.rep.count
                    walAppended += 1
                    return walAppended
                }
                apply(batch, firstSeq: first, to: mem)
                lastSeq = first + UInt64(batch.count) - 1
                if mem.approximateBytes >= 2 * options.memtableBytes {
                    tail = try rotateMemtable()
                } else if mem.approximateBytes >= options.memtableBytes && !rotationWanted {
                    // The WAL thread rotates (rotateInBackground): writing the WAL buffer
                    // out first is its work, not this writer's.
                    rotationWanted = true
                    wal.withLock {
                        walRotationKick = true
                        walKick.signal()
                    }
                }
            } else {
                position = wal.withLock { walAppended }
            }
        }
        if let tail {
            state.withLock { state.broadcast() }
            try finishRotation(tail)
        }
        if durable || options.walSyncAlways {
            try flushWAL(upTo: position)
            return
        }
        // A full buffer is the WAL thread's job; a writer waits only when the buffer runs
        // far ahead of it (bounded memory).
        let buffered = wal.withLock { walPendingBytes }
        if buffered >= options.walBufferBytes * 4 {
            try Blocking.during { () throws in try flushWAL(upTo: position, sync: false) }
        } else if buffered >= options.walBufferBytes {
            wal.withLock { walKick.signal() }
        }
    }

    // MARK: Reading

    /// What a reader needs for one point in time.
    struct Snapshot {
        let mem: Memtable
        let immutables: [Memtable]
        let version: Version
        let seq: UInt64
    }

    func snapshot() -> Snapshot {
        state.withLock { Snapshot(mem: mem, immutables: immutables, version: version, seq: lastSeq) }
    }

    func get(_ key: [UInt8], at snap: Snapshot) throws -> [UInt8]? {
        try find(key, at: snap, inMemory: { $0 }, inTable: { Array($0) }, absent: { nil })
    }

    /// `get` with the value borrowed (KVReader.withValue): a value in a table is passed
    /// from its block; one in a memtable is copied out first, so `body` never runs under a
    /// memtable's lock.
    func withValue<R>(_ key: [UInt8], at snap: Snapshot, _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try find(key, at: snap, inMemory: { v in try v.withUnsafeBytes { try body($0) } }, inTable: { try body($0) },
                 absent: { try body(nil) })
    }

    /// `withValue` for many keys (KVReader.withValues): every key is looked up first, and
    /// the values kept in WAL segments whose tails fit their room are read after, together
    /// (ValueLog.read: neighbours with one system call); the others are passed as found.
    func withValues(
        _ keys: [[UInt8]], at snap: Snapshot, head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (_ index: Int, _ value: UnsafeRawBufferPointer?, _ placed: Int?) throws -> Void
    ) throws {
        var pointed: [PointedValue] = []
        pointed.reserveCapacity(keys.count)
        // `find`'s `pointed` is optional, so escaping: the bodies it calls must be too.
        try withoutActuallyEscaping(body) { body in
            for (index, key) in keys.enumerated() {
                let found: PointedValue? = try find(
                    key, at: snap,
                    inMemory: { v in try v.withUnsafeBytes { try body(index, $0, nil) }; return nil },
                    inTable: { v in try body(index, v, nil); return nil },
                    pointed: { object, pointer, table in
                        let rest = pointer.length - head
                        if let tail = tails[index], rest >= 0, rest <= tail.count {
                            return PointedValue(index: index, object: object, pointer: pointer, table: table,
                                                tail: UnsafeMutableRawBufferPointer(rebasing: tail[..<rest]))
                        }
                        // No room for it: read whole, as `withValue` would.
                        try ValueLog.read((object, pointer), table: table).withUnsafeBytes { try body(index, $0, nil) }
                        return nil
                    },
                    absent: { try body(index, nil, nil); return nil })
                if let found { pointed.append(found) }
            }
            try ValueLog.read(pointed, head: head) { index, first, placed in try body(index, first, placed) }
        }
    }

    /// The newest entry of `key` at `snap`: `inMemory` gets a memtable's value (a copy),
    /// `inTable` a table's (borrowed from its block), `pointed` (when given) where a table
    /// says a value kept in a WAL segment lies, `absent` runs when there is none.
    private func find<R>(_ key: [UInt8], at snap: Snapshot, inMemory: ([UInt8]) throws -> R,
                         inTable: (UnsafeRawBufferPointer) throws -> R,
                         pointed: ((any ReadableObject, ValuePointer, String) throws -> R)? = nil,
                         absent: () throws -> R) throws -> R {
        try key.withUnsafeBytes { k in
            switch findInMemory(k, at: snap) {
            case .value(let v): return try inMemory(v)
            case .deleted: return try absent()
            case .absent: break
            }
            switch try snap.version.get(k, pointed: pointed, inTable) {
            case .value(let r): return r
            case .deleted, .absent: return try absent()
            }
        }
    }

    /// The newest entry of `key` in the memtables at `snap`: the live one, then the
    /// immutable ones newest first. Not generic, so a generic caller (a `withValue` through
    /// `any KVReader`) does not look `Lookup`'s type up at every read.
    private func findInMemory(_ k: UnsafeRawBufferPointer, at snap: Snapshot) -> Lookup<[UInt8]> {
        var next = snap.immutables.count
        var table = snap.mem
        while true {
            let found = table.get(k, seq: snap.seq)
            if case .absent = found {} else { return found }
            guard next > 0 else { return .absent }
            next -= 1
            table = snap.immutables[next]
        }
    }

    /// What the newest-first path found: an entry, nothing in range, or a case for the
    /// merging iterator.
    enum VersionLookup {
        case found(KVEntry)
        case none
        case merge
    }

    /// `firstVersion`: the first entry at or after `from` below `end`, for keys that are
    /// `prefix` plus exactly `suffixLength` bytes. Sources are visited newest first; once
    /// an entry is found, an older source matters only if it may hold a key between `from`
    /// and that entry (an equal key in an older source is shadowed). When that gap is
    /// empty the older sources are skipped; when it holds a few keys, their full-key bloom
    /// filters decide; otherwise, and for tables the logical-key filter cannot rule out,
    /// the source is sought. Range tombstones, or a deletion as the answer, send the call
    /// to the merging iterator (`.merge`).
    func firstVersion(_ snap: Snapshot, from: [UInt8], end: [UInt8]?, prefix: [UInt8], suffixLength: Int) throws -> VersionLookup {
        if snap.version.hasTombstones || snap.mem.hasRangeDeletes || snap.immutables.contains(where: \.hasRangeDeletes) {
            return .merge
        }
        var best: (key: [UInt8], value: [UInt8], isDelete: Bool)?
        /// Keys that may lie between `from` and the best entry so far: nil when unknown or
        /// many. Computed once per new best entry.
        var gap: [[UInt8]]?
        func gapKeys() -> [[UInt8]]? {
            guard let best else { return nil }
            let width = prefix.count + suffixLength
            guard from.count == width, best.key.count == width, suffixLength == 8 else { return nil }
            let low = from.withUnsafeBytes { $0.loadBigEndianUInt64(at: width - 8) }
            let high = best.key.withUnsafeBytes { $0.loadBigEndianUInt64(at: width - 8) }
            guard high >= low, high - low <= 8 else { return nil }
            return (low..<high).map { suffix in
                var key = prefix
                for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: suffix >> UInt64(shift))) }
                return key
            }
        }
        /// No older source can hold a key between `from` and the best entry.
        var settled: Bool { gap?.isEmpty == true }
        func consider(_ cursor: MergeCursor) throws {
            try from.withUnsafeBytes { try cursor.seek($0) }
            guard cursor.isValid else { return }
            if let end, Bytes.compare(cursor.key, end) >= 0 { return }
            if let best, Bytes.compare(cursor.key, best.key) >= 0 { return }
            best = (Array(cursor.key), cursor.isDelete ? [] : Array(try cursor.value), cursor.isDelete)
            gap = gapKeys()
        }
        /// Whether a table may hold a key between `from` and the best entry so far.
        func mayMatter(_ table: TableReader) -> Bool {
            guard let gap else { return table.mayContainVersion(prefix, suffixLength: suffixLength) }
            return gap.contains { key in key.withUnsafeBytes { table.mayContain($0) } }
        }
        for table in [snap.mem] + snap.immutables.reversed() {
            if settled { break }
            try consider(MemtableMergeCursor(table, seq: snap.seq))
        }
        for table in snap.version.levels[0] where !settled {
            if mayMatter(table) { try consider(TableMergeCursor(table)) }
        }
        for level in 1..<snap.version.levels.count where !settled {
            let tables = snap.version.levels[level]
            var lo = 0
            var hi = tables.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if Bytes.compare(tables[mid].meta.largest, from) < 0 { lo = mid + 1 } else { hi = mid }
            }
            guard lo < tables.count else { continue }
            let upper = best?.key ?? end
            if upper.map({ Bytes.compare(tables[lo].meta.smallest, $0) >= 0 }) ?? false { continue }
            // One table holds the whole range below the best entry: its filters decide.
            if let upper, Bytes.compare(upper, tables[lo].meta.largest) <= 0 {
                if mayMatter(tables[lo]) { try consider(TableMergeCursor(tables[lo])) }
            } else {
                try consider(LevelMergeCursor(version: snap.version, level: level))
            }
        }
        guard let best else { return .none }
        return best.isDelete ? .merge : .found(KVEntry(key: best.key, value: best.value))
    }

    /// The merge sources of a snapshot, newest first; tables that cannot hold `prefix`
    /// (by their prefix bloom) and have no range tombstones are left out.
    func sources(_ snap: Snapshot, prefix: [UInt8]? = nil) -> [MergeCursor] {
        var result: [MergeCursor] = [MemtableMergeCursor(snap.mem, seq: snap.seq)]
        for table in snap.immutables.reversed() { result.append(MemtableMergeCursor(table, seq: snap.seq)) }
        for table in snap.version.levels[0] {
            if let prefix, table.tombstones.isEmpty, !table.mayContainPrefix(prefix) { continue }
            result.append(TableMergeCursor(table))
        }
        for level in 1..<snap.version.levels.count where !snap.version.levels[level].isEmpty {
            result.append(LevelMergeCursor(version: snap.version, level: level))
        }
        return result
    }
}

extension UnsafeRawBufferPointer {
    /// The big-endian UInt64 at `offset` (a version suffix).
    fileprivate func loadBigEndianUInt64(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(self[offset + i]) }
        return value
    }
}
