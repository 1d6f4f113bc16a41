// The `lsm` backend: the KVBackend face of LSMStore, its iterators and read views, and
// the factory. Store folder layout:
//   PATH/ZEROFS-STORE, PATH/LOCK      (StoreDirectory)
//   PATH/objects/manifest/<id>.manifest, PATH/objects/wal/<id>.wal, PATH/objects/sst/<id>.sst

import Engine
import ObjectStore

#if canImport(Glibc)
import Glibc
#endif

/// Opens the object store a remote location names ("s3://bucket/prefix") with the
/// settings of `BackendOptions.remote`.
public typealias RemoteObjectStoreOpener = @Sendable (_ location: String, _ settings: [String: String]) throws -> any ObjectStore

public struct LSMBackendFactory: KVBackendFactory {
    public let name = "lsm"
    public let capabilities = BackendCapabilities(persistent: true, crashSafe: true)
    /// Opens remote locations; nil: only local folders.
    let remote: RemoteObjectStoreOpener?

    public init(remote: RemoteObjectStoreOpener? = nil) {
        self.remote = remote
    }

    /// Keys of `BackendOptions.remote` the lsm backend itself reads: the local disk cache of
    /// tables in front of a remote store (a folder and its size in bytes).
    public static let diskCachePathKey = "cache_path"
    public static let diskCacheBytesKey = "disk_cache_bytes"
    /// The tuning key of the seconds GC keeps a table no manifest names (for replicas), and
    /// its default for stores in remote object storage (local ones default to 0).
    public static let gcGraceKey = "gc_grace_seconds"
    public static let remoteGCGraceSeconds = 60

    /// Whether `path` names a remote location rather than a local folder.
    public static func isRemote(_ path: String) -> Bool { path.contains("://") }

    public func validate(_ options: BackendOptions) throws { _ = try LSMOptions(options) }

    public func open(at path: String, options: BackendOptions) throws -> any KVBackend {
        if Self.isRemote(path) {
            let objects = try remoteObjects(path, options)
            if !options.createIfMissing, try objects.list(prefix: "manifest/").isEmpty {
                throw KVError(.storeNotFound, "no lsm store there (no manifest)", path: path)
            }
            // Replicas may run elsewhere: tables outlive their last manifest a while.
            var settings = try LSMOptions(options)
            if options.tuning[Self.gcGraceKey] == nil { settings.gcGraceSeconds = Self.remoteGCGraceSeconds }
            let store = try LSMStore(objects: objects, options: settings)
            // From now on an outage of the endpoint is waited out (s3.md, "on_outage").
            objects.setInService(true)
            return LSMBackend(store: store, lock: nil, location: path)
        }
        let root = FileOps.absolutePath(path)
        let settings = try LSMOptions(options)
        let folder = try StoreDirectory.open(path: root, backend: name, createIfMissing: options.createIfMissing)
        do {
            if folder.isNew { try FileOps.removeTree(root + "/objects") }  // what an interrupted creation left
            let objects = try LocalObjectStore(root: root + "/objects", directAppends: settings.walDirectIO, appendWriteback: settings.walValues)
            if !folder.isNew, try objects.list(prefix: "manifest/").isEmpty {
                throw KVError(.corruption, "the store's manifest is missing", path: root + "/objects/manifest")
            }
            let store = try LSMStore(objects: objects, options: settings)
            if folder.isNew { try StoreDirectory.markReady(path: root, backend: name) }
            return LSMBackend(store: store, lock: folder.lock, location: root)
        } catch {
            folder.lock.release()
            throw error
        }
    }

    /// Opens a store kept in any object store (tests use memory and crash-simulating ones;
    /// no lock file exists there, the writer epoch and WAL fences guard instead).
    public func open(objects: any ObjectStore, options: BackendOptions) throws -> any KVBackend {
        LSMBackend(store: try LSMStore(objects: objects, options: try LSMOptions(options)), lock: nil, location: objects.location)
    }

