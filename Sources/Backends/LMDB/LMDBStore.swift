// The open lmdb store: group commit of writes, pooled read transactions for point reads,
// map growth, checkpoints. Views and iterators are in LMDBReading.swift.

import CLMDB
import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A write waiting for its group's leader to commit it.
private final class PendingWrite {
    let batch: WriteBatch
    let durable: Bool
    var done = false
    var error: KVError?

    init(_ batch: WriteBatch, durable: Bool) {
        self.batch = batch
        self.durable = durable
    }
}

final class LMDBBackend: KVBackend, @unchecked Sendable {
    // Mutable coordination state (queue, leaderActive, activeReaders, growing, readerPool)
    // is touched only while holding `monitor`.
    let backendName = "lmdb"
    let env: LMDBEnvironment
    let lifetime = LifetimeGuard("store")
    let resources: NativeResources
    private let root: String
    private let lock: StoreLock?
    private let checkpoints: CheckpointDirectory

    private let monitor = Monitor()
    private var queue: [PendingWrite] = []
    private var leaderActive = false
    private var activeReaders = 0
    private var growing = false
    private var readerPool: [OpaquePointer] = []

    /// A group commit takes queued batches up to this many bytes into one transaction.
    private static let groupBytes = 32 << 20

    init(env: LMDBEnvironment, root: String, lock: StoreLock?) {
        self.env = env
        self.root = root
        self.lock = lock
        checkpoints = CheckpointDirectory(storePath: root)
        resources = NativeResources(lifetime: lifetime)
    }

    deinit { try? close() }

    var isReadOnly: Bool { env.readOnly }

    // MARK: Reading

    /// Counts a reader so the map is not resized under it; waits while it is being resized.
    func enterReader() {
        monitor.withLock {
            while growing { monitor.wait() }
            activeReaders += 1
        }
    }

    func exitReader() {
        monitor.withLock {
            activeReaders -= 1
            if growing { monitor.broadcast() }
        }
    }

    /// Begins a read-only transaction (counted by enterReader). Pooled transactions are
    /// renewed instead of allocated.
    func beginRead() throws -> OpaquePointer {
        try env.requireUsable()
        enterReader()
        if let pooled = monitor.withLock({ readerPool.popLast() }) {
            if mdb_txn_renew(pooled) == 0 { return pooled }
            mdb_txn_abort(pooled)
        }
        var txn: OpaquePointer?
        let rc = mdb_txn_begin(env.env, nil, UInt32(MDB_RDONLY), &txn)
        if rc != 0 {
            exitReader()
            try LMDBError.check(rc, "begin read", path: env.path)
        }
        return txn!
    }

    /// Ends a read transaction from beginRead, keeping it for reuse.
    func endRead(_ txn: OpaquePointer) {
        mdb_txn_reset(txn)
        let keep = monitor.withLock { () -> Bool in
            activeReaders -= 1
            if growing { monitor.broadcast() }
            guard readerPool.count < 64, !growing else { return false }
            readerPool.append(txn)
            return true
        }
        if !keep { mdb_txn_abort(txn) }
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        return try lifetime.shared {
            let txn = try beginRead()
            defer { endRead(txn) }
            return try LMDBBackend.get(txn, env, key)
        }
    }

