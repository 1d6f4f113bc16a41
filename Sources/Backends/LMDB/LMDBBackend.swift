// The `lmdb` backend: LMDB through its C API. Store folder layout:
//   PATH/ZEROFS-STORE, PATH/LOCK      (StoreDirectory)
//   PATH/db/data.mdb, PATH/db/lock.mdb
//   PATH/checkpoints/NAME/db/data.mdb (a compacting copy)
//
// LMDB rejects empty keys, so every stored key is the caller's key behind one 0x00 byte.
// Tuning keys: map_size (bytes of address space reserved at open; by default twice the
// size of the file system holding the store, at least 1 TiB and at most 64 TiB, so the map
// cannot fill before the disk does; grown by doubling if it ever does), max_readers
// (default 1024).

import CLMDB
import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

public struct LMDBBackendFactory: KVBackendFactory {
    public let name = "lmdb"
    public let capabilities = BackendCapabilities(persistent: true, crashSafe: true)

    public init() {}

    public func validate(_ options: BackendOptions) throws { _ = try LMDBSettings(options, path: "/") }

    public func open(at path: String, options: BackendOptions) throws -> any KVBackend {
        let root = FileOps.absolutePath(path)
        let settings = try LMDBSettings(options, path: root)
        let folder = try StoreDirectory.open(path: root, backend: name, createIfMissing: options.createIfMissing)
        try CheckpointDirectory(storePath: root).removeLeftovers()
        // Only a new store may create its environment: a store whose data vanished is
        // reported, never silently replaced by an empty one.
        if folder.isNew {
            try FileOps.removeTree(root + "/db")  // what an interrupted creation left
            try FileOps.makeDirectories(root + "/db")
        } else if FileOps.kind(of: root + "/db/data.mdb") != .file {
            throw KVError(.corruption, "the store's lmdb data file is missing", path: root + "/db/data.mdb")
        }
        let env = try LMDBEnvironment.open(root + "/db", settings: settings, readOnly: false)
        if folder.isNew {
            do {
                // LMDB created data.mdb and lock.mdb: their names must outlast a crash
                // before the store is marked ready (its syncs cover their contents only).
                try FileOps.syncDirectory(root + "/db")
                try StoreDirectory.markReady(path: root, backend: name)
            } catch {
                env.close()
                throw error
            }
        }
        return LMDBBackend(env: env, root: root, lock: folder.lock)
    }

    public func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend {
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: self.name)
        let checkpoints = CheckpointDirectory(storePath: root)
        _ = try checkpoints.info(named: name)
        let env = try LMDBEnvironment.open(checkpoints.path(of: name) + "/db", settings: try LMDBSettings(options, path: root), readOnly: true)
        return LMDBBackend(env: env, root: root, lock: nil)
    }

    public func restoreCheckpoint(at path: String, named name: String, to destination: String) throws {
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: self.name)
        try CheckpointDirectory(storePath: root).restore(
            named: name, to: FileOps.absolutePath(destination), backend: self.name
        ) { source, target in
            try FileOps.makeDirectories(target + "/db")
            try FileOps.copyFile(from: source + "/db/data.mdb", to: target + "/db/data.mdb")
            try FileOps.syncDirectory(target + "/db")
        }
    }
}

struct LMDBSettings: Sendable {
    var mapSize: Int
    var maxReaders: UInt32 = 1024

    init(_ options: BackendOptions, path: String) throws(KVError) {
        mapSize = Self.defaultMapSize(for: path)
        guard options.compression == .none else {
            throw KVError(.invalidArgument, "the lmdb backend does not compress; set compression to none")
        }
        for (key, text) in options.tuning.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "map_size":
                guard let value = Int(text), value >= 1 << 16 else {
                    throw KVError(.invalidArgument, "lmdb option map_size must be a whole number of bytes >= 65536, got '\(text)'")
                }
                mapSize = value
            case "max_readers":
                guard let value = UInt32(text), value >= 8 else {
                    throw KVError(.invalidArgument, "lmdb option max_readers must be a whole number >= 8, got '\(text)'")
                }
                maxReaders = value
            default:
                throw KVError(.invalidArgument, "unknown lmdb tuning option '\(key)'; known: map_size, max_readers")
            }
        }
    }

    /// Twice the capacity of the file system holding `path` (or its nearest existing
    /// parent), clamped to [1 TiB, 64 TiB]: address space only, never disk.
    static func defaultMapSize(for path: String) -> Int {
        var probe = path
        var info = statvfs()
        while statvfs(probe, &info) != 0 {
            let parent = FileOps.parentPath(probe)
            if parent == probe { return 1 << 40 }
            probe = parent
        }
        // Saturating: a file system may report an unknown size as all ones.
        let (capacity, overflow) = Int(clamping: info.f_blocks).multipliedReportingOverflow(by: Int(clamping: info.f_frsize))
        let doubled = overflow || capacity > Int.max / 2 ? Int.max : capacity * 2
        return min(max(doubled, 1 << 40), 1 << 46)
    }
}