    /// The object store of a remote location, behind a disk cache of its tables when the
    /// settings name a cache folder. No lock file exists there: the writer epoch and the
    /// WAL fences keep a second writer from corrupting the store (it gets `.fenced`).
    func remoteObjects(_ location: String, _ options: BackendOptions, readOnly: Bool = false) throws -> any ObjectStore {
        guard let remote else { throw KVError(.invalidArgument, "this lsm factory opens local folders only", path: location) }
        var settings = options.remote
        // The remote store then writes nothing, not even a probe of conditional PUT.
        if readOnly { settings[BackendOptions.remoteReadOnlyKey] = "true" }
        let cachePath = settings.removeValue(forKey: Self.diskCachePathKey)
        let cacheText = settings.removeValue(forKey: Self.diskCacheBytesKey)
        let objects = try remote(location, settings)
        guard let cachePath, !cachePath.isEmpty else { return objects }
        var cacheBytes = 8 << 30
        if let cacheText {
            guard let value = Int(cacheText), value >= 1 << 20 else {
                throw KVError(.invalidArgument, "\(Self.diskCacheBytesKey) must be a whole number of bytes, at least 1 MiB, got \(cacheText)")
            }
            cacheBytes = value
        }
        // The pages' origin is the remote store's location: bucket, prefix and the endpoint
        // as resolved (from the configuration or the environment).
        // The store's identity tells a store made anew at that location (s3.md).
        return try DiskCachedObjectStore(
            base: objects, directory: FileOps.absolutePath(cachePath), capacityBytes: cacheBytes, identity: LSMStore.identityName)
    }

    public func openReplica(at path: String, options: BackendOptions) throws -> any KVBackend {
        if Self.isRemote(path) {
            let objects = try remoteObjects(path, options, readOnly: true)
            let replica = try openReplica(objects: objects, options: options)
            objects.setInService(true)
            return replica
        }
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: name)
        return try openReplica(objects: try LocalObjectStore(root: root + "/objects"), options: options)
    }

    /// A read-only replica of the store kept in `objects` (LSMStore+Follow.swift).
    public func openReplica(objects: any ObjectStore, options: BackendOptions) throws -> any KVBackend {
        let store = try LSMStore.openReplica(objects: objects, options: try LSMOptions(options))
        return LSMBackend(store: store, lock: nil, location: objects.location)
    }

    public func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend {
        if Self.isRemote(path) { return try openCheckpoint(objects: try remoteObjects(path, options, readOnly: true), named: name, options: options) }
        let root = FileOps.absolutePath(path)
        try StoreDirectory.requireStore(path: root, backend: self.name)
        return try openCheckpoint(objects: try LocalObjectStore(root: root + "/objects"), named: name, options: options)
    }

    public func openCheckpoint(objects: any ObjectStore, named name: String, options: BackendOptions) throws -> any KVBackend {
        let (_, id) = try LSMStore.checkpointManifest(objects, named: name)
        let store = try LSMStore(objects: objects, options: try LSMOptions(options), manifestID: id)
        return LSMBackend(store: store, lock: nil, location: objects.location)
    }

    public func restoreCheckpoint(at path: String, named name: String, to destination: String) throws {
        try restoreCheckpoint(at: path, named: name, to: destination, options: BackendOptions())
    }

    public func restoreCheckpoint(at path: String, named name: String, to destination: String, options: BackendOptions) throws {
        let source: any ObjectStore
        var sourceRoot: String?
        if Self.isRemote(path) {
            source = try remoteObjects(path, options, readOnly: true)
        } else {
            let root = FileOps.absolutePath(path)
            try StoreDirectory.requireStore(path: root, backend: self.name)
            source = try LocalObjectStore(root: root + "/objects")
            sourceRoot = root
        }
        if Self.isRemote(destination) {
            var targetOptions = options
            targetOptions.remote.removeValue(forKey: Self.diskCachePathKey)
            try restoreCheckpoint(objects: source, named: name, into: try remoteObjects(destination, targetOptions))
            return
        }
        let target = FileOps.absolutePath(destination)
        switch FileOps.kind(of: target, followingLinks: true) {
        case .missing: break
        case .directory:
            guard try FileOps.list(target).isEmpty else { throw KVError(.alreadyExists, "restore destination is not empty", path: target) }
        default:
            throw KVError(.alreadyExists, "restore destination exists and is not a folder", path: target)
        }
        _ = try LSMStore.checkpointManifest(source, named: name)
        // Built beside the destination and renamed into place: never half a store there.
        let parent = FileOps.parentPath(target)
        try FileOps.makeDirectories(parent)
        let building = target + ".restoring-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            let objects = try LocalObjectStore(root: building + "/objects")
            try FileOps.makeDirectories(building + "/objects/sst")
            try FileOps.makeDirectories(building + "/objects/wal")
            try LSMStore.restore(from: source, named: name, into: objects) { object in
                let to = building + "/objects/" + object
                // Tables and the sealed WAL segments they point into never change once
                // written, so a hard link is a safe copy.
                if let root = sourceRoot, link(root + "/objects/" + object, to) == 0 { return }
                if let root = sourceRoot {
                    try FileOps.copyFile(from: root + "/objects/" + object, to: to)
                } else {
                    guard let bytes = try source.get(object) else { throw KVError(.corruption, "object is missing", path: object) }
                    try objects.put(object, bytes)
                }
            }
            try FileOps.syncDirectory(building + "/objects/sst")
            try FileOps.syncDirectory(building + "/objects/wal")
            try StoreDirectory.writeMarker(path: building, backend: self.name)
            if FileOps.kind(of: target) == .directory, rmdir(target) != 0 {
                throw KVError(.alreadyExists, "restore destination is not empty", path: target)
            }
            try FileOps.renameItem(building, target)
            try FileOps.syncDirectory(parent)
        } catch {
            try? FileOps.removeTree(building)
            throw error
        }
    }

    /// The same as `restoreCheckpoint(at:named:to:)` between object stores (tables copied).
    public func restoreCheckpoint(objects: any ObjectStore, named name: String, into target: any ObjectStore) throws {
        try LSMStore.restore(from: objects, named: name, into: target) { object in
            guard let bytes = try objects.get(object) else { throw KVError(.corruption, "object is missing", path: object) }
            try target.put(object, bytes)
        }
    }
}