    /// A point read inside `txn`; the value is copied out before the transaction ends.
    static func get(_ txn: OpaquePointer, _ env: LMDBEnvironment, _ key: [UInt8]) throws -> [UInt8]? {
        try withStoredKey(key) { storedKey in
            var k = storedKey
            var v = MDB_val()
            let rc = mdb_get(txn, env.dbi, &k, &v)
            if rc == MDB_NOTFOUND { return nil }
            try LMDBError.check(rc, "get", path: env.path)
            return Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
        }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        let txn = try lifetime.shared { try LMDBReadTxn(backend: self) }
        return try LMDBIterator(txn: txn, range: range)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func readView() throws -> any KVReadView {
        try lifetime.shared { LMDBReadView(txn: try LMDBReadTxn(backend: self)) }
    }

    // MARK: Writing

    func write(_ batch: WriteBatch, durable: Bool) throws {
        try batch.validate()
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot be written", path: root) }
        try lifetime.shared {
            let request = PendingWrite(batch, durable: durable)
            monitor.lock()
            queue.append(request)
            while !request.done && leaderActive { monitor.wait() }
            if request.done {
                monitor.unlock()
                if let error = request.error { throw error }
                return
            }
            // This thread leads: it commits its own batch and those queued behind it.
            leaderActive = true
            // The group always reaches this thread's own request; past it, it takes more
            // queued requests while they fit in groupBytes.
            var group: [PendingWrite] = []
            var bytes = 0
            var holdsOwn = false
            while !queue.isEmpty, !holdsOwn || bytes + queue[0].batch.byteSize <= Self.groupBytes {
                let next = queue.removeFirst()
                bytes += next.batch.byteSize
                holdsOwn = holdsOwn || next === request
                group.append(next)
            }
            monitor.unlock()

            var failure: KVError?
            do { try commit(group) } catch let error as KVError { failure = error } catch {
                failure = KVError(.io, "lmdb commit failed", path: env.path, cause: "\(error)")
            }

            monitor.withLock {
                for member in group {
                    member.done = true
                    member.error = failure
                }
                leaderActive = false
                monitor.broadcast()
            }
            if let failure { throw failure }
        }
    }

    /// Applies a group of batches in one write transaction, growing the map when full.
    private func commit(_ group: [PendingWrite]) throws {
        try env.requireUsable()
        let durable = group.contains { $0.durable }
        let lastCommitted = lastTransactionID()
        while true {
            var txn: OpaquePointer?
            try LMDBError.check(mdb_txn_begin(env.env, nil, 0, &txn), "begin write", path: env.path)
            var rc: Int32 = 0
            for member in group {
                rc = apply(member.batch, txn!)
                if rc != 0 { break }
            }
            if rc == 0 {
                mdb_env_set_flags(env.env, UInt32(MDB_NOSYNC), durable ? 0 : 1)
                rc = mdb_txn_commit(txn)
            } else {
                mdb_txn_abort(txn)
            }
            if rc == MDB_MAP_FULL {
                try growMap()
                continue
            }
            try LMDBError.check(rc, "commit", path: env.path)
            // LMDB skips its syncs when a commit changed nothing (an empty batch, deletes of
            // absent keys); a durable write must still make earlier buffered commits durable.
            if durable, lastTransactionID() == lastCommitted {
                try LMDBError.check(mdb_env_sync(env.env, 1), "sync", path: env.path)
            }
            return
        }
    }

    /// Applies one batch: runs of puts and deletes in key order (a stable sort keeps each
    /// key's own operations in order), range deletes where they stand.
    private func apply(_ batch: WriteBatch, _ txn: OpaquePointer) -> Int32 {
        batch.withOperations { ops in
            var start = 0
            while start < ops.count {
                if ops[start].op == .deleteRange {
                    let rc = deleteRange(ops[start].key, ops[start].value, txn)
                    if rc != 0 { return rc }
                    start += 1
                    continue
                }
                var end = start
                while end < ops.count, ops[end].op != .deleteRange { end += 1 }
                let order = (start..<end).sorted { a, b in
                    let c = Bytes.compare(ops[a].key, ops[b].key)
                    return c != 0 ? c < 0 : a < b
                }
                for index in order {
                    let op = ops[index]
                    let rc: Int32 = Self.withStoredKey(op.key) { storedKey in
                        var k = storedKey
                        if op.op == .put {
                            var v = MDB_val(mv_size: op.value.count, mv_data: UnsafeMutableRawPointer(mutating: op.value.baseAddress))
                            return mdb_put(txn, env.dbi, &k, &v, 0)
                        }
                        let rc = mdb_del(txn, env.dbi, &k, nil)
                        return rc == MDB_NOTFOUND ? 0 : rc
                    }
                    if rc != 0 { return rc }
                }
                start = end
            }
            return 0
        }
    }

    private func deleteRange(_ from: UnsafeRawBufferPointer, _ to: UnsafeRawBufferPointer, _ txn: OpaquePointer) -> Int32 {
        guard Bytes.compare(from, to) < 0 else { return 0 }
        var cursor: OpaquePointer?
        var rc = mdb_cursor_open(txn, env.dbi, &cursor)
        guard rc == 0 else { return rc }
        defer { mdb_cursor_close(cursor) }
        var v = MDB_val()
        var k = MDB_val()
        rc = Self.withStoredKey(from) { storedKey in
            k = storedKey
            return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data! + 1, count: k.mv_size - 1)
            guard Bytes.compare(key, to) < 0 else { break }
            rc = mdb_cursor_del(cursor, 0)
            if rc != 0 { return rc }
            // After a delete, MDB_NEXT yields the entry that moved into the cursor's place.
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        return rc == MDB_NOTFOUND ? 0 : rc
    }

    /// Doubles the map once no read transaction of this process is active. Views held for
    /// a long time block it; after 30 s the write fails rather than wait forever.
    private func growMap() throws {
        let pooled: [OpaquePointer] = try monitor.withLock {
            growing = true
            while activeReaders > 0 {
                if !monitor.wait(seconds: 30), activeReaders > 0 {
                    growing = false
                    monitor.broadcast()
                    throw KVError(.io, "lmdb map is full and cannot grow while \(activeReaders) read views or iterators are open", path: env.path)
                }
            }
            defer { readerPool.removeAll() }
            return readerPool
        }
        for txn in pooled { mdb_txn_abort(txn) }
        defer { monitor.withLock { growing = false; monitor.broadcast() } }
        try env.grow()
    }

    private func lastTransactionID() -> Int {
        var info = MDB_envinfo()
        mdb_env_info(env.env, &info)
        return info.me_last_txnid
    }

    func flush() throws {
        try lifetime.shared {
            guard !isReadOnly else { return }
            try env.requireUsable()
            try LMDBError.check(mdb_env_sync(env.env, 1), "sync", path: env.path)
        }
    }

    func close() throws {
        var failure: KVError?
        lifetime.close {
            resources.freeAll()
            for txn in monitor.withLock({ readerPool }) { mdb_txn_abort(txn) }
            monitor.withLock { readerPool.removeAll() }
            if !isReadOnly {
                do throws(KVError) {
                    try env.requireUsable()
                    try LMDBError.check(mdb_env_sync(env.env, 1), "sync", path: env.path)
                } catch { failure = error }
            }
            env.close()
            lock?.release()
        }
        if let failure { throw failure }
    }

    // MARK: Checkpoints

    func createCheckpoint(named name: String) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot make checkpoints", path: root) }
        return try lifetime.shared {
            try checkpoints.create(named: name) { folder in
                try FileOps.makeDirectories(folder + "/db")
                // The copy runs its own read transaction: count it so the map never moves.
                try env.requireUsable()
                enterReader()
                let rc = mdb_env_copy2(env.env, folder + "/db", UInt32(MDB_CP_COMPACT))
                exitReader()
                try LMDBError.check(rc, "copy", path: folder)
                try FileOps.syncFile(folder + "/db/data.mdb")
                try FileOps.syncDirectory(folder + "/db")
            }
        }
    }

