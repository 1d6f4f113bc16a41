// The ObjectStore protocol: the only way the LSM backend touches storage. Objects are
// byte strings under '/'-separated names, immutable once written (an appendable store
// lets one object grow until it is sealed); a put is durable when it returns.
// Implementations: a local folder, memory, a crash-simulating wrapper for tests (and an
// S3 store, issue 8).

import Engine

/// An object opened for reading ranges of it (a file descriptor locally, a name and size
/// on a remote store). Thread safety: `read` may be called from any thread at once.
public protocol ReadableObject: AnyObject, Sendable {
    var name: String { get }
    var size: Int { get }
    /// Reads `length` bytes at `offset`; throws `.corruption` if the object is shorter.
    func read(offset: Int, length: Int) throws -> [UInt8]
    /// Reads `buffer.count` bytes at `offset` into `buffer` (a table block straight into
    /// the memory the block keeps); throws like `read(offset:length:)`.
    func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Reads the parts' total length at `offset`, filling them in order (values read
    /// straight into their readers' memory, the bytes around them to the side:
    /// `KVReader.withValues`); throws like `read(offset:length:)`.
    func read(offset: Int, into parts: [UnsafeMutableRawBufferPointer]) throws
    /// Reads like `read(offset:into:)` if that needs no wait for a device or the network
    /// (the bytes are in memory: the kernel's page cache, or the object itself): true
    /// when it did. False when it would have had to wait; `buffer` then holds nothing to
    /// rely on. A caller whose thread may let another run while it waits (a block read
    /// under `Blocking.during`) tries this first.
    func readIfReady(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Bool
}

extension ReadableObject {
    /// The default: it cannot tell, so it never reads.
    public func readIfReady(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws -> Bool { false }

    /// The default: `read(offset:length:)`, then a copy.
    public func read(offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let bytes = try read(offset: offset, length: buffer.count)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    /// The default: a read per part.
    public func read(offset: Int, into parts: [UnsafeMutableRawBufferPointer]) throws {
        var at = offset
        for part in parts {
            try read(offset: at, into: part)
            at += part.count
        }
    }
}

/// A store of immutable, named objects. Thread safety: every requirement may be called
/// from any thread at once. Every error is a KVError naming the object.
public protocol ObjectStore: AnyObject, Sendable {
    /// A description for messages ("folder /x", "memory").
    var location: String { get }

    /// The whole object, or nil when it does not exist.
    func get(_ name: String) throws -> [UInt8]?

    /// Opens an object for ranged reads, or nil when it does not exist.
    func open(_ name: String) throws -> (any ReadableObject)?

    /// Writes (or replaces) an object atomically and durably: readers see the old or the
    /// new bytes, never a mix, and after return a crash keeps the new bytes.
    func put(_ name: String, _ bytes: [UInt8]) throws

    /// Writes an object only if no object has that name; returns false (writing nothing)
    /// when one exists. Atomic and durable like `put`.
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool

    /// The names that start with `prefix`, sorted.
    func list(prefix: String) throws -> [String]

    /// Deletes an object; deleting an absent object is not an error.
    func delete(_ name: String) throws

    /// Starts writing a large object piece by piece; nothing is visible under `name` until
    /// `commit()`, which replaces any object of that name atomically and durably.
    func makeWriter(_ name: String) throws -> any ObjectWriter

    /// The lsm backend has opened a store here (true), or begins to close it (false). A
    /// remote store may wait out an outage of its endpoint while in service rather than
    /// fail (S3's `on_outage`); the default does nothing.
    func setInService(_ inService: Bool)

    /// The store kept here was closed: lets go of what is held for it (a disk cache's
    /// hold on its folder). An object store serves one open store: the lsm backend calls
    /// this when that store closes, and a wrapper forwards it. The default does nothing.
    func storeClosed()

    /// `putIfAbsent` for names whose emptiness a reader acts on (WAL objects, manifests):
    /// when an earlier attempt of this very put was cut off and the server kept what it
    /// got (an empty object: SeaweedFS does, s3.md), the answer is `.cutShort` and the
    /// object is left as it is, where `putIfAbsent` fills it in. Another writer may have
    /// read it empty meanwhile and acted on that; the caller puts its bytes under the next
    /// name instead. The default: `putIfAbsent` (no store but S3 keeps cut uploads).
    func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8]) throws -> PutIfAbsentOutcome