final class LSMBackend: KVBackend {
    let backendName = "lsm"
    let store: LSMStore
    private let lock: StoreLock?
    private let location: String
    let lifetime = LifetimeGuard("store")

    init(store: LSMStore, lock: StoreLock?, location: String) {
        self.store = store
        self.lock = lock
        self.location = location
    }

    deinit { try? close() }

    var isReadOnly: Bool { store.readOnly }
    var isReplica: Bool { store.following }
    private var readOnlyWhat: String { store.following ? "a read-only replica" : "a checkpoint opened for reading" }

    func catchUp() throws -> UInt64 {
        try lifetime.shared { try store.catchUp() }
    }

    /// Runs a read; on a replica, a read that fails (a table the writer collected after a
    /// compaction the replica has not seen yet) catches up and runs once more.
    private func reading<R>(_ body: () throws -> R) throws -> R {
        try lifetime.shared {
            guard store.following else { return try body() }
            do {
                return try body()
            } catch {
                let before = store.followGeneration
                guard let after = try? store.catchUp(), after != before else { throw error }
                return try body()
            }
        }
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        return try reading { try store.get(key, at: store.snapshot()) }
    }

    func withValue<R>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try checkKey(key)
        return try reading { try store.withValue(key, at: store.snapshot(), body) }
    }

    func withValues(
        _ keys: [[UInt8]], head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (Int, UnsafeRawBufferPointer?, Int?) throws -> Void
    ) throws {
        try checkValues(keys, tails)
        // A replica's retry (`reading`) reads only the keys whose bodies have not run, and
        // not at all after a body threw: that error is the call's.
        var passed = [Bool](repeating: false, count: keys.count)
        var failed: (any Error)?
        var retry = false
        try reading {
            if let failed { throw failed }
            // The first try passes the keys as they are; only a retry picks the ones left.
            let left = retry ? keys.indices.filter { !passed[$0] } : nil
            retry = true
            let (asked, rooms) = left.map { l in (l.map { keys[$0] }, l.map { tails[$0] }) } ?? (keys, tails)
            try store.withValues(asked, at: store.snapshot(), head: head, tails: rooms) { k, value, placed in
                let index = left?[k] ?? k
                passed[index] = true
                do { try body(index, value, placed) } catch {
                    failed = error
                    throw error
                }
            }
        }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        // Positioning reads the first blocks: on a replica behind the writer, a collected
        // table then catches up and positions again.
        try reading { try LSMIterator(store: store, snapshot: store.snapshot(), range: range, lifetime: lifetime) }
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try reading { try LSMIterator.firstEntry(store: store, snapshot: store.snapshot(), from: from, prefix: prefix) }
    }

    func firstVersion(from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry? {
        try reading {
            try LSMIterator.firstVersion(store: store, snapshot: store.snapshot(), from: from, prefix: prefix, suffixLength: suffixLength)
        }
    }

    func write(_ batch: WriteBatch, durable: Bool) throws {
        try batch.validate()
        if isReadOnly { throw KVError(.readOnly, readOnlyWhat + " cannot be written", path: location) }
        try lifetime.shared { try store.write(batch, durable: durable) }
    }

    func flush() throws {
        try lifetime.shared {
            guard !isReadOnly else { return }
            try store.flushWAL(upTo: store.wal.withLock { store.walAppended })
        }
    }

    func objectOperations() -> ObjectOperations? { (store.objects as? any ObjectOperationCounting)?.objectOperations() }

    func settleBackgroundWork() throws {
        try lifetime.shared { try store.settle() }
    }

    func readView() throws -> any KVReadView {
        try lifetime.shared { LSMReadView(store: store, snapshot: store.snapshot(), parent: lifetime) }
    }

    func close() throws {
        var failure: (any Error)?
        // Requests waiting out an outage give up first: a write waiting in one holds the
        // lifetime that `close` waits for.
        beginClosing()
        lifetime.close {
            guard !store.readOnly else { return }
            store.stopBackgroundThreads()
            do { try store.flushWAL(upTo: store.wal.withLock { store.walAppended }) } catch { failure = error }
            // Sealing cuts off the segment's reserved zeros (format-wal.md).
            store.wal.withLock { store.walSegment?.seal() }
            lock?.release()
        }
        store.objects.storeClosed()
        if let failure { throw failure }
    }

    func beginClosing() { store.objects.setInService(false) }

    func createCheckpoint(named name: String) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        if isReadOnly { throw KVError(.readOnly, readOnlyWhat + " cannot make checkpoints", path: location) }
        return try lifetime.shared { try store.createCheckpoint(named: name) }
    }

    func listCheckpoints() throws -> [CheckpointInfo] {
        try lifetime.shared {
            if isReadOnly { return [] }
            return store.listCheckpoints()
        }
    }

    func deleteCheckpoint(named name: String) throws {
        if isReadOnly { throw KVError(.readOnly, readOnlyWhat + " cannot delete checkpoints", path: location) }
        try lifetime.shared { try store.deleteCheckpoint(named: name) }
    }
}