    func listCheckpoints() throws -> [CheckpointInfo] {
        try lifetime.shared { try checkpoints.list() }
    }

    func deleteCheckpoint(named name: String) throws {
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot delete checkpoints", path: root) }
        try lifetime.shared { try checkpoints.delete(named: name) }
    }

    // MARK: Keys

    /// Calls `body` with the stored form of `key`: one 0x00 byte, then the key (LMDB
    /// rejects empty keys).
    static func withStoredKey<R>(_ key: UnsafeRawBufferPointer, _ body: (MDB_val) throws -> R) rethrows -> R {
        try withUnsafeTemporaryAllocation(byteCount: key.count + 1, alignment: 1) { buffer in
            buffer[0] = 0
            if key.count > 0 { (buffer.baseAddress! + 1).copyMemory(from: key.baseAddress!, byteCount: key.count) }
            return try body(MDB_val(mv_size: key.count + 1, mv_data: buffer.baseAddress))
        }
    }

    static func withStoredKey<R>(_ key: [UInt8], _ body: (MDB_val) throws -> R) rethrows -> R {
        try key.withUnsafeBytes { try withStoredKey($0, body) }
    }
}

func checkKey(_ key: [UInt8]) throws(KVError) {
    if key.count > KVLimits.maxKeySize {
        throw KVError(.invalidArgument, "key of \(key.count) bytes exceeds the limit of \(KVLimits.maxKeySize)")
    }
}

extension LMDBBackend {
    func spaceUsage() throws -> StoreSpace {
        try lifetime.shared { try CheckpointDirectory.spaceUsage(storePath: root) }
    }

    /// Every value through one read transaction. LMDB keeps no checksums: a scrub shows
    /// that every page is reachable and readable, not that its bytes are the ones written.
    func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport {
        try Scrub.wholeStore(
            self, object: "lmdb database \(root)/db/data.mdb", verified: "pages readable (LMDB keeps no checksums)", progress: progress)
    }
}
