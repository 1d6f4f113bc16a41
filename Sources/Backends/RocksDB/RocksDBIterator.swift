// Iterators and read views of the rocksdb backend. Both pin native objects that the
// store frees at close if their owners are still alive.

import CRocksDB
import Engine
import Synchronization

/// A RocksDB snapshot, released when the view and every iterator made from it are gone.
final class RocksDBSnapshot: @unchecked Sendable {
    // `pointer` is immutable; freeing goes through `resource` (once).
    let pointer: OpaquePointer
    let resource: NativeResource
    private weak var owner: RocksDBBackend?

    init(db: RocksDBHandle) {
        let snapshot = rocksdb_create_snapshot(db.pointer)!
        pointer = snapshot
        nonisolated(unsafe) let unsafeSnapshot = snapshot
        resource = NativeResource(rank: 1) { rocksdb_release_snapshot(db.pointer, unsafeSnapshot) }
    }

    func attach(to owner: RocksDBBackend) { self.owner = owner }

    deinit { owner?.resources.release(resource) }
}

final class RocksDBReadView: KVReadView {
    private let backend: RocksDBBackend
    private let snapshot = Locked<RocksDBSnapshot?>(nil)
    private let options: RocksDBReadOptions
    private let handle: RocksDBHandle

    init(backend: RocksDBBackend, snapshot: RocksDBSnapshot, handle: RocksDBHandle) {
        self.backend = backend
        self.handle = handle
        snapshot.attach(to: backend)
        self.snapshot.withLock { $0 = snapshot }
        options = RocksDBReadOptions(snapshot: snapshot.pointer, upperBound: nil)
    }

    private func pinned() throws -> RocksDBSnapshot {
        guard let current = snapshot.withLock({ $0 }) else { throw KVError(.closed, "read view is closed") }
        return current
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        let current = try pinned()
        return try backend.lifetime.shared {
            try withExtendedLifetime(current) { try RocksDBBackend.get(handle, options.pointer, key) }
        }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        let current = try pinned()
        return try backend.makeIterator(range, snapshot: current)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func close() { snapshot.withLock { $0 = nil } }
}

final class RocksDBIterator: KVIterator {
    private let pointer: OpaquePointer
    private let options: RocksDBReadOptions
    private let range: KeyRange
    private let owner: RocksDBBackend
    private let snapshot: RocksDBSnapshot?
    private let path: String
    let resource: NativeResource
    private(set) var isValid = false

    init(db: RocksDBHandle, range: KeyRange, snapshot: RocksDBSnapshot?, owner: RocksDBBackend) {
        options = RocksDBReadOptions(snapshot: snapshot?.pointer, upperBound: range.end)
        let iterator = rocksdb_create_iterator(db.pointer, options.pointer)!
        pointer = iterator
        nonisolated(unsafe) let unsafeIterator = iterator
        resource = NativeResource(rank: 0) { rocksdb_iter_destroy(unsafeIterator) }
        self.range = range
        self.owner = owner
        self.snapshot = snapshot
        path = db.path
    }

    deinit { owner.resources.release(resource) }

    func start() throws { try seek(range.start) }

    func seek(_ key: [UInt8]) throws {
        let target = Bytes.compare(key, range.start) >= 0 ? key : range.start
        try owner.lifetime.shared {
            target.withUnsafeBytes { raw in
                rocksdb_iter_seek(pointer, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
            }
            try settle()
        }
    }

    func next() throws {
        try owner.lifetime.shared {
            guard isValid else { throw KVError.iteratorNotValid }
            rocksdb_iter_next(pointer)
            try settle()
        }
    }

    private func settle() throws {
        isValid = rocksdb_iter_valid(pointer) != 0
        if !isValid {
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_iter_get_error(pointer, &error)
            try RocksDBError.check(error, "iterate", path: path)
        }
    }

    func withCurrent<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        try owner.lifetime.shared {
            guard isValid else { throw KVError.iteratorNotValid }
            var keyLength = 0
            var valueLength = 0
            let key = rocksdb_iter_key(pointer, &keyLength)
            let value = rocksdb_iter_value(pointer, &valueLength)
            return try body(UnsafeRawBufferPointer(start: key, count: keyLength), UnsafeRawBufferPointer(start: value, count: valueLength))
        }
    }
}
