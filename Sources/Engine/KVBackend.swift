// The KVBackend contract: the only storage interface the filesystem layer knows.
// Every backend (lsm, rocksdb, lmdb, memory) implements exactly these semantics, and one
// conformance suite (KVTestSupport) checks them. Docs/kv-contract.md says the same in prose.
//
// Keys: 0 to 500 bytes (KVLimits.maxKeySize), ordered by unsigned byte comparison (a
// shorter key that is a prefix of a longer one sorts first). Values: 0 bytes to 64 MiB.
// Every requirement throws only KVError.

/// One key and its value, owned.
public struct KVEntry: Sendable, Equatable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

/// A half-open key range [start, end); `end == nil` means "to the last key".
public struct KeyRange: Sendable, Equatable {
    public var start: [UInt8]
    public var end: [UInt8]?

    public init(start: [UInt8] = [], end: [UInt8]? = nil) {
        self.start = start
        self.end = end
    }

    /// Every key.
    public static let all = KeyRange()

    /// Every key that starts with `prefix`.
    public static func prefix(_ prefix: [UInt8]) -> KeyRange {
        KeyRange(start: prefix, end: Bytes.prefixSuccessor(prefix))
    }

    /// Whether `key` lies in the range.
    public func contains(_ key: UnsafeRawBufferPointer) -> Bool {
        guard Bytes.compare(key, start) >= 0 else { return false }
        guard let end else { return true }
        return Bytes.compare(key, end) < 0
    }
}

/// A cursor over one consistent point-in-time view, bounded by the range it was made for.
///
/// An iterator is made positioned at the first entry of its range. It lends the bytes of
/// the current entry without copying: the buffers passed to `withCurrent` are valid only
/// during that call. An iterator is used by one thread at a time (it is not Sendable); it
/// holds its view's resources until it is released.
public protocol KVIterator: AnyObject {
    /// True while the iterator is positioned on an entry inside its range.
    var isValid: Bool { get }

    /// Positions on the first entry whose key is at or after `key` (and at or after the
    /// range's start). Throws `.closed` if the store was closed, `.corruption` or `.io`
    /// when stored data cannot be read.
    func seek(_ key: [UInt8]) throws

    /// Moves to the next entry, or makes the iterator invalid at the end of its range.
    /// Throws as `seek`, and `.invalidArgument` (`KVError.iteratorNotValid`) when the
    /// iterator is not on an entry.
    func next() throws

    /// Lends the current key and value to `body`. Throws `.closed` when the store was
    /// closed, `.invalidArgument` when the iterator is not on an entry, and whatever
    /// `body` throws.
    func withCurrent<R>(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> R) throws -> R

    /// Lends the current key and its value's length in bytes, without reading a value
    /// that the backend keeps apart from its keys (lsm: one kept in a WAL segment), so
    /// that a walk over keys alone (deleting a large file's chunks) does not read the data.
    /// Throws as `withCurrent`.
    func withCurrentKey<R>(_ body: (_ key: UnsafeRawBufferPointer, _ valueLength: Int) throws -> R) throws -> R
}

extension KVIterator {
    /// The default: `withCurrent`, whose value the backend holds with its key anyway.
    public func withCurrentKey<R>(_ body: (_ key: UnsafeRawBufferPointer, _ valueLength: Int) throws -> R) throws -> R {
        try withCurrent { key, value in try body(key, value.count) }
    }
}

extension KVError {
    /// What `next` and `withCurrent` throw on an iterator that is not on an entry.
    public static let iteratorNotValid = KVError(.invalidArgument, "the iterator is not on an entry (isValid is false)")
}

/// An iterator that passes every call to another: wrappers that count or observe (fsck's
/// progress, tests) subclass it and override what they watch.
open class ForwardingIterator: KVIterator {
    public let base: any KVIterator

    public init(_ base: any KVIterator) {
        self.base = base
    }

    open var isValid: Bool { base.isValid }
    open func seek(_ key: [UInt8]) throws { try base.seek(key) }
    open func next() throws { try base.next() }
    open func withCurrent<R>(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> R) throws -> R {
        try base.withCurrent(body)
    }
    open func withCurrentKey<R>(_ body: (_ key: UnsafeRawBufferPointer, _ valueLength: Int) throws -> R) throws -> R {
        try base.withCurrentKey(body)
    }
}

extension KVIterator {
    /// The current entry, copied out.
    public func entry() throws -> KVEntry {
        try withCurrent { KVEntry(key: Array($0), value: Array($1)) }
    }

    /// The current key, copied out.
    public func key() throws -> [UInt8] { try withCurrent { k, _ in Array(k) } }
}

/// Read access at one point in time (a read view) or at "now" (the store itself).
/// Thread safety: all requirements may be called from any thread at once.
public protocol KVReader: AnyObject, Sendable {
    /// The value stored under `key`, or nil when absent. Throws `.invalidArgument` for a key
    /// over 500 bytes, `.closed` after close, `.corruption` or `.io` on storage failure.
    func get(_ key: [UInt8]) throws -> [UInt8]?

