// FileSystem: a POSIX filesystem: one dataset or snapshot of a Pool (Pool.filesystem).
// A snapshot's handle, or a read-only dataset's, answers EROFS to every change.
//
// Thread safety: every operation may be called from any thread. Changing operations hold
// the dataset's barrier shared (so a snapshot sees each operation whole), then lock the
// stripes of the inodes they change (LockTable, shared by the pool); a rename that moves
// between parents also takes the dataset's rename mutex first. Each operation commits one
// atomic write batch; statistics, the inode counter and the change index live in memory
// and are written into the batch, as absolute values, under the pool's short commit lock,
// which also applies the batch (not durably). Durability is awaited after the operation
// has released every lock through the SyncGate, so concurrent callers share syncs; the
// reply still follows durability.

import Engine
import Foundation
import Synchronization

public final class FileSystem: Sendable {
    /// The root dataset's root directory.
    public static let rootInode: UInt64 = 1
    /// The root dataset, made when the store is formatted.
    public static let rootDataset: UInt64 = 0

    public let pool: Pool
    /// The dataset or snapshot id.
    public let dataset: UInt64
    /// This dataset's root directory.
    public let root: UInt64
    let renameLock = PlainLock()
    let barrier = Barrier()
    /// Where each file's next sequential read would start (ReadAhead).
    let sequentialReads = Locked(SequentialReads())
    let current: Locked<HandleState>
    /// Where inode records were last found, so reads with snapshots are point gets.
    let inodeVersions: InodeVersions
    /// Inodes and directory entries as this handle's view shows them (HandleCache.swift).
    let inodeCache: InodeCache
    let entryCache: EntryCache
    /// Atimes moved by reads and not yet written (AccessTimes.swift).
    let deferredAccessTimes = Locked<[UInt64: Timestamp]>([:])

    struct HandleState {
        var view: VersionView
        var writable: Bool
        var isSnapshot: Bool
        var deleted: Bool
    }

    init(pool: Pool, record: DatasetRecord, view: VersionView) {
        self.pool = pool
        dataset = record.id
        root = record.rootInode
        inodeVersions = InodeVersions(capacity: pool.options.inodeVersionEntries)
        // A replica's records change under it as it follows the writer: no cache there. A
        // snapshot's handle, of which many may be open (every `.snapshots` entry browsed),
        // keeps a sixteenth of the slots.
        let share = pool.store.isReplica ? 0 : record.isSnapshot ? 16 : 1
        inodeCache = InodeCache(entries: share == 0 ? 0 : pool.options.inodeCacheEntries / share)
        entryCache = EntryCache(entries: share == 0 ? 0 : pool.options.entryCacheEntries / share)
        current = Locked(HandleState(view: view, writable: !record.readonly && !record.isSnapshot && !pool.store.isReadOnly,
                                    isSnapshot: record.isSnapshot, deleted: false))
    }

    /// Opens (formatting when empty) the pool stored in `store` and returns the root
    /// dataset's filesystem. `close()` closes the pool. The caller keeps ownership of the
    /// store and closes it after `close()`.
    public static func open(_ store: any KVBackend, options: FSOptions = FSOptions()) throws(FSError) -> FileSystem {
        let pool = try Pool.open(store, options: options)
        do {
            return try pool.filesystem(rootDataset)
        } catch {
            throw FSError(.EIO, error.description)
        }
    }

    /// Closes the pool this filesystem belongs to: stops its background work and makes
    /// everything durable. The store stays open.
    public func close() throws(FSError) { try pool.close() }

    func refresh(_ found: (DatasetRecord, VersionView)?) {
        let change = current.withLock { state -> (old: VersionView, new: VersionView?)? in
            guard let (record, view) = found else {
                state.deleted = true
                state.writable = false
                return (state.view, nil)
            }
            let old = state.view
            state.view = view
            state.writable = !record.readonly && !record.isSnapshot && !pool.store.isReadOnly
            return old != view ? (old, view) : nil
        }
        // After the view: a read that saw the old view cannot fill the new map.
        guard let change else { return }
        inodeCache.reset()
        entryCache.reset()
        pool.preparedReads.removeAll(dataset)
        if let new = change.new { inodeVersions.moved(from: change.old, to: new) } else { inodeVersions.reset() }
    }

