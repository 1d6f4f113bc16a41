// FileSystem: a POSIX filesystem over one KVBackend. Opening formats an empty store
// (root dataset 0, version 1, root directory inode 1) or loads an existing one.
//
// Thread safety: every operation may be called from any thread. Operations lock the
// stripes of the inodes they change (LockTable); a rename that moves between parents also
// takes the rename mutex first. Each operation commits one atomic write batch; statistics,
// the inode counter and the change index live in memory and are written into the batch,
// as absolute values, under the short commit lock, which also applies the batch (not
// durably). Durability is awaited after the operation has released every lock (inode
// stripes, rename mutex) through the SyncGate, so concurrent callers share syncs and no
// one queues behind another's sync; the reply still follows durability.

import Engine
import Foundation
import Synchronization

public final class FileSystem: Sendable {
    public static let rootInode: UInt64 = 1
    /// The root dataset; datasets (issue 5) add others.
    public static let rootDataset: UInt64 = 0

    public let store: any KVBackend
    public let options: FSOptions
    /// Bytes per chunk, as formatted.
    public let chunkSize: Int
    public let incarnation: UInt64
    public let crashPoints = CrashPoints()

    let locks = LockTable()
    let renameLock = PlainLock()
    let view: VersionView
    let state: Mutex<State>
    let reclaimer = ReclaimSignal()
    let syncGate = SyncGate()
    /// Damaged reclaim records the last reclaim pass skipped.
    let skippedReclaimRecords = Mutex(0)
    /// Next cookie per directory, read from the store once and then kept here (an id
    /// counter: in memory, written as an absolute value into each batch). Bounded: the
    /// cache is emptied when it grows past `cookieCacheLimit` directories.
    let cookieCounters = Mutex<[UInt64: UInt64]>([:])
    static let cookieCacheLimit = 65_536

    struct State {
        var counters: FSCounters
        var nextInode: UInt64
        var changed: Set<UInt64>
    }

    /// Opens (formatting when empty) the filesystem stored in `store`. The caller keeps
    /// ownership of the store and closes it after `close()`.
    public static func open(_ store: any KVBackend, options: FSOptions = FSOptions()) throws(FSError) -> FileSystem {
        let fs = try FileSystem(store: store, options: options)
        // A read-only store (a checkpoint) cannot be changed: no reclaimer runs on it.
        if options.backgroundReclaim, !store.isReadOnly { fs.startReclaimer() }
        return fs
    }

    private init(store: any KVBackend, options: FSOptions) throws(FSError) {
        self.store = store
        self.options = options
        view = VersionView(head: 1)
        let formatRecord = try kv { try store.get(FSKeys.system(SystemRecords.formatName)) }
        if let formatRecord {
            chunkSize = try SystemRecords.decodeFormat(formatRecord)
            guard let next = try kv({ try store.get(FSKeys.system(SystemRecords.nextInodeName)) }),
                  let incarnationRecord = try kv({ try store.get(FSKeys.system(SystemRecords.incarnationName)) }),
                  let statsRecord = try kv({ try store.get(FSKeys.stats(FileSystem.rootDataset)) })
            else { throw FSError.corrupt("system records missing") }
            incarnation = try SystemRecords.decodeUInt64(incarnationRecord, "incarnation")
            state = Mutex(State(counters: try FSCounters.decode(statsRecord),
                                nextInode: try SystemRecords.decodeUInt64(next, "next inode"), changed: []))
        } else {
            guard !store.isReadOnly else { throw FSError(.EROFS, "the store is empty and read-only") }
            guard FSOptions.validChunkSizes.contains(options.chunkSize) else {
                throw FSError(.EINVAL, "chunk size \(options.chunkSize) is not a power of two from 4 KiB to 1 MiB")
            }
            chunkSize = options.chunkSize
            incarnation = UInt64.random(in: 1...UInt64.max)
            state = Mutex(State(counters: FSCounters(inodes: 1, chunks: 0), nextInode: 2, changed: [Self.rootInode]))
            try format()
        }
    }

    private func format() throws(FSError) {
        var root = Inode(ino: Self.rootInode, type: .directory, mode: 0o755, uid: 0, gid: 0, now: Self.now())
        root.parent = Self.rootInode
        var batch = WriteBatch()
        batch.put(FSKeys.system(SystemRecords.formatName), SystemRecords.encodeFormat(chunkSize: chunkSize))
        batch.put(FSKeys.system(SystemRecords.incarnationName), SystemRecords.encodeUInt64(incarnation))
        batch.put(FSKeys.system(SystemRecords.nextInodeName), SystemRecords.encodeUInt64(2))
        batch.put(FSKeys.stats(Self.rootDataset), FSCounters(inodes: 1, chunks: 0).encode())
        batch.put(FSKeys.versioned(FSKeys.inode(Self.rootInode), view.head), root.encode())
        batch.put(FSKeys.cookieCounter(Self.rootInode), SystemRecords.encodeUInt64(1))
        batch.put(FSKeys.changeIndex(view.head, Self.rootInode), [])
        try kv { try store.write(batch, durable: true) }
    }

    /// Stops the reclaimer and makes everything durable. The store stays open.
    public func close() throws(FSError) {
        reclaimer.stop()
        if !crashPoints.stopped, !store.isReadOnly { try kv { try store.flush() } }
    }