/// An LMDB environment and its one unnamed database.
final class LMDBEnvironment: @unchecked Sendable {
    // `env` and `dbi` are fixed after open; LMDB makes the environment safe to share, and
    // the backend serializes what LMDB requires (one writer, map resizing).
    let env: OpaquePointer
    let dbi: MDB_dbi
    let path: String
    let readOnly: Bool
    private(set) var mapSize: Int

    private init(env: OpaquePointer, dbi: MDB_dbi, path: String, readOnly: Bool, mapSize: Int) {
        self.env = env
        self.dbi = dbi
        self.path = path
        self.readOnly = readOnly
        self.mapSize = mapSize
    }

    static func open(_ path: String, settings: LMDBSettings, readOnly: Bool) throws(KVError) -> LMDBEnvironment {
        var created: OpaquePointer?
        try LMDBError.check(mdb_env_create(&created), "env create", path: path)
        guard let env = created else { throw KVError(.io, "lmdb returned no environment", path: path) }
        do throws(KVError) {
            try LMDBError.check(mdb_env_set_mapsize(env, settings.mapSize), "set map size", path: path)
            try LMDBError.check(mdb_env_set_maxreaders(env, settings.maxReaders), "set max readers", path: path)
            // NOTLS: read transactions belong to objects, not threads. NOSYNC is toggled per
            // commit: durable commits turn it off so LMDB syncs data, then meta.
            var flags = UInt32(MDB_NOTLS | MDB_NORDAHEAD)
            // A checkpoint is never written by anyone, so readers need no lock file in it.
            flags |= readOnly ? UInt32(MDB_RDONLY | MDB_NOLOCK) : UInt32(MDB_NOSYNC)
            let opened = mdb_env_open(env, path, flags, 0o644)
            // The map is reserved at open (mmap): ENOMEM is address space, not memory.
            guard opened != ENOMEM else {
                throw KVError(
                    .invalidArgument,
                    "lmdb cannot reserve a map of \(settings.mapSize) bytes (map_size): more address space than the system gives this process; set a smaller [storage.lmdb] map_size",
                    path: path)
            }
            try LMDBError.check(opened, "open", path: path)
            var dead: Int32 = 0
            try LMDBError.check(mdb_reader_check(env, &dead), "reader check", path: path)
            var txn: OpaquePointer?
            try LMDBError.check(mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn), "begin", path: path)
            var dbi: MDB_dbi = 0
            let rc = mdb_dbi_open(txn, nil, 0, &dbi)
            if rc != 0 {
                mdb_txn_abort(txn)
                try LMDBError.check(rc, "open database", path: path)
            }
            try LMDBError.check(mdb_txn_commit(txn), "commit", path: path)
            return LMDBEnvironment(env: env, dbi: dbi, path: path, readOnly: readOnly, mapSize: settings.mapSize)
        } catch {
            mdb_env_close(env)
            throw error
        }
    }

    /// Set when growing the map failed after LMDB had unmapped the old one: LMDB then
    /// holds pointers into the unmapped range, and any transaction would read them. Every
    /// later call fails instead (`requireUsable`).
    private let unusable = Mutex<KVError?>(nil)

    /// Throws the error that left the environment unusable, if any.
    func requireUsable() throws(KVError) {
        if let error = unusable.withLock({ $0 }) { throw error }
    }

    var isUsable: Bool { unusable.withLock { $0.map { _ in false } ?? true } }

    /// Doubles the map. REQUIRES: no transaction of this process is active.
    ///
    /// LMDB unmaps the old map before it maps the new one, and a failed map leaves the
    /// environment pointing into unmapped memory (a crash at the next transaction). So the
    /// address space is tried first with a reservation of the new size that is given back
    /// at once; the map stays as it was when that fails (a map beyond the address space,
    /// or a limit such as `ulimit -v`). Should LMDB's own map still fail, the environment
    /// is marked unusable and every later call reports it.
    func grow() throws(KVError) {
        try requireUsable()
        let (size, overflow) = mapSize.multipliedReportingOverflow(by: 2)
        guard !overflow else { throw KVError(.io, "lmdb map is full and cannot grow beyond \(mapSize) bytes", path: path) }
        let probe = mmap(nil, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let probe, probe != MAP_FAILED else {
            throw KVError(.io, "lmdb map is full and cannot grow to \(size) bytes: \(String(cString: strerror(errno))) (no address space for it)", path: path)
        }
        munmap(probe, size)
        do {
            try LMDBError.check(mdb_env_set_mapsize(env, size), "grow map", path: path)
        } catch {
            let failure = KVError(.io, "lmdb could not map \(size) bytes after unmapping its map; reopen the store", path: path, cause: "\(error)")
            unusable.withLock { $0 = failure }
            throw failure
        }
        mapSize = size
    }

    func close() { mdb_env_close(env) }
}
