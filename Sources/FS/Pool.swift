// Pool: one store holding every dataset and snapshot (Docs/datasets.md). It owns what the
// datasets share: the store, the version forest and registry, the id counters, the commit
// lock, group commit, the per-inode locks, and the background thread that works through
// the reclaim queue and collects dead versions. A `FileSystem` is a handle on one dataset
// or snapshot of the pool, made (once per id) by `filesystem(_:)`.
//
// Opening formats an empty store (dataset 0 "root", version 1, root directory inode 1),
// upgrades a store made before datasets existed (one batch adds its dataset records), or
// loads the forest.

import Engine
import Foundation
import Synchronization

public final class Pool: Sendable {
    public let store: any KVBackend
    public let options: FSOptions
    /// Bytes per chunk, as formatted.
    public let chunkSize: Int
    public let incarnation: UInt64
    public let crashPoints = CrashPoints()
    /// What the collector did since the pool opened (Collector.swift).
    let collected = Locked(CollectedCount())

    let locks = LockTable()
    /// Odd while the collector commits a merge batch, which moves entries down to a child
    /// and raises content hints (Collector.swift); even otherwise. A lookup that reads a hint and
    /// then searches below it without the directory's lock looks again when this moved
    /// (`FileSystem.entry`).
    let mergeBatches = Atomic<UInt64>(0)
    let syncGate = SyncGate()
    let worker = BackgroundLoop()
    let readAhead = ReadAhead()
    /// Ranges read ahead for sequential readers, bytes and all (ReadAhead).
    let preparedReads = PreparedReads()
    /// Reads in progress, which the collector waits for before it moves what a dead
    /// version showed (ReadGate).
    let readGate = ReadGate()
    /// Held through `refreshHandles`, so that a refresh computed from an older forest is
    /// never applied after one computed from a newer.
    let refreshing = Mutex(())
    /// Versions dead when reads were last drained (`quiesceReads`): no read sees them. A
    /// dead version stays dead, except one that absorbs its child (Collector+Absorb.swift),
    /// which leaves this set then.
    let drainedDead = Locked<Set<UInt64>>([])
    /// On a replica: the thread that follows the writer, and the store generation the
    /// pool's state was last loaded at (Replica.swift).
    let follower = BackgroundLoop()
    let followedGeneration = Locked<UInt64?>(nil)
    /// The last failure of the background catch-up told on standard error (nil once one
    /// succeeds), so a lasting one is told once.
    let followFailure = Locked<String?>(nil)
    let pacer = Pacer()
    /// Damaged reclaim records found when the queue was loaded.
    let skippedReclaimRecords = Locked(0)
    /// The reclaim queue (0x07) in memory: loaded at open, then changed by every commit
    /// with the records its batch puts or deletes. The reclaimer reads it instead of
    /// scanning the queue's keys, which in an lsm store step over every record already
    /// done (tombstones stay until compaction drops them): a scan per unlink grew with
    /// every unlink before it.
    let reclaimQueue = Locked<[ReclaimID: ReclaimKind]>([:])
    /// Next cookie per directory inode, shared by every dataset (clones share inode numbers,
    /// and a counter never rewinds, so cookies never repeat in any version of a directory).
    /// Read from the store once, then kept here; emptied past `cookieCacheLimit` directories.
    let cookieCounters = Locked<[UInt64: UInt64]>([:])
    static let cookieCacheLimit = 65_536
    /// The commit lock: ids, the forest, statistics and change sets.
    let state: Locked<PoolState>
    let handles = Locked<[UInt64: FileSystem]>([:])
    /// The forest generation the collector last pruned dead internal versions at.
    let prunedGeneration = Locked<UInt64>(UInt64.max)
    /// USED of snapshots, computed lazily, keyed by what it depends on.
    let usedCache = Locked<[UInt64: (key: [UInt64], bytes: UInt64)]>([:])