func checkKey(_ key: [UInt8]) throws {
    if key.count > KVLimits.maxKeySize {
        throw KVError(.invalidArgument, "key of \(key.count) bytes exceeds the limit of \(KVLimits.maxKeySize)")
    }
}

/// `withValues`'s arguments: keys within the limit, one room (or nil) per key.
func checkValues(_ keys: [[UInt8]], _ tails: [UnsafeMutableRawBufferPointer?]) throws {
    guard tails.count == keys.count else {
        throw KVError(.invalidArgument, "\(tails.count) rooms for the tails of \(keys.count) values")
    }
    for key in keys { try checkKey(key) }
}

final class LSMReadView: KVReadView {
    private let store: LSMStore
    private let snapshot: LSMStore.Snapshot
    private let parent: LifetimeGuard
    private let lifetime = LifetimeGuard("read view")

    init(store: LSMStore, snapshot: LSMStore.Snapshot, parent: LifetimeGuard) {
        self.store = store
        self.snapshot = snapshot
        self.parent = parent
    }

    private func open<R>(_ body: () throws -> R) throws -> R {
        try lifetime.shared { try parent.shared(body) }
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        return try open { try store.get(key, at: snapshot) }
    }

    func withValue<R>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try checkKey(key)
        return try open { try store.withValue(key, at: snapshot, body) }
    }

    func withValues(
        _ keys: [[UInt8]], head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (Int, UnsafeRawBufferPointer?, Int?) throws -> Void
    ) throws {
        try checkValues(keys, tails)
        try open { try store.withValues(keys, at: snapshot, head: head, tails: tails, body) }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        try open { try LSMIterator(store: store, snapshot: snapshot, range: range, lifetime: parent) }
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try open { try LSMIterator.firstEntry(store: store, snapshot: snapshot, from: from, prefix: prefix) }
    }

    func firstVersion(from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry? {
        try open {
            try LSMIterator.firstVersion(store: store, snapshot: snapshot, from: from, prefix: prefix, suffixLength: suffixLength)
        }
    }

    func close() { lifetime.close {} }
}