    /// Commits writers this store made, as `commit()` on each would, in one go: a local
    /// folder syncs all their files before it renames any into place and syncs each
    /// folder once, where `commit()` syncs the folder for every object. The default
    /// commits them one by one. On a failure some may be committed and the rest not.
    func commit(_ writers: [any ObjectWriter]) throws
}

/// What a put-if-absent did (`putIfAbsentOrCut`).
public enum PutIfAbsentOutcome: Sendable, Equatable {
    /// The object is in place, whole.
    case written
    /// Another writer's object has the name; nothing was written.
    case taken
    /// An attempt of this put was cut short and the server kept an empty object under
    /// the name, which stays as it is.
    case cutShort
}

extension ObjectStore {
    public func putIfAbsentOrCut(_ name: String, _ bytes: [UInt8]) throws -> PutIfAbsentOutcome {
        try putIfAbsent(name, bytes) ? .written : .taken
    }

    public func setInService(_ inService: Bool) {}
    public func storeClosed() {}

    public func commit(_ writers: [any ObjectWriter]) throws {
        for writer in writers { try writer.commit() }
    }
}

/// An object being written in pieces (so large objects never sit whole in memory).
/// Used by one thread.
public protocol ObjectWriter: AnyObject {
    func append(_ bytes: UnsafeRawBufferPointer) throws
    /// Publishes the object; after return it is durable.
    func commit() throws
    /// Drops what was written (also done on release without commit).
    func abort()
}

/// A writer that collects the pieces in memory and puts them at commit.
public final class BufferedObjectWriter: ObjectWriter {
    private let store: any ObjectStore
    private let name: String
    private var bytes: [UInt8] = []

    public init(store: any ObjectStore, name: String) {
        self.store = store
        self.name = name
    }

    public func append(_ piece: UnsafeRawBufferPointer) throws { bytes.appendRaw(piece) }
    public func commit() throws { try store.put(name, bytes) }
    public func abort() { bytes = [] }
}

/// An object store that can also grow an object in place (a local folder can; S3 cannot).
/// The LSM uses it for WAL segments: appends instead of a new object per group commit,
/// synced only when a durable write asks.
public protocol AppendableObjectStore: ObjectStore {
    /// Creates `name` holding `header` only if no object has that name (nil when one
    /// exists). Readers see it whole at once; it is durable, name and header, after the
    /// object's first sync: a machine crash before may leave the name with fewer bytes
    /// than the header, or no name.
    func createAppendable(_ name: String, header: [UInt8]) throws -> (any AppendableObject)?
    /// Makes `name`'s bytes, and its name, durable: after a crash of the process that
    /// appended them they may still be only in the operating system's cache. Nothing when
    /// it does not exist.
    func syncObject(_ name: String) throws
    /// Deletes `name` (nothing when absent) and makes the deletion durable.
    func deleteDurably(_ name: String) throws
    /// Removes what a crashed writer left half-made under `prefix` (temporary files).
    /// Only the store's one writer calls it, at open.
    func removeLeftovers(prefix: String) throws
}

/// An object open for appending. Used by one thread at a time.
public protocol AppendableObject: AnyObject {
    /// Appends `bytes`; with `sync`, everything appended so far is durable on return.
    /// Without it the bytes survive a crash of this process, not of the machine.
    func append(_ bytes: UnsafeRawBufferPointer, sync: Bool) throws
    /// Appends the pieces, in order, as one append.
    func append(pieces: [[UInt8]], sync: Bool) throws
    /// Makes everything appended so far durable.
    func sync() throws
    /// Stops appending; the object is then as immutable as any other.
    func seal()
}

extension AppendableObject {
    public func append(pieces: [[UInt8]], sync: Bool) throws {
        let joined = pieces.count == 1 ? pieces[0] : Array(pieces.joined())
        try joined.withUnsafeBytes { try append($0, sync: sync) }
    }
}

/// An object store that counts the requests it sends (a remote one).
public protocol ObjectOperationCounting {
    func objectOperations() -> ObjectOperations
}