    struct PoolState {
        var nextInode: UInt64
        var nextVersion: UInt64
        var nextDataset: UInt64
        var defaultDataset: UInt64
        var forest: Forest
        /// Statistics of every dataset and snapshot, by dataset id.
        var counters: [UInt64: FSCounters]
        /// Per head version: the inodes already in its change index.
        var changed: [UInt64: Set<UInt64>]
        /// The inode counter as `commit` last wrote it (0: not yet); a commit writes the
        /// counter only when it moved.
        var nextInodeCommitted: UInt64 = 0
        /// Dead versions with several children, which the collector prunes, and for each
        /// the inodes that batches below it touched since the collector last took them:
        /// their entries there may now be shadowed for every live version. Rebuilt when
        /// the forest changes shape (`branchPointsGeneration`).
        var branchPoints: [UInt64: Set<UInt64>] = [:]
        var branchPointsGeneration = UInt64.max
        /// Heads a dead root version is merging into (Collector.merge), each with the inodes
        /// batches there touched since the collector last took them: their whiteouts (and
        /// shrink marks) were written with the dead version still below.
        var rootMerges: [UInt64: Set<UInt64>] = [:]

        /// Notes that a batch at `view`'s head touched `touched` (Collector, "pruning").
        mutating func noteTouched(_ view: VersionView, _ touched: [UInt64]) {
            if branchPointsGeneration != forest.generation {
                let live = forest.referenced
                var points: [UInt64: Set<UInt64>] = [:]
                for (version, children) in forest.children where children.count >= 2 && !live.contains(version) {
                    points[version] = branchPoints[version] ?? []
                }
                branchPoints = points
                branchPointsGeneration = forest.generation
            }
            guard !branchPoints.isEmpty else { return }
            for version in view.ancestors where branchPoints[version] != nil { branchPoints[version]!.formUnion(touched) }
        }
    }

    /// Opens (formatting or upgrading when needed) the pool stored in `store`. The caller
    /// keeps ownership of the store and closes it after `close()`.
    public static func open(_ store: any KVBackend, options: FSOptions = FSOptions()) throws(FSError) -> Pool {
        let pool = try Pool(store: store, options: options)
        // A read-only store (a checkpoint, a replica) cannot be changed: no background work
        // runs on it. A replica's pool follows the writer instead (Replica.swift).
        if !store.isReadOnly { try pool.loadReclaimQueue() }
        if options.backgroundReclaim, !store.isReadOnly { pool.startWorker() }
        if store.isReplica, options.replicaPollMilliseconds > 0 { pool.startFollowing() }
        return pool
    }

    /// Gives the filesystem in `store` a new incarnation, so that file handles of the old
    /// one answer STALE on it (format-nfs-handle.md): for a store restored from a
    /// checkpoint, which is another store holding the same numbers. Returns it; nil when
    /// `store` holds no filesystem.
    public static func renewIncarnation(_ store: any KVBackend) throws(FSError) -> UInt64? {
        let key = FSKeys.system(SystemRecords.incarnationName)
        guard try kv({ try store.get(key) }) != nil else { return nil }
        let incarnation = UInt64.random(in: 1...UInt64.max)
        var batch = WriteBatch()
        batch.put(key, SystemRecords.encodeUInt64(incarnation))
        try kv { try store.write(batch, durable: true) }
        return incarnation
    }

    private init(store: any KVBackend, options: FSOptions) throws(FSError) {
        self.store = store
        self.options = options
        guard let formatRecord = try kv({ try store.get(FSKeys.system(SystemRecords.formatName)) }) else {
            guard !store.isReadOnly else { throw FSError(.EROFS, "the store is empty and read-only") }
            guard FSOptions.validChunkSizes.contains(options.chunkSize) else {
                throw FSError(.EINVAL, "chunk size \(options.chunkSize) is not a power of two from 4 KiB to 1 MiB")
            }
            chunkSize = options.chunkSize
            incarnation = UInt64.random(in: 1...UInt64.max)
            let (batch, loaded) = Self.formatted(chunkSize: chunkSize, incarnation: incarnation)
            try kv { try store.write(batch, durable: true) }
            state = Locked(loaded)
            return
        }
        chunkSize = try SystemRecords.decodeFormat(formatRecord)
        guard let incarnationRecord = try kv({ try store.get(FSKeys.system(SystemRecords.incarnationName)) }) else {
            throw FSError.corrupt("system record 'incarnation' missing")
        }
        incarnation = try SystemRecords.decodeUInt64(incarnationRecord, "incarnation")
        if try kv({ try store.get(FSKeys.system(SystemRecords.nextVersionName)) }) == nil {
            let (batch, loaded) = try Self.upgraded(store)
            if !store.isReadOnly { try kv { try store.write(batch, durable: true) } }
            state = Locked(loaded)
        } else {
            state = Locked(try Self.load(store))
        }
    }

