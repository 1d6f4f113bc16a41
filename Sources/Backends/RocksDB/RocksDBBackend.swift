// The `rocksdb` backend: RocksDB through its C API. Store folder layout:
//   PATH/ZEROFS-STORE, PATH/LOCK      (StoreDirectory)
//   PATH/db/                          the RocksDB database
//   PATH/checkpoints/NAME/db/         a RocksDB checkpoint (hard-linked tables)

import CRocksDB
import Engine
import Synchronization

public struct RocksDBBackendFactory: KVBackendFactory {
    public let name = "rocksdb"
    public let capabilities = BackendCapabilities(persistent: true, crashSafe: true)

    public init() {}

    public func validate(_ options: BackendOptions) throws { try RocksDBOptions.validate(options) }

    public func open(at path: String, options: BackendOptions) throws -> any KVBackend {
        let root = FileOps.absolutePath(path)
        try RocksDBOptions.validate(options)
        let folder = try StoreDirectory.open(path: root, backend: name, createIfMissing: options.createIfMissing)
        // Only a new store may create its database: a store whose data vanished is reported,
        // never silently replaced by an empty one.
        let settings = try RocksDBOptions(options, create: folder.isNew)
        try CheckpointDirectory(storePath: root).removeLeftovers()
        if folder.isNew {
            try FileOps.removeTree(root + "/db")  // what an interrupted creation left
        } else if FileOps.kind(of: root + "/db/CURRENT") != .file {
            throw KVError(.corruption, "the store's rocksdb database is missing", path: root + "/db")
        }
        let db = try RocksDBHandle.open(settings, path: root + "/db", readOnly: false)
        if folder.isNew {
            do {
                try StoreDirectory.markReady(path: root, backend: name)
            } catch {
                // Closed before the store's lock goes: an open in this process again must
                // not find RocksDB's own lock held.
                db.close()
                throw error
            }
        }
        return RocksDBBackend(db: db, settings: settings, root: root, lock: folder.lock, readOnly: false)
    }

    public func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend {
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: self.name)
        let checkpoints = CheckpointDirectory(storePath: root)
        _ = try checkpoints.info(named: name)
        let settings = try RocksDBOptions(options, create: false)
        let db = try RocksDBHandle.open(settings, path: checkpoints.path(of: name) + "/db", readOnly: true)
        return RocksDBBackend(db: db, settings: settings, root: root, lock: nil, readOnly: true)
    }

    public func restoreCheckpoint(at path: String, named name: String, to destination: String) throws {
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: self.name)
        try CheckpointDirectory(storePath: root).restore(
            named: name, to: FileOps.absolutePath(destination), backend: self.name
        ) { source, target in
            // Table files are never modified after they are written, so links are safe;
            // everything else (MANIFEST, CURRENT, WAL, OPTIONS) is copied.
            try FileOps.copyTree(from: source + "/db", to: target + "/db", mayLink: { $0.hasSuffix(".sst") })
        }
    }
}

/// An open RocksDB database handle, closed exactly once.
final class RocksDBHandle: @unchecked Sendable {
    // rocksdb_t is thread-safe for reads and writes; `pointer` is immutable.
    let pointer: OpaquePointer
    let path: String

    private init(pointer: OpaquePointer, path: String) {
        self.pointer = pointer
        self.path = path
    }

    static func open(_ settings: RocksDBOptions, path: String, readOnly: Bool) throws(KVError) -> RocksDBHandle {
        var error: UnsafeMutablePointer<CChar>?
        let db = readOnly
            ? rocksdb_open_for_read_only(settings.options, path, 0, &error)
            : rocksdb_open(settings.options, path, &error)
        try RocksDBError.check(error, "open", path: path)
        guard let db else { throw KVError(.io, "rocksdb open returned no handle", path: path) }
        return RocksDBHandle(pointer: db, path: path)
    }

    func close() { rocksdb_close(pointer) }
}

final class RocksDBBackend: KVBackend, @unchecked Sendable {
    // Every stored property is immutable after init; the C objects behind them are
    // thread-safe (rocksdb_t, write options only read) or guarded by `lifetime`.
    let backendName = "rocksdb"
    let isReadOnly: Bool
    private let db: RocksDBHandle
    private let settings: RocksDBOptions
    private let root: String
    private let lock: StoreLock?
    private let checkpoints: CheckpointDirectory
    let lifetime = LifetimeGuard("store")
    private let readOptions: RocksDBReadOptions
    private let syncWrite: OpaquePointer
    private let bufferedWrite: OpaquePointer
    /// Native objects (iterators, snapshots) that must be freed before the database closes.
    let resources: NativeResources

    init(db: RocksDBHandle, settings: RocksDBOptions, root: String, lock: StoreLock?, readOnly: Bool) {
        self.db = db
        self.settings = settings
        self.root = root
        self.lock = lock
        isReadOnly = readOnly
        checkpoints = CheckpointDirectory(storePath: root)
        resources = NativeResources(lifetime: lifetime)
        readOptions = RocksDBReadOptions(snapshot: nil, upperBound: nil)
        syncWrite = rocksdb_writeoptions_create()
        rocksdb_writeoptions_set_sync(syncWrite, 1)
        bufferedWrite = rocksdb_writeoptions_create()
    }

    deinit {
        try? close()
        rocksdb_writeoptions_destroy(syncWrite)
        rocksdb_writeoptions_destroy(bufferedWrite)
    }

