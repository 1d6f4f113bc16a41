// Read views and iterators of the lmdb backend: each stands on a read-only transaction
// (one consistent snapshot) that LMDB lets any thread use, one at a time.

import CLMDB
import Engine
import Synchronization

/// A read-only transaction shared by a view and the iterators made from it. Calls into
/// it are serialized by `use`; it ends when its last user is released or the store closes.
final class LMDBReadTxn: @unchecked Sendable {
    // `pointer` is immutable; LMDB requires one thread at a time, which `gate` ensures.
    let pointer: OpaquePointer
    let backend: LMDBBackend
    let resource: NativeResource
    private let gate = Locked(())

    init(backend: LMDBBackend) throws {
        self.backend = backend
        let txn = try backend.beginRead()
        pointer = txn
        nonisolated(unsafe) let unsafeTxn = txn
        resource = NativeResource(rank: 1) {
            mdb_txn_abort(unsafeTxn)
            backend.exitReader()
        }
        backend.resources.register(resource)
    }

    deinit { backend.resources.release(resource) }

    /// Runs `body` with the transaction, while the store is open, one caller at a time.
    func use<R>(_ body: (OpaquePointer) throws -> R) throws -> R {
        try backend.lifetime.shared {
            try gate.withLock { _ in try body(pointer) }
        }
    }

    /// Runs `body`, which makes no LMDB call, while the store is open: bytes LMDB lent
    /// from the map stay valid until then. Not one caller at a time: `body` may read this
    /// transaction again (a get from inside an iterator's `withCurrent`), which `use`
    /// would wait for itself to allow.
    func whileOpen<R>(_ body: () throws -> R) throws -> R {
        try backend.lifetime.shared(body)
    }
}

final class LMDBReadView: KVReadView {
    private let txn = Locked<LMDBReadTxn?>(nil)

    init(txn: LMDBReadTxn) {
        self.txn.withLock { $0 = txn }
    }

    private func current() throws -> LMDBReadTxn {
        guard let txn = txn.withLock({ $0 }) else { throw KVError(.closed, "read view is closed") }
        return txn
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        let txn = try current()
        return try txn.use { try LMDBBackend.get($0, txn.backend.env, key) }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        try LMDBIterator(txn: try current(), range: range)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func close() { txn.withLock { $0 = nil } }
}

final class LMDBIterator: KVIterator {
    private let txn: LMDBReadTxn
    private let cursor: OpaquePointer
    private let resource: NativeResource
    private let range: KeyRange
    private var key = MDB_val()
    private var value = MDB_val()
    private(set) var isValid = false

    init(txn: LMDBReadTxn, range: KeyRange) throws {
        self.txn = txn
        self.range = range
        // Registered while the store cannot close, so a close frees the cursor.
        let (opened, resource) = try txn.use { pointer -> (OpaquePointer, NativeResource) in
            var cursor: OpaquePointer?
            try LMDBError.check(mdb_cursor_open(pointer, txn.backend.env.dbi, &cursor), "cursor open", path: txn.backend.env.path)
            guard let opened = cursor else { throw KVError(.io, "lmdb returned no cursor", path: txn.backend.env.path) }
            nonisolated(unsafe) let unsafeCursor = opened
            let resource = NativeResource(rank: 0) { mdb_cursor_close(unsafeCursor) }
            txn.backend.resources.register(resource)
            return (opened, resource)
        }
        cursor = opened
        self.resource = resource
        try seek(range.start)
    }

    deinit { txn.backend.resources.release(resource) }

    func seek(_ target: [UInt8]) throws {
        let from = Bytes.compare(target, range.start) >= 0 ? target : range.start
        try txn.use { _ in
            let rc = LMDBBackend.withStoredKey(from) { storedKey in
                key = storedKey
                return mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE)
            }
            try settle(rc)
        }
    }

    func next() throws {
        try txn.use { _ in
            guard isValid else { throw KVError.iteratorNotValid }
            try settle(mdb_cursor_get(cursor, &key, &value, MDB_NEXT))
        }
    }

    private func settle(_ rc: Int32) throws {
        if rc == MDB_NOTFOUND {
            isValid = false
            return
        }
        if rc != 0 {
            isValid = false
            try LMDBError.check(rc, "iterate", path: txn.backend.env.path)
        }
        guard let end = range.end else {
            isValid = true
            return
        }
        isValid = Bytes.compare(currentKey, end) < 0
    }

    private var currentKey: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: key.mv_data.map { $0 + 1 }, count: key.mv_size - 1)
    }

    func withCurrent<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        // The bytes were read by the last seek or next; `body` may use the view again.
        try txn.whileOpen {
            guard isValid else { throw KVError.iteratorNotValid }
            return try body(currentKey, UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size))
        }
    }
}