    /// The records of a new filesystem: dataset 0 "root" at version 1 with root inode 1.
    private static func formatted(chunkSize: Int, incarnation: UInt64) -> (WriteBatch, PoolState) {
        var root = Inode(ino: FileSystem.rootInode, type: .directory, mode: 0o755, uid: 0, gid: 0, now: FileSystem.now())
        root.parent = FileSystem.rootInode
        root.contentVersion = 1
        let record = DatasetRecord(id: FileSystem.rootDataset, name: Array("root".utf8), version: 1,
                                   rootInode: FileSystem.rootInode, createdAt: FileSystem.now())
        let counters = FSCounters(inodes: 1, bytes: 0)
        var batch = WriteBatch()
        batch.put(FSKeys.system(SystemRecords.formatName), SystemRecords.encodeFormat(chunkSize: chunkSize))
        batch.put(FSKeys.system(SystemRecords.incarnationName), SystemRecords.encodeUInt64(incarnation))
        batch.put(FSKeys.versioned(FSKeys.inode(FileSystem.rootInode), 1), root.encode())
        batch.put(FSKeys.cookieCounter(FileSystem.rootInode), SystemRecords.encodeUInt64(1))
        batch.put(FSKeys.changeIndex(1, FileSystem.rootInode), [])
        var state = PoolState(nextInode: 2, nextVersion: 2, nextDataset: 1, defaultDataset: FileSystem.rootDataset,
                              forest: Forest(), counters: [FileSystem.rootDataset: counters],
                              changed: [1: [FileSystem.rootInode]])
        state.forest.addVersion(1, VersionNode(parent: 0, written: 0))
        state.forest.put(record)
        putRecords(&batch, state, datasets: [record], versions: [1])
        return (batch, state)
    }

    /// A store formatted before datasets existed: one version (1), no dataset records, and
    /// statistics holding (inodes, chunk count). Adds dataset 0 with version 1 as its head,
    /// computing its statistics and WRITTEN with one scan (once, at the first open).
    private static func upgraded(_ store: any KVBackend) throws(FSError) -> (WriteBatch, PoolState) {
        guard let next = try kv({ try store.get(FSKeys.system(SystemRecords.nextInodeName)) }) else {
            throw FSError.corrupt("system record 'next-inode' missing")
        }
        let reads = VersionedStore(store: store, view: VersionView(head: 1))
        var counters = FSCounters()
        try reads.scan(prefix: [KeyKind.inode.rawValue]) { logical, value throws(FSError) in
            guard logical.count == 9 else { return true }
            let inode = try Inode.decode(ino: logical.readBigEndian(at: 1), value)
            counters.inodes += 1
            if inode.type == .regular || inode.type == .symlink { counters.bytes &+= inode.size }
            return true
        }
        var written: UInt64 = 0
        try kv {
            try store.scan(.prefix([KeyKind.chunk.rawValue])) { _, value in
                written &+= UInt64(value.count)
                return true
            }
        }
        let record = DatasetRecord(id: FileSystem.rootDataset, name: Array("root".utf8), version: 1,
                                   rootInode: FileSystem.rootInode, createdAt: FileSystem.now())
        var state = PoolState(nextInode: try SystemRecords.decodeUInt64(next, "next inode"), nextVersion: 2, nextDataset: 1,
                              defaultDataset: FileSystem.rootDataset, forest: Forest(),
                              counters: [FileSystem.rootDataset: counters], changed: [:])
        state.forest.addVersion(1, VersionNode(parent: 0, written: written))
        state.forest.put(record)
        var batch = WriteBatch()
        putRecords(&batch, state, datasets: [record], versions: [1])
        return (batch, state)
    }