final class LSMIterator: KVIterator {
    private var stream: MergedStream
    private let range: KeyRange
    private let lifetime: LifetimeGuard
    private let snapshot: LSMStore.Snapshot

    init(store: LSMStore, snapshot: LSMStore.Snapshot, range: KeyRange, lifetime: LifetimeGuard, prefix: [UInt8]? = nil) throws {
        self.snapshot = snapshot
        self.range = range
        self.lifetime = lifetime
        stream = MergedStream(store.sources(snapshot, prefix: prefix))
        try range.start.withUnsafeBytes { try stream.seek($0) }
    }

    static func firstEntry(store: LSMStore, snapshot: LSMStore.Snapshot, from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        let start = Bytes.compare(from, prefix) >= 0 ? from : prefix
        let iterator = try LSMIterator(store: store, snapshot: snapshot, range: KeyRange(start: start, end: Bytes.prefixSuccessor(prefix)),
                                       lifetime: LifetimeGuard("iterator"), prefix: prefix)
        return iterator.isValid ? try iterator.entry() : nil
    }

    static func firstVersion(store: LSMStore, snapshot: LSMStore.Snapshot, from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry? {
        let start = Bytes.compare(from, prefix) >= 0 ? from : prefix
        let end = Bytes.prefixSuccessor(prefix)
        // The newest-first path answers unless range tombstones or a deletion need the merge.
        switch try store.firstVersion(snapshot, from: start, end: end, prefix: prefix, suffixLength: suffixLength) {
        case .found(let entry): return entry
        case .none: return nil
        case .merge: break
        }
        let iterator = try LSMIterator(store: store, snapshot: snapshot, range: KeyRange(start: start, end: end),
                                       lifetime: LifetimeGuard("iterator"), prefix: prefix)
        return iterator.isValid ? try iterator.entry() : nil
    }

    var isValid: Bool {
        guard stream.isValid else { return false }
        guard let end = range.end else { return true }
        return Bytes.compare(stream.key, end) < 0
    }

    // The iterator's snapshot keeps its memtables and tables alive by reference, so after
    // close it only has to report `.closed`; no lock is needed per step.
    func seek(_ key: [UInt8]) throws {
        try lifetime.ensureOpen()
        let target = Bytes.compare(key, range.start) >= 0 ? key : range.start
        try target.withUnsafeBytes { try stream.seek($0) }
    }

    func next() throws {
        try lifetime.ensureOpen()
        guard isValid else { throw KVError.iteratorNotValid }
        try stream.step()
    }

    func withCurrent<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        try lifetime.ensureOpen()
        guard isValid else { throw KVError.iteratorNotValid }
        return try body(stream.key, try stream.source.value)
    }

    /// A pointer entry's length comes from its pointer: the value stays in its WAL segment.
    func withCurrentKey<R>(_ body: (UnsafeRawBufferPointer, Int) throws -> R) throws -> R {
        try lifetime.ensureOpen()
        guard isValid else { throw KVError.iteratorNotValid }
        let source = stream.source
        guard source.isPointer else { return try body(stream.key, source.storedValue.count) }
        // A pointer that does not decode is read as a value, which reports it.
        guard let pointer = ValuePointer(source.storedValue) else { return try body(stream.key, try source.value.count) }
        return try body(stream.key, pointer.length)
    }
}

extension LSMBackend {
    func spaceUsage() throws -> StoreSpace {
        try lifetime.shared { try store.spaceUsage() }
    }

    func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport {
        try lifetime.shared { try store.scrub(progress: progress) }
    }
}
