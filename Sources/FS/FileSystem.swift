// FileSystem: a POSIX filesystem over one KVBackend. Opening formats an empty store
// (root dataset 0, version 1, root directory inode 1) or loads an existing one.
//
// Thread safety: every operation may be called from any thread. Operations lock the
// stripes of the inodes they change (LockTable); a rename that moves between parents also
// takes the rename mutex first. Each operation commits one atomic write batch; statistics,
// the inode counter and the change index live in memory and are written into the batch,
// as absolute values, under the short commit lock, which also applies the batch (not
// durably). Durability is awaited outside that lock through the SyncGate, so concurrent
// callers share syncs.

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

    struct State {
        var counters: FSCounters
        var nextInode: UInt64
        var changed: Set<UInt64>
    }

    /// Opens (formatting when empty) the filesystem stored in `store`. The caller keeps
    /// ownership of the store and closes it after `close()`.
    public static func open(_ store: any KVBackend, options: FSOptions = FSOptions()) throws(FSError) -> FileSystem {
        let fs = try FileSystem(store: store, options: options)
        if options.backgroundReclaim { fs.startReclaimer() }
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
        if !crashPoints.stopped { try kv { try store.flush() } }
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
    /// Metadata batches are durable before return when the options say so.
    func commit(_ batch: inout FSBatch, op: String, durable: Bool) throws(FSError) {
        try crashPoints.pass("\(op).before-commit")
        let sequence = try state.withLock { s throws(FSError) -> UInt64 in
            var counters = s.counters
            counters.inodes = UInt64(Int64(counters.inodes) + batch.inodeDelta)
            counters.chunks = UInt64(Int64(counters.chunks) + batch.chunkDelta)
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
        if durable {
            try syncGate.waitDurable(sequence) { () throws(FSError) in try kv { try store.write(WriteBatch(), durable: true) } }
        }
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
}