    static func load(_ store: any KVReader) throws(FSError) -> PoolState {
        func system(_ name: String) throws(FSError) -> UInt64 {
            guard let value = try kv({ try store.get(FSKeys.system(name)) }) else {
                throw FSError.corrupt("system record '\(name)' missing")
            }
            return try SystemRecords.decodeUInt64(value, name)
        }
        var state = PoolState(nextInode: try system(SystemRecords.nextInodeName),
                              nextVersion: try system(SystemRecords.nextVersionName),
                              nextDataset: try system(SystemRecords.nextDatasetName),
                              defaultDataset: try system(SystemRecords.defaultDatasetName),
                              forest: Forest(), counters: [:], changed: [:])
        var raw: [(KeyKind, UInt64, [UInt8])] = []
        try kv {
            for kind in [KeyKind.dataset, .versionNode, .stats] {
                try store.scan(.prefix([kind.rawValue])) { key, value in
                    guard key.count == 9 else { return true }
                    raw.append((kind, key.readBigEndian(at: 1), Array(value)))
                    return true
                }
            }
        }
        for (kind, id, value) in raw {
            switch kind {
            case .dataset: state.forest.put(try DatasetRecord.decode(id: id, value))
            case .versionNode: state.forest.addVersion(id, try VersionNode.decode(id: id, value))
            default: state.counters[id] = try FSCounters.decode(value)
            }
        }
        for record in state.forest.datasets.values {
            guard state.forest.versions[record.version] != nil else {
                throw FSError.corrupt("dataset \(record.id) names version \(record.version), which does not exist")
            }
            if state.counters[record.id] == nil { throw FSError.corrupt("dataset \(record.id) has no statistics") }
        }
        guard state.forest.datasets[state.defaultDataset] != nil else {
            throw FSError.corrupt("the default dataset \(state.defaultDataset) does not exist")
        }
        return state
    }

    /// Puts the records of `datasets` (record, registry name, statistics) and `versions`,
    /// and the id counters, as they are in `state`.
    static func putRecords(_ batch: inout WriteBatch, _ state: PoolState, datasets: [DatasetRecord], versions: [UInt64]) {
        for record in datasets {
            batch.put(FSKeys.dataset(record.id), record.encode())
            batch.put(state.forest.registryKey(record), SystemRecords.encodeUInt64(record.id))
            if let counters = state.counters[record.id] { batch.put(FSKeys.stats(record.id), counters.encode()) }
        }
        for id in versions {
            if let node = state.forest.versions[id] { batch.put(FSKeys.versionNode(id), node.encode()) }
        }
        batch.put(FSKeys.system(SystemRecords.nextInodeName), SystemRecords.encodeUInt64(state.nextInode))
        batch.put(FSKeys.system(SystemRecords.nextVersionName), SystemRecords.encodeUInt64(state.nextVersion))
        batch.put(FSKeys.system(SystemRecords.nextDatasetName), SystemRecords.encodeUInt64(state.nextDataset))
        batch.put(FSKeys.system(SystemRecords.defaultDatasetName), SystemRecords.encodeUInt64(state.defaultDataset))
    }

    /// Stops the background work and makes everything durable. The store stays open.
    public func close() throws(FSError) {
        worker.stop()
        readAhead.stop()
        follower.stop()
        // Deferred atimes (AccessTimes.swift) go into the store before the last flush; a
        // storage failure there is the flush's to report.
        if !crashPoints.stopped, !store.isReadOnly { try? flushAccessTimes() }
        handles.withLock { $0.removeAll() }
        if !crashPoints.stopped, !store.isReadOnly { try kv { try store.flush() } }
    }

    // MARK: handles

    /// The filesystem of dataset or snapshot `id` (one handle per id, shared).
    public func filesystem(_ id: UInt64) throws(DatasetError) -> FileSystem {
        try handles.withLock { open throws(DatasetError) -> FileSystem in
            if let handle = open[id] { return handle }
            let snapshot = state.withLock { s -> (DatasetRecord, VersionView)? in
                s.forest.datasets[id].map { ($0, s.forest.view($0.version)) }
            }
            guard let (record, view) = snapshot else { throw DatasetError(.notFound, "no dataset or snapshot with id \(id)") }
            let handle = FileSystem(pool: self, record: record, view: view)
            open[id] = handle
            return handle
        }
    }

    /// The filesystem of the dataset "a/b" or the snapshot "a/b@s".
    public func filesystem(named name: String) throws(DatasetError) -> FileSystem {
        try filesystem(try resolve(name))
    }