    /// An iterator over `range`, positioned at its first entry. When called on a store it
    /// sees the store as of this call, however long it lives; on a read view, the view's
    /// point in time. Throws like `get`.
    func makeIterator(_ range: KeyRange) throws -> any KVIterator

    /// The first entry whose key is at or after `from` and starts with `prefix`, or nil.
    /// (The filesystem's versioned lookup; backends may skip data that cannot hold the
    /// prefix, for example with prefix bloom filters.) Throws like `get`.
    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry?

    /// `firstEntry(from:prefix:)` for versioned keys: the caller promises that every key
    /// starting with `prefix` is exactly `prefix.count + suffixLength` bytes long (a logical
    /// key and its version). A backend may then skip data whose filter of keys without
    /// their last `suffixLength` bytes rules `prefix` out. Throws like `get`.
    func firstVersion(from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry?

    /// `get` with the value borrowed: `body` gets the value stored under `key` (nil when
    /// absent), valid only during the call, and its result is returned. A backend may pass
    /// bytes it holds anyway (a cached block) instead of copying them out: the filesystem
    /// reads chunks this way, straight into a reply. Throws like `get`, and what `body`
    /// throws.
    func withValue<R>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R

    /// `withValue` for each of `keys`: `body` runs once per key, in no set order, with the
    /// key's index and value (nil when absent). `tails` has one entry per key (a backend
    /// may refuse other counts with `.invalidArgument`). Where it gives room for a value's
    /// bytes after its first `head`, a backend that would read the value from a file may
    /// put them straight there, checked against its checksum, and pass `body` only the
    /// first `head` bytes with `placed`, the count it put; otherwise `placed` is nil and
    /// the value is passed whole. Many keys at once let such a backend read neighbouring
    /// values with one system call (the filesystem's read-ahead reads a range's chunks so,
    /// into the range). Throws like `get`, and what `body` throws (some bodies may have
    /// run).
    func withValues(
        _ keys: [[UInt8]], head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (_ index: Int, _ value: UnsafeRawBufferPointer?, _ placed: Int?) throws -> Void
    ) throws
}

extension KVReader {
    /// The default: the plain prefix lookup (the promise only allows skipping data).
    public func firstVersion(from: [UInt8], prefix: [UInt8], suffixLength: Int) throws -> KVEntry? {
        try firstEntry(from: from, prefix: prefix)
    }

    /// The default: `get`, then `body` over the copy.
    public func withValue<R>(_ key: [UInt8], _ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        guard let value = try get(key) else { return try body(nil) }
        return try value.withUnsafeBytes { try body($0) }
    }

    /// The default: `withValue` for each key in turn, every value passed whole.
    public func withValues(
        _ keys: [[UInt8]], head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (_ index: Int, _ value: UnsafeRawBufferPointer?, _ placed: Int?) throws -> Void
    ) throws {
        for (index, key) in keys.enumerated() { try withValue(key) { try body(index, $0, nil) } }
    }
}

/// A consistent point-in-time view: it never sees writes made after it was opened, while
/// writers continue. Close it (or release it) to let the store reclaim what it pins; use
/// after `close()` throws `.closed`. Iterators already made from it stay usable until they
/// are released.
public protocol KVReadView: KVReader {
    func close()
}

/// A key-value store: the storage contract of the whole project.
///
/// Thread safety: every requirement may be called from any thread at once; a store is a
/// reference type shared freely. Exclusivity: one process opens a store at a time (the
/// factory takes an exclusive lock; a second opener gets `.locked` naming the holder).
public protocol KVBackend: KVReader {
    /// The backend's registry name ("lsm", "rocksdb", "lmdb", "memory").
    var backendName: String { get }

    /// True for a store opened read-only (a checkpoint); writes then throw `.readOnly`.
    var isReadOnly: Bool { get }

    /// Applies every operation of `batch` atomically: after it returns, and after any crash,
    /// either all of them are visible or none is. Readers never see part of a batch.
    ///
    /// Durability: with `durable: true` the call returns only after the batch, and every
    /// batch any thread wrote before it, is on stable storage (prefix durability). With
    /// `durable: false` the batch is visible at once and becomes durable at the next
    /// durable write, `flush()` or a clean `close()`; a crash may lose it (and only a suffix
    /// of such batches), never reorder it.
    ///
    /// Throws `.invalidArgument` if a key exceeds 500 bytes or a value 64 MiB (nothing is
    /// applied), `.readOnly`, `.closed`, `.io`, or `.fenced` when another writer took over.
    func write(_ batch: WriteBatch, durable: Bool) throws

    /// Makes every write that returned before this call durable. Throws `.io`, `.closed`.
    func flush() throws

