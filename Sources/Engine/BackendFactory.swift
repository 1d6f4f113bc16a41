// How stores are made: a factory per backend, its capabilities, and the options it takes.

/// What a backend promises beyond the core contract; the conformance suite runs the cases
/// a backend's capabilities allow.
public struct BackendCapabilities: Sendable, Equatable {
    /// Data survives the process ending (reopen in a new process finds it).
    public var persistent: Bool
    /// Every acknowledged durable write survives a crash (SIGKILL) of the process.
    public var crashSafe: Bool
    /// The store lives in remote object storage, not in a local folder: there is no lock
    /// file, and a second opener takes the store over, fencing the first (whose next write
    /// throws `.fenced`) instead of being refused with `.locked`.
    public var remote: Bool

    public init(persistent: Bool, crashSafe: Bool, remote: Bool = false) {
        self.persistent = persistent
        self.crashSafe = crashSafe
        self.remote = remote
    }
}

/// Block compression of a backend's stored data.
public enum CompressionKind: String, Sendable, CaseIterable {
    case none
    case zstd
}

/// Options common to every backend plus backend-specific tuning.
public struct BackendOptions: Sendable, Equatable {
    /// Create an empty store when the path holds none; otherwise `.storeNotFound`.
    public var createIfMissing = true
    /// Bytes of cache for stored blocks (backends without a cache of their own ignore it).
    public var cacheBytes = 64 << 20
    public var compression = CompressionKind.none
    /// Backend-specific settings by name (each backend documents its keys and rejects
    /// unknown ones with `.invalidArgument`).
    public var tuning: [String: String] = [:]
    /// Settings of a store kept in remote object storage (a path like "s3://bucket/prefix"):
    /// endpoint, region, credentials, the local disk cache; the backends that can keep a
    /// store there document the keys. Never logged: it may hold secrets.
    public var remote: [String: String] = [:]

    /// The key of `remote` a backend sets to "true" when it opens a store only to read it
    /// (a replica, a checkpoint, a restore's source): the remote store then writes nothing.
    /// Not a configuration setting.
    public static let remoteReadOnlyKey = "read_only"

    public init() {}
}

/// Makes stores of one backend kind. Thread safety: factories are stateless values.
public protocol KVBackendFactory: Sendable {
    /// The registry name: "lsm", "rocksdb", "lmdb", "memory".
    var name: String { get }
    var capabilities: BackendCapabilities { get }

    /// Opens (or, with `createIfMissing`, creates) the store at `path`, taking its lock.
    /// Throws `.locked` naming the holder, `.notAStore` for a path holding something else,
    /// `.wrongBackend` for another backend's store, `.storeNotFound`, `.corruption`,
    /// `.invalidArgument` for bad options, `.io`.
    func open(at path: String, options: BackendOptions) throws -> any KVBackend

    /// Checks `options` (compression, every tuning key and value) without touching any
    /// store: what `open` would refuse with `.invalidArgument`.
    func validate(_ options: BackendOptions) throws

    /// Opens checkpoint `name` of the store at `path` read-only: writes throw `.readOnly`.
    /// Does not take the store's lock, so it works while the store is in use.
    /// Throws `.notFound`, and as `open`.
    func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend

    /// Makes a new, independent, writable store at `destination` holding exactly the state
    /// of checkpoint `name`. The new store stays whole if the checkpoint or the old store
    /// is deleted. Throws `.notFound`, `.alreadyExists` if `destination` holds anything,
    /// `.io`.
    func restoreCheckpoint(at path: String, named name: String, to destination: String) throws

    /// `restoreCheckpoint(at:named:to:)` with the options that reach a remote store (either
    /// side may be one, for backends that keep stores remotely). The default ignores them.
    func restoreCheckpoint(at path: String, named name: String, to destination: String, options: BackendOptions) throws

    /// Opens a read-only replica of the store at `path` while a writer (another process,
    /// perhaps on another machine) keeps using it: writes throw `.readOnly`, nothing is
    /// ever written there, and `KVBackend.catchUp()` brings it up to what the writer wrote.
    /// Does not take the store's lock. Throws `.storeNotFound`, `.invalidArgument` for a
    /// backend without replicas (the default), and as `open`.
    func openReplica(at path: String, options: BackendOptions) throws -> any KVBackend
}

extension KVBackendFactory {
    public func restoreCheckpoint(at path: String, named name: String, to destination: String, options: BackendOptions) throws {
        try restoreCheckpoint(at: path, named: name, to: destination)
    }

    public func openReplica(at path: String, options: BackendOptions) throws -> any KVBackend {
        throw KVError(.invalidArgument, "the \(name) backend has no read-only replicas (the lsm backend has)", path: path)
    }
}