    /// The default dataset's filesystem (what a client mounting "/" sees).
    public func defaultFilesystem() throws(DatasetError) -> FileSystem {
        try filesystem(state.withLock { $0.defaultDataset })
    }

    /// Brings every open handle up to date with the forest (after a head moved, a version
    /// merged away, or a dataset went).
    func refreshHandles() {
        refreshing.withLock { _ in
            let open = handles.withLock { Array($0.values) }
            let records = state.withLock { s in
                open.map { handle in s.forest.datasets[handle.dataset].map { ($0, s.forest.view($0.version)) } }
            }
            for (handle, record) in zip(open, records) { handle.refresh(record) }
            // A deleted dataset's handle answers ESTALE to whoever holds it; new lookups of
            // its id find nothing.
            let gone = zip(open, records).filter { $0.1 == nil }.map { $0.0.dataset }
            if !gone.isEmpty { handles.withLock { map in for id in gone { map[id] = nil } } }
        }
    }

    /// Brings every handle up to date with the forest as of now, then waits for the reads
    /// that began before (ReadGate), and notes the versions dead by then (`drainedDead`):
    /// what they showed may be moved, as no read can see it any more (Collector.swift).
    func quiesceReads() {
        let dead = state.withLock { s in
            let live = s.forest.referenced
            return Set(s.forest.versions.keys.filter { !live.contains($0) })
        }
        refreshHandles()
        readGate.drain()
        drainedDead.withLock { $0 = dead }
    }

    /// Whether reads were drained since every one of `versions` died (`quiesceReads`).
    func drained(_ versions: some Sequence<UInt64>) -> Bool {
        drainedDead.withLock { dead in versions.allSatisfy { dead.contains($0) } }
    }

    // MARK: commit