    var path: String { db.path }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try lifetime.shared { try Self.get(db, readOptions.pointer, key) }
    }

    static func get(_ db: RocksDBHandle, _ options: OpaquePointer, _ key: [UInt8]) throws -> [UInt8]? {
        if key.count > KVLimits.maxKeySize {
            throw KVError(.invalidArgument, "key of \(key.count) bytes exceeds the limit of \(KVLimits.maxKeySize)")
        }
        var error: UnsafeMutablePointer<CChar>?
        let slice = key.withUnsafeBufferPointer { k in
            k.withMemoryRebound(to: CChar.self) { rocksdb_get_pinned(db.pointer, options, $0.baseAddress, k.count, &error) }
        }
        try RocksDBError.check(error, "get", path: db.path)
        guard let slice else { return nil }
        defer { rocksdb_pinnableslice_destroy(slice) }
        var length = 0
        guard let bytes = rocksdb_pinnableslice_value(slice, &length) else { return [] }
        return Array(UnsafeRawBufferPointer(start: bytes, count: length))
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        try makeIterator(range, snapshot: nil)
    }

    func makeIterator(_ range: KeyRange, snapshot: RocksDBSnapshot?) throws -> any KVIterator {
        let iterator = try lifetime.shared {
            let iterator = RocksDBIterator(db: db, range: range, snapshot: snapshot, owner: self)
            resources.register(iterator.resource)
            return iterator
        }
        try iterator.start()
        return iterator
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func write(_ batch: WriteBatch, durable: Bool) throws {
        try batch.validate()
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot be written", path: root) }
        guard !batch.isEmpty else {
            // Nothing to apply, but a durable call still makes earlier writes durable.
            if durable { try flush() } else { try lifetime.shared {} }
            return
        }
        let native = rocksdb_writebatch_create()
        defer { rocksdb_writebatch_destroy(native) }
        batch.forEach { op, a, b in
            let ka = a.baseAddress?.assumingMemoryBound(to: CChar.self)
            let kb = b.baseAddress?.assumingMemoryBound(to: CChar.self)
            switch op {
            case .put: rocksdb_writebatch_put(native, ka, a.count, kb, b.count)
            case .delete: rocksdb_writebatch_delete(native, ka, a.count)
            case .deleteRange:
                if Bytes.compare(a, b) < 0 { rocksdb_writebatch_delete_range(native, ka, a.count, kb, b.count) }
            }
        }
        try lifetime.shared {
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_write(db.pointer, durable ? syncWrite : bufferedWrite, native, &error)
            try RocksDBError.check(error, "write", path: db.path)
        }
    }

    func flush() throws {
        try lifetime.shared {
            guard !isReadOnly else { return }
            var error: UnsafeMutablePointer<CChar>?
            rocksdb_flush_wal(db.pointer, 1, &error)
            try RocksDBError.check(error, "flush", path: db.path)
        }
    }

    func readView() throws -> any KVReadView {
        try lifetime.shared {
            let snapshot = RocksDBSnapshot(db: db)
            resources.register(snapshot.resource)
            return RocksDBReadView(backend: self, snapshot: snapshot, handle: db)
        }
    }

    func close() throws {
        var failure: KVError?
        lifetime.close {
            if !isReadOnly {
                var error: UnsafeMutablePointer<CChar>?
                rocksdb_flush_wal(db.pointer, 1, &error)
                do throws(KVError) { try RocksDBError.check(error, "flush", path: db.path) } catch { failure = error }
            }
            resources.freeAll()
            db.close()
            lock?.release()
        }
        if let failure { throw failure }
    }

    func createCheckpoint(named name: String) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot make checkpoints", path: root) }
        return try lifetime.shared {
            try checkpoints.create(named: name) { folder in
                try FileOps.makeDirectories(folder)
                var error: UnsafeMutablePointer<CChar>?
                let checkpoint = rocksdb_checkpoint_object_create(db.pointer, &error)
                try RocksDBError.check(error, "checkpoint", path: db.path)
                defer { rocksdb_checkpoint_object_destroy(checkpoint) }
                // log_size_for_flush 0: flush the memtable so the image needs no WAL replay.
                rocksdb_checkpoint_create(checkpoint, folder + "/db", 0, &error)
                try RocksDBError.check(error, "checkpoint", path: folder)
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
}

/// Read options, optionally pinned to a snapshot and bounded above.
final class RocksDBReadOptions: @unchecked Sendable {
    // Immutable after init; `upperBound` must outlive the options (RocksDB keeps the pointer).
    let pointer: OpaquePointer
    private let upperBound: UnsafeMutableBufferPointer<CChar>?

    init(snapshot: OpaquePointer?, upperBound bound: [UInt8]?) {
        pointer = rocksdb_readoptions_create()
        if let snapshot { rocksdb_readoptions_set_snapshot(pointer, snapshot) }
        if let bound {
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(bound.count, 1))
            bound.withUnsafeBytes { raw in
                if raw.count > 0 { UnsafeMutableRawPointer(buffer.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
            }
            rocksdb_readoptions_set_iterate_upper_bound(pointer, buffer.baseAddress, bound.count)
            upperBound = buffer
        } else {
            upperBound = nil
        }
    }

    deinit {
        rocksdb_readoptions_destroy(pointer)
        upperBound?.deallocate()
    }
}

extension RocksDBBackend {
    func spaceUsage() throws -> StoreSpace {
        try lifetime.shared { try CheckpointDirectory.spaceUsage(storePath: root) }
    }

    /// Every value through one snapshot; RocksDB verifies the checksum of each block it
    /// reads (verify_checksums is on by default), so a bad block fails the walk there.
    func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport {
        try Scrub.wholeStore(self, object: "rocksdb database \(path)", verified: "block checksums", progress: progress)
    }
}