    // MARK: shared helpers

    var reads: VersionedStore { VersionedStore(store: store, view: view) }

    static func now() -> Timestamp {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Timestamp(seconds: Int64(spec.tv_sec), nanoseconds: UInt32(spec.tv_nsec))
    }

    /// The inode `ino`, or ESTALE when no such inode exists at this version.
    func inode(_ ino: UInt64) throws(FSError) -> Inode {
        guard let value = try reads.get(FSKeys.inode(ino)) else {
            throw FSError(.ESTALE, "no inode \(ino)")
        }
        return try withBytes(value) { raw throws(FSError) in try Inode.decode(ino: ino, raw) }
    }

    func directory(_ ino: UInt64) throws(FSError) -> Inode {
        let dir = try inode(ino)
        guard dir.type == .directory else { throw FSError(.ENOTDIR, "inode \(ino) is not a directory") }
        return dir
    }

    /// The entry `name` of directory `dir`, or nil.
    func entry(_ dir: UInt64, _ name: [UInt8]) throws(FSError) -> DirEntry? {
        guard let value = try reads.get(FSKeys.dirEntry(dir, name)) else { return nil }
        return try withBytes(value) { raw throws(FSError) in try DirEntry.decodeEntry(name: name, raw) }
    }

    func allocateInode() -> UInt64 {
        state.withLock { s in
            defer { s.nextInode += 1 }
            return s.nextInode
        }
    }

    /// Applies `batch` atomically with the counters and change index records it implies.
    /// The batch is visible on return but not yet durable: with `durable` the result names
    /// the sync the caller must await (`awaitDurable`) after releasing its locks, so that
    /// no lock is held across a sync and concurrent operations share one (group commit).
    /// The caller replies only after that wait, so a reply still implies durability.
    func commit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) -> PendingSync {
        try crashPoints.pass("\(op).before-commit")
        let sequence = try state.withLock { s throws(FSError) -> UInt64 in
            var counters = s.counters
            // Counters come from disk: damage must give EIO, never an arithmetic trap.
            counters.inodes = try Self.adjust(counters.inodes, by: batch.inodeDelta, "inode count")
            counters.chunks = try Self.adjust(counters.chunks, by: batch.chunkDelta, "chunk count")
            // filter, not subtracting: Set.subtracting walks the argument, which grows
            // with every inode the version ever changed.
            let newlyChanged = batch.touched.filter { !s.changed.contains($0) }
            for ino in newlyChanged { batch.batch.put(FSKeys.changeIndex(view.head, ino), []) }
            batch.batch.put(FSKeys.stats(Self.rootDataset), counters.encode())
            batch.batch.put(FSKeys.system(SystemRecords.nextInodeName), SystemRecords.encodeUInt64(s.nextInode))
            let applied = batch.batch
            try kv { try store.write(applied, durable: false) }
            s.counters = counters
            s.changed.formUnion(newlyChanged)
            return syncGate.noteApplied()
        }
        try crashPoints.pass("\(op).after-commit")
        return PendingSync(sequence: durable ? sequence : nil)
    }

    /// Waits until the batch behind `pending` is durable. REQUIRES: no inode lock and not
    /// the rename mutex held (a sync may take milliseconds; others must not queue behind it).
    func awaitDurable(_ pending: PendingSync) throws(FSError) {
        guard let sequence = pending.sequence else { return }
        try syncGate.waitDurable(sequence) { () throws(FSError) in try kv { try store.write(WriteBatch(), durable: true) } }
    }

    /// `value + delta` for a counter read from disk; EIO instead of a trap when damage
    /// would make it negative or overflow.
    static func adjust(_ value: UInt64, by delta: Int64, _ what: String) throws(FSError) -> UInt64 {
        let (result, overflow) = delta >= 0
            ? value.addingReportingOverflow(delta.magnitude)
            : value.subtractingReportingOverflow(delta.magnitude)
        guard !overflow else { throw FSError.corrupt("\(what) \(value) cannot change by \(delta)") }
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

    /// Runs `body` with the locks of `inodes` held, after checking the filesystem runs.
    func locked<R>(_ inodes: [UInt64], _ body: () throws(FSError) -> R) throws(FSError) -> R {
        try crashPoints.checkRunning()
        return try locks.withLocks(inodes, body)
    }

    /// A mutation: runs `body` under the locks of `inodes` (it applies its batch there and
    /// returns the pending sync with its result), then, with the locks released, waits for
    /// durability before returning the result.
    func mutate<R>(_ inodes: [UInt64], _ body: () throws(FSError) -> (R, PendingSync)) throws(FSError) -> R {
        let (result, pending) = try locked(inodes, body)
        try awaitDurable(pending)
        return result
    }
}

/// The sync a committed batch still needs before its operation may reply (nil: none).
struct PendingSync {
    var sequence: UInt64?

    static let none = PendingSync(sequence: nil)

    /// The later of two pending syncs (one wait covers both: syncs are prefix-durable).
    func merged(_ other: PendingSync) -> PendingSync {
        switch (sequence, other.sequence) {
        case let (a?, b?): PendingSync(sequence: max(a, b))
        case (nil, _): other
        case (_, nil): self
        }
    }
}