    /// Applies `batch` atomically with the statistics, WRITTEN counters and change index
    /// records it implies (written as absolute values, under the commit lock). Visible on
    /// return but not durable: with `durable` the result names the sync to await
    /// (`awaitDurable`) once every lock is released, so concurrent callers share syncs.
    func commit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) -> PendingSync {
        try crashPoints.pass("\(op).before-commit")
        let sequence = try state.withLock { s throws(FSError) -> UInt64 in
            var counters: FSCounters?
            var newlyChanged: [UInt64] = []
            if let dataset = batch.dataset {
                guard let current = s.counters[dataset], let record = s.forest.datasets[dataset] else {
                    throw FSError(.ESTALE, "dataset \(dataset) was deleted")
                }
                guard record.version == batch.view.head, !record.readonly else {
                    throw FSError(.EROFS, "\(s.forest.fullName(dataset)) is read-only")
                }
                var updated = current
                updated.inodes = try FileSystem.adjust(updated.inodes, by: batch.inodeDelta, "inode count")
                updated.bytes = try FileSystem.adjust(updated.bytes, by: batch.bytesDelta, "byte count")
                counters = updated
                // filter, not subtracting: Set.subtracting walks the argument, which grows
                // with every inode the version ever changed.
                let known = s.changed[batch.view.head]
                newlyChanged = batch.touched.filter { !(known?.contains($0) ?? false) }
                for ino in newlyChanged { batch.batch.put(FSKeys.changeIndex(batch.view.head, ino), []) }
                // Statistics as absolute values, when they change (most renames, attribute
                // changes and atime updates leave them).
                if updated != current { batch.batch.put(FSKeys.stats(dataset), updated.encode()) }
            }
            var nodes: [(UInt64, VersionNode)] = []
            for (version, delta) in batch.written where delta != 0 {
                // A version collected meanwhile has nothing left to count.
                guard var node = s.forest.versions[version] else { continue }
                node.written = try FileSystem.adjust(node.written, by: delta, "written bytes of version \(version)")
                nodes.append((version, node))
                batch.batch.put(FSKeys.versionNode(version), node.encode())
            }
            // The inode counter only when it moved: an inode this batch uses was allocated
            // (and the counter moved) before it.
            let writesCounter = s.nextInode != s.nextInodeCommitted
            if writesCounter { batch.batch.put(FSKeys.system(SystemRecords.nextInodeName), SystemRecords.encodeUInt64(s.nextInode)) }
            let applied = batch.batch
            try kv { try store.write(applied, durable: false) }
            if writesCounter { s.nextInodeCommitted = s.nextInode }
            if !batch.reclaims.isEmpty {
                reclaimQueue.withLock { queue in
                    for (id, kind) in batch.reclaims { queue[id] = kind }
                }
            }
            if let dataset = batch.dataset, let counters {
                s.counters[dataset] = counters
                if !newlyChanged.isEmpty { s.changed[batch.view.head, default: []].formUnion(newlyChanged) }
                if !batch.touched.isEmpty {
                    s.noteTouched(batch.view, batch.touched)
                    if s.rootMerges[batch.view.head] != nil { s.rootMerges[batch.view.head]!.formUnion(batch.touched) }
                }
            }
            for (version, node) in nodes { s.forest.setWritten(version, node.written) }
            return syncGate.noteApplied()
        }
        if let dataset = batch.dataset, !batch.touched.isEmpty {
            let handle = handles.withLock { $0[dataset] }
            handle?.inodeVersions.committed(batch.touched, at: batch.view.head)
            // Only the dataset's own handle sees its head (a snapshot moves the head on).
            if let handle {
                var written = handle.accessTimesWritten(batch.inodes)
                if !batch.created.isEmpty {
                    written = written.map { change in batch.created.contains(change.0) ? (change.0, nil) : change }
                }
                handle.inodeCache.apply(written)
                handle.entryCache.apply(batch.entries)
            }
        } else if batch.dataset == nil {
            let written = batch.recordsWritten
            if !written.inodes.isEmpty || written.entries || written.ranges {
                for handle in handles.withLock({ Array($0.values) }) {
                    if written.ranges { handle.inodeCache.reset() } else { handle.inodeCache.forget(written.inodes) }
                    if written.ranges || written.entries { handle.entryCache.reset() }
                }
            }
        }
        try crashPoints.pass("\(op).after-commit")
        // A background batch is paced by its worker, once its locks are released.
        if !batch.background, batch.reclaims.contains(where: { $0.kind != nil }) {
            // New work for the reclaimer (a large file deleted, a file shrunk).
            worker.wake()
        }
        return PendingSync(sequence: durable ? sequence : nil)
    }

    /// Applies `batch` under the commit lock the caller holds (`state`), after `change`
    /// computed it from `s`: the dataset operations, which change records and the forest.
    func applyLocked(_ batch: WriteBatch) throws(FSError) -> PendingSync {
        try kv { try store.write(batch, durable: false) }
        return PendingSync(sequence: syncGate.noteApplied())
    }

    /// Waits until the batch behind `pending` is durable. REQUIRES: no inode lock, barrier
    /// or rename mutex held (a sync may take milliseconds; others must not queue behind it).
    /// Inside `DurabilityDeferral.deferring` the wait is handed to the caller instead.
    func awaitDurable(_ pending: PendingSync) throws(FSError) {
        guard let sequence = pending.sequence else { return }
        if let deferral = DurabilityDeferral.current {
            deferral.pending = deferral.pending.merged(pending)
            return
        }
        try syncGate.waitDurable(sequence, syncStore)
    }

    /// Calls `then` once the batches behind `pending` are durable (with nil), or once a
    /// sync meant to cover them failed (with its error): at once when they already are;
    /// otherwise later, from the thread that runs that sync. This thread runs the sync
    /// itself when none is running, and never waits for another thread's.
    public func whenDurable(_ pending: PendingSync, then: @escaping @Sendable (FSError?) -> Void) {
        guard let sequence = pending.sequence else { return then(nil) }
        syncGate.whenDurable(sequence, syncStore, then: then)
    }

    private func syncStore() throws(FSError) {
        try kv { try store.write(WriteBatch(), durable: true) }
    }

    /// Stored bytes of every chunk entry of every version (WRITTEN summed over the forest).
    public var storedBytes: UInt64 {
        state.withLock { s in s.forest.versions.values.reduce(UInt64(0)) { $0 &+ $1.written } }
    }

    func allocateInode() -> UInt64 {
        state.withLock { s in
            defer { s.nextInode += 1 }
            return s.nextInode
        }
    }
}