    // MARK: what the pool shares

    public var store: any KVBackend { pool.store }
    public var options: FSOptions { pool.options }
    public var chunkSize: Int { pool.chunkSize }
    public var incarnation: UInt64 { pool.incarnation }
    public var crashPoints: CrashPoints { pool.crashPoints }
    var locks: LockTable { pool.locks }
    var syncGate: SyncGate { pool.syncGate }
    var view: VersionView { current.withLock { $0.view } }
    /// False for a snapshot, a read-only dataset and a deleted one.
    public var isWritable: Bool { current.withLock { $0.writable } }
    public var isSnapshot: Bool { current.withLock { $0.isSnapshot } }

    // MARK: shared helpers

    var reads: VersionedStore { VersionedStore(store: store, view: view) }

    static func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(seconds: Int64(spec.tv_sec), nanoseconds: UInt32(spec.tv_nsec))
    }

    /// The inode `ino`, or ESTALE when no such inode exists at this version.
    func inode(_ ino: UInt64) throws(FSError) -> Inode {
        // The ticket before the view: a read that saw an old view cannot fill the cache.
        let (cached, ticket) = inodeCache.lookup(ino)
        if let cached { return cached }
        let inode = withDeferredAccessTime(try storedInode(ino))
        inodeCache.fill(ino, inode, ticket)
        return inode
    }

    /// `inode`, read from the store past the cache.
    func storedInode(_ ino: UInt64) throws(FSError) -> Inode {
        var value: [UInt8]?
        let plain = reads
        if plain.view.ancestors.isEmpty {
            // One key to read, no version to guess. `get`, not the borrowing `withValue`:
            // that one is generic, and through `any KVReader` costs more in type lookups
            // than copying an inode's bytes.
            value = try plain.get(FSKeys.inode(ino))
        } else {
            // The generation before the view (InodeVersions), so the view is read again.
            let (guess, generation) = inodeVersions.guess(ino)
            let reads = self.reads
            if let found = try reads.lookup(FSKeys.inode(ino), probe: guess) {
                if found.version != guess { inodeVersions.found(ino, at: found.version, generation: generation) }
                value = found.value.first == ValueTag.live.rawValue ? found.value : nil
            }
        }
        guard let value else { throw FSError(.ESTALE, "no inode \(ino)") }
        return try withBytes(value) { raw throws(FSError) in try Inode.decode(ino: ino, raw) }
    }

    /// The cached inodes and entries (HandleCache.swift) that differ from the store's
    /// records, each described: none, unless a cache is wrong. Each is compared under the
    /// lock of its inode or directory, where no change can be half done; a check for tests.
    public func cacheMismatches() throws(FSError) -> [String] {
        var found: [String] = []
        for (key, _) in entryCache.cached {
            try locks.withLocks([key.dir]) { () throws(FSError) in
                guard let cached = entryCache.lookup(key).value else { return }
                let stored = try storedEntry(key.dir, key.name)
                if stored != cached {
                    found.append("entry \(Self.show(key.name)) of \(key.dir): cached \(String(describing: cached)), stored \(String(describing: stored))")
                }
            }
        }
        for (ino, _) in inodeCache.cached {
            try locks.withLocks([ino]) { () throws(FSError) in
                guard let cached = inodeCache.lookup(ino).value else { return }
                switch Result(catching: { () throws(FSError) in withDeferredAccessTime(try storedInode(ino)) }) {
                case .success(let stored):
                    if stored != cached { found.append("inode \(ino): cached \(cached), stored \(stored)") }
                case .failure(let error) where error.code == .ESTALE:
                    found.append("inode \(ino): cached \(cached), not stored")
                case .failure(let error):
                    throw error
                }
            }
        }
        return found
    }

    func directory(_ ino: UInt64) throws(FSError) -> Inode {
        let dir = try inode(ino)
        guard dir.type == .directory else { throw FSError(.ENOTDIR, "inode \(ino) is not a directory") }
        return dir
    }

    /// The entry `name` of directory `dir`, or nil. `hint`: the directory's content version
    /// (0 when the caller has not read its inode).
    func entry(_ dir: UInt64, _ name: [UInt8], hint: UInt64 = 0) throws(FSError) -> DirEntry? {
        let key = EntryKey(dir: dir, name: name)
        let (cached, ticket) = entryCache.lookup(key)
        if let cached { return cached }
        // With ancestors the hint (the directory's content version) steers the search, and
        // one the caller read before a change at the head would miss what the change wrote.
        // So it is read again after the ticket: a change that lands before that read shows
        // in it, and one that lands after moves the entry's slot, and this read fills nothing.
        // (A view that changes meanwhile moves the cache's epoch: nothing is filled either.)
        guard hint != 0, !view.ancestors.isEmpty else {
            let entry = try storedEntry(dir, name, hint: hint)
            entryCache.fill(key, entry, ticket)
            return entry
        }
        // Without the directory's lock a merge batch of the collector may move the entry
        // above the hint read here before the search below it: then it looks again.
        while true {
            let before = pool.mergeBatches.load(ordering: .sequentiallyConsistent)
            if before & 1 == 1 {
                sched_yield()
                continue
            }
            let entry = try storedEntry(dir, name, hint: try inode(dir).contentVersion)
            if pool.mergeBatches.load(ordering: .sequentiallyConsistent) == before {
                entryCache.fill(key, entry, ticket)
                return entry
            }
        }
    }

    /// `entry`, read from the store past the cache.
    func storedEntry(_ dir: UInt64, _ name: [UInt8], hint: UInt64 = 0) throws(FSError) -> DirEntry? {
        guard let value = try reads.get(FSKeys.dirEntry(dir, name), below: hint) else { return nil }
        return try withBytes(value) { raw throws(FSError) in try DirEntry.decodeEntry(name: name, raw) }
    }

    func allocateInode() -> UInt64 { pool.allocateInode() }

    /// Commits `batch` for this dataset (Pool.commit).
    func commit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) -> PendingSync {
        batch.dataset = dataset
        return try observedCommit(&batch, op: op, durable: durable)
    }

    func awaitDurable(_ pending: PendingSync) throws(FSError) { try pool.awaitDurable(pending) }

    /// EROFS for a snapshot or a read-only dataset, ESTALE for a deleted one.
    func checkWritable() throws(FSError) {
        let state = current.withLock { $0 }
        if state.deleted { throw FSError(.ESTALE, "the dataset was deleted") }
        if !state.writable {
            throw FSError(.EROFS, state.isSnapshot ? "a snapshot is read-only"
                : pool.store.isReadOnly ? (pool.store.isReplica ? "this server is a read-only replica" : "the store is read-only")
                : "the dataset is read-only")
        }
    }

    /// `value + delta` for a counter read from disk; EIO instead of a trap when damage
    /// would make it negative or overflow.
    static func adjust(_ value: UInt64, by delta: Int64, _ what: @autoclosure () -> String) throws(FSError) -> UInt64 {
        let (result, overflow) = delta >= 0
            ? value.addingReportingOverflow(delta.magnitude)
            : value.subtractingReportingOverflow(delta.magnitude)
        guard !overflow else { throw FSError.corrupt("\(what()) \(value) cannot change by \(delta)") }
        return result
    }

    /// `value - 1` for a count read from disk (nlink, entry count): EIO instead of a trap
    /// when damage left it at zero.
    static func decremented<T: FixedWidthInteger>(_ value: T, _ what: @autoclosure () -> String) throws(FSError) -> T {
        guard value > 0 else { throw FSError.corrupt("\(what()) is already 0") }
        return value - 1
    }

    /// `value + 1` for a count read from disk: `code` (EMLINK for links) at its maximum.
    static func incremented<T: FixedWidthInteger>(
        _ value: T, _ what: @autoclosure () -> String, code: FSError.Code = .EIO
    ) throws(FSError) -> T {
        guard value < T.max else { throw FSError(code, "\(what()) is at its maximum") }
        return value + 1
    }

    func validateName(_ name: [UInt8]) throws(FSError) {
        guard !name.isEmpty else { throw FSError(.EINVAL, "empty name") }
        guard name.count <= FSOptions.maxNameLength else {
            throw FSError(.ENAMETOOLONG, "name of \(name.count) bytes exceeds \(FSOptions.maxNameLength)")
        }
        guard !name.contains(0), !name.contains(UInt8(ascii: "/")) else {
            throw FSError(.EINVAL, "a name may not contain '/' or NUL")
        }
    }

    static func isDotOrDotDot(_ name: [UInt8]) -> Bool {
        name == [0x2E] || name == [0x2E, 0x2E]
    }

    /// For operations that only read: the filesystem runs and the dataset still exists.
    func checkOpen() throws(FSError) {
        try crashPoints.checkRunning()
        if current.withLock({ $0.deleted }) { throw FSError(.ESTALE, "the dataset was deleted") }
    }

    /// Runs an operation that only reads, after `checkOpen`, holding the pool's read gate:
    /// the collector does not move what this handle's view shows until it has left, even
    /// if the dataset is deleted or rolled back meanwhile (ReadGate).
    func reading<R>(_ body: () throws(FSError) -> R) throws(FSError) -> R {
        let token = pool.readGate.enter()
        defer { pool.readGate.leave(token) }
        try checkOpen()
        return try body()
    }

    /// Runs `body` with the dataset's barrier (shared) and the locks of `inodes` held,
    /// after checking the filesystem runs and the dataset still exists. A `change` is
    /// counted as in progress meanwhile, for syncs to gather (SyncGate); a read is not.
    /// A change that leaves the files' bytes and sizes as they are (`keepsData`: atimes)
    /// does not move the lock stripes' generations, so ranges read ahead stay good.
    func locked<R>(_ inodes: [UInt64], change: Bool = true, keepsData: Bool = false, _ body: () throws(FSError) -> R) throws(FSError) -> R {
        try crashPoints.checkRunning()
        if change { pool.syncGate.beginChange() }
        defer { if change { pool.syncGate.endChange() } }
        return try barrier.withShared { () throws(FSError) -> R in
            if current.withLock({ $0.deleted }) { throw FSError(.ESTALE, "the dataset was deleted") }
            return try locks.withLocks(inodes, change: change && !keepsData, body)
        }
    }

    /// A mutation: runs `body` under the locks of `inodes` (it applies its batch there and
    /// returns the pending sync with its result), then, with the locks released, waits for
    /// durability before returning the result.
    func mutate<R>(_ inodes: [UInt64], _ body: () throws(FSError) -> (R, PendingSync)) throws(FSError) -> R {
        try checkWritable()
        let result: R
        let pending: PendingSync
        do throws(FSError) {
            (result, pending) = try locked(inodes, body)
        } catch {
            try answerAfterApplied(error)
        }
        try awaitDurable(pending)
        return result
    }

    /// Throws `error`; first, when it answers whether a name is there (EEXIST, ENOENT,
    /// ENOTEMPTY) and metadata is durable, waits until every batch applied so far is
    /// durable: the name may have come or gone with another caller's change that is
    /// applied but not yet synced, and a crash before that sync would make the answer
    /// wrong (an EEXIST for a file that never existed). The success paths wait the same
    /// way (`makeNode`). REQUIRES: no lock held. Inside `DurabilityDeferral.deferring`,
    /// the wait goes to the caller, as every wait does.
    func answerAfterApplied(_ error: FSError) throws(FSError) -> Never {
        if options.durableMetadata, [.EEXIST, .ENOENT, .ENOTEMPTY].contains(error.code) {
            try awaitDurable(PendingSync(sequence: syncGate.lastApplied))
        }
        throw error
    }
}

/// The sync a committed batch still needs before its operation may reply (nil: none).
public struct PendingSync: Sendable {
    var sequence: UInt64?

    public static let none = PendingSync(sequence: nil)

    /// The later of two pending syncs (one wait covers both: syncs are prefix-durable).
    public func merged(_ other: PendingSync) -> PendingSync {
        switch (sequence, other.sequence) {
        case let (a?, b?): PendingSync(sequence: max(a, b))
        case (nil, _): other
        case (_, nil): self
        }
    }
}