    /// Waits until the background work that writes so far made due (memtable flushes,
    /// compactions) is done, so that a benchmark's next phase does not pay for the last
    /// one's. The default waits for nothing. Throws `.closed`, or the background error.
    func settleBackgroundWork() throws

    /// The requests sent to remote object storage so far (nil for a store that keeps none
    /// there). The default is nil.
    func objectOperations() -> ObjectOperations?

    /// True for a read-only replica (`KVBackendFactory.openReplica`), which follows a
    /// writer elsewhere. The default is false.
    var isReplica: Bool { get }

    /// For a replica: reads what the writer wrote since the last call and shows it to reads
    /// that start afterwards. Returns a generation that changes whenever what the replica
    /// shows changed (reads may also catch up, so compare generations rather than count
    /// calls). Throws `.io` when the writer's objects cannot be read (the replica keeps
    /// what it showed). Other stores return 0 and do nothing (the default).
    func catchUp() throws -> UInt64

    /// A consistent read view of the store as of this call. Throws `.closed`.
    func readView() throws -> any KVReadView

    /// Flushes and releases the store and its lock. Later calls on the store throw
    /// `.closed`; closing twice is harmless. Iterators and views still alive become
    /// unusable (their calls throw `.closed`).
    func close() throws

    /// The store is about to be closed: a backend waiting out an outage of remote storage
    /// gives up from now on (the waiting calls fail) instead of holding the shutdown, so
    /// the flushes before `close` cannot hang (s3.md, "on_outage"). `close` does it too.
    /// The default does nothing.
    func beginClosing()

    /// Creates a named, durable, point-in-time image of the whole store containing every
    /// write that returned before this call. Later writes never change it. Names are 1 to 64
    /// characters of [A-Za-z0-9._-], not starting with '.'. Throws `.alreadyExists`,
    /// `.invalidArgument`, `.readOnly`, `.io`.
    func createCheckpoint(named name: String) throws -> CheckpointInfo

    /// Every checkpoint of the store, sorted by name.
    func listCheckpoints() throws -> [CheckpointInfo]

    /// Deletes a checkpoint; its storage is reclaimed. Throws `.notFound`.
    func deleteCheckpoint(named name: String) throws

    /// What the store occupies: the live store, and what only its checkpoints keep
    /// (Maintenance.swift). The default counts the bytes of every key and value.
    func spaceUsage() throws -> StoreSpace

    /// Reads every stored object and value, verifying checksums where the format has
    /// them, and names each failure by object. Calls `progress` now and then with the
    /// counts so far; when it answers false the scrub stops there (`stopped`). The default
    /// reads every value through one read view.
    func scrub(progress: (ScrubReport) -> Bool) throws -> ScrubReport
}

extension KVBackend {
    public func beginClosing() {}
    public func settleBackgroundWork() throws {}
    public func objectOperations() -> ObjectOperations? { nil }
    public var isReplica: Bool { false }
    public func catchUp() throws -> UInt64 { 0 }

    /// Writes one key.
    public func put(_ key: [UInt8], _ value: [UInt8], durable: Bool = false) throws {
        var batch = WriteBatch()
        batch.put(key, value)
        try write(batch, durable: durable)
    }

    /// Deletes one key.
    public func delete(_ key: [UInt8], durable: Bool = false) throws {
        var batch = WriteBatch()
        batch.delete(key)
        try write(batch, durable: durable)
    }
}

extension KVReader {
    /// Calls `body` for each entry of `range` in key order with borrowed bytes until it
    /// returns false. No allocation per entry.
    public func scan(
        _ range: KeyRange,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        try walk(range) { try $0.withCurrent(body) }
    }

    /// `scan` with each value's length instead of its bytes (`KVIterator.withCurrentKey`):
    /// values a backend keeps apart from their keys are not read.
    public func scanKeys(
        _ range: KeyRange,
        _ body: (_ key: UnsafeRawBufferPointer, _ valueLength: Int) throws -> Bool
    ) throws {
        try walk(range) { try $0.withCurrentKey(body) }
    }

    /// Calls `visit` on an iterator at each entry of `range` in turn until it returns false.
    private func walk(_ range: KeyRange, _ visit: (any KVIterator) throws -> Bool) throws {
        let iterator = try makeIterator(range)
        while iterator.isValid {
            guard try visit(iterator) else { return }
            try iterator.next()
        }
    }

    /// Every entry of `range`, copied out (for tests and small ranges).
    public func entries(_ range: KeyRange = .all) throws -> [KVEntry] {
        var result: [KVEntry] = []
        try scan(range) { key, value in
            result.append(KVEntry(key: Array(key), value: Array(value)))
            return true
        }
        return result
    }

    /// A default `firstEntry` for backends without a faster way: one bounded seek.
    public func firstEntryBySeek(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        let start = Bytes.compare(from, prefix) >= 0 ? from : prefix
        let iterator = try makeIterator(KeyRange(start: start, end: Bytes.prefixSuccessor(prefix)))
        return iterator.isValid ? try iterator.entry() : nil
    }
}
