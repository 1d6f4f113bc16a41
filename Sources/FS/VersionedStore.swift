// Versioned reads and writes over the KV store, following the design's lookup rule:
// read logical key k at version v = the first entry of k whose version is v or one of
// v's ancestors (a whiteout means absent). A version without ancestors is read with one
// point get; with ancestors, one firstVersion (a prefix seek the backend may filter by
// logical key) per gap between visible versions.

import Engine

/// One version of the forest as seen by reads: its id and its ancestors, nearest first
/// (ids decrease towards the root, since a child's id exceeds its parent's).
public struct VersionView: Sendable, Equatable {
    public var head: UInt64
    public var ancestors: [UInt64]

    public init(head: UInt64, ancestors: [UInt64] = []) {
        self.head = head
        self.ancestors = ancestors
    }

    func sees(_ version: UInt64) -> Bool {
        if version == head { return true }
        let index = firstAncestor(atMost: version)
        return index < ancestors.count && ancestors[index] == version
    }

    /// The nearest visible version strictly below `version`, if any.
    func visible(below version: UInt64) -> UInt64? {
        if head < version { return head }
        var index = firstAncestor(atMost: version)
        if index < ancestors.count, ancestors[index] == version { index += 1 }
        return index < ancestors.count ? ancestors[index] : nil
    }

    /// The index of the first ancestor not above `version` (ancestors descend).
    private func firstAncestor(atMost version: UInt64) -> Int {
        var low = 0
        var high = ancestors.count
        while low < high {
            let mid = (low + high) / 2
            if ancestors[mid] > version { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

struct VersionedStore {
    let store: any KVReader
    let view: VersionView

    /// The live value of `logical` at this view, or nil when absent or whited out. `below`:
    /// a version no visible entry of `logical` is newer than (an inode's content version),
    /// where the search may start; 0 for none. `probe`: see `lookup`.
    func get(_ logical: [UInt8], below hint: UInt64 = 0, probe: UInt64 = 0) throws(FSError) -> [UInt8]? {
        if view.ancestors.isEmpty {
            guard let value = try kv({ try store.get(FSKeys.versioned(logical, view.head)) }) else { return nil }
            return value.first == ValueTag.live.rawValue ? value : nil
        }
        guard let (_, value) = try lookup(logical, below: hint, probe: probe) else { return nil }
        return value.first == ValueTag.live.rawValue ? value : nil
    }

    /// `get` with the value borrowed where the store can lend it (KVReader.withValue): a
    /// version without ancestors reads its one key so; otherwise the value is looked up
    /// and copied as by `get`. `body` gets nil when absent or whited out.
    func withValue<R>(_ logical: [UInt8], below hint: UInt64 = 0, probe: UInt64 = 0,
                      _ body: (UnsafeRawBufferPointer?) throws(FSError) -> R) throws(FSError) -> R {
        guard view.ancestors.isEmpty else {
            let value = try get(logical, below: hint, probe: probe)
            guard let value else { return try body(nil) }
            return try withBytes(value) { raw throws(FSError) in try body(raw) }
        }
        let result: Result<R, FSError> = try kv {
            try store.withValue(FSKeys.versioned(logical, view.head)) { raw in
                Result { () throws(FSError) in try body(raw.flatMap { $0.first == ValueTag.live.rawValue ? $0 : nil }) }
            }
        }
        return try result.get()
    }

    /// `withValue` for many keys (KVReader.withValues): a version without ancestors reads
    /// its keys so, the values' bytes after `head` put straight in `tails` where the store
    /// can (`placed`); otherwise each key is looked up and its value passed whole. `body`
    /// runs once per key, in no set order, with nil for one absent or whited out.
    func withValues(
        _ logicals: [[UInt8]], below hint: UInt64 = 0, head: Int, tails: [UnsafeMutableRawBufferPointer?],
        _ body: (_ index: Int, _ value: UnsafeRawBufferPointer?, _ placed: Int?) throws(FSError) -> Void
    ) throws(FSError) {
        guard view.ancestors.isEmpty else {
            for (index, logical) in logicals.enumerated() {
                try withValue(logical, below: hint) { raw throws(FSError) in try body(index, raw, nil) }
            }
            return
        }
        let live = ValueTag.live.rawValue
        try kv {
            try store.withValues(logicals.map { FSKeys.versioned($0, view.head) }, head: head, tails: tails) { index, raw, placed in
                // `kv` passes the FSError on as it is.
                try body(index, raw.flatMap { $0.first == live ? $0 : nil }, placed)
            }
        }
    }

    /// The entry of `logical` this view sees, live or whiteout, with its version.
    ///
    /// With a hint, the entry at the hint itself is tried first with a point get: when it
    /// exists no visible entry is newer, so it is the answer, and most reads end there (a
    /// chunk is usually where its inode's content version says). `probe`: a version tried
    /// instead that is only a guess (where the handle last found the key); when it misses,
    /// the search starts at the hint or the head as before.
    func lookup(_ logical: [UInt8], below hint: UInt64 = 0, probe: UInt64 = 0) throws(FSError) -> (version: UInt64, value: [UInt8])? {
        let start = hint != 0 && hint < view.head ? hint : view.head
        let guess = probe != 0 ? probe : hint
        if guess != 0, view.sees(guess), let value = try kv({ try store.get(FSKeys.versioned(logical, guess)) }) {
            return (guess, value)
        }
        var version = start
        while true {
            let from = FSKeys.versioned(logical, version)
            guard let entry = try kv({ try store.firstVersion(from: from, prefix: logical, suffixLength: FSKeys.versionSuffixSize) })
            else { return nil }
            guard entry.key.count == logical.count + FSKeys.versionSuffixSize,
                  let found = FSKeys.uint64(entry.key, at: logical.count).map({ UInt64.max - $0 })
            else { return nil }
            if view.sees(found) { return (found, entry.value) }
            guard let next = view.visible(below: found) else { return nil }
            version = next
        }
    }

    /// Calls `body` with each visible live entry whose logical key starts with `prefix`,
    /// from `start` (a logical key) on, in key order, until it returns false.
    func scan(
        prefix: [UInt8], from start: [UInt8]? = nil,
        _ body: (_ logical: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws(FSError) -> Bool
    ) throws(FSError) {
        try scanVersions(prefix: prefix, from: start) { logical, _, value throws(FSError) in try body(logical, value) }
    }

    /// `scan`, also naming the version each entry was found at.
    func scanVersions(
        prefix: [UInt8], from start: [UInt8]? = nil,
        _ body: (_ logical: UnsafeRawBufferPointer, _ version: UInt64, _ value: UnsafeRawBufferPointer) throws(FSError) -> Bool
    ) throws(FSError) {
        let range = KeyRange(start: start ?? prefix, end: Bytes.prefixSuccessor(prefix))
        var lastLogical: [UInt8]? = nil
        var failure: FSError?
        do {
            try store.scan(range) { key, value in
                guard let (logical, version) = FSKeys.splitVersion(key) else { return true }
                if let last = lastLogical, Bytes.compare(logical, last) == 0 { return true }
                guard view.sees(version) else { return true }
                lastLogical = Array(logical)
                guard value.first == ValueTag.live.rawValue else { return true }
                switch Result(catching: { () throws(FSError) in try body(logical, version, value) }) {
                case .success(let more): return more
                case .failure(let error):
                    failure = error
                    return false
                }
            }
        } catch {
            throw FSError.storage(error as? KVError ?? KVError(.io, "\(error)"))
        }
        if let failure { throw failure }
    }
}

/// A write batch in the making, at the head version, with the set of touched inodes (for
/// the change index) and the counter deltas it applies: the dataset's statistics and the
/// WRITTEN bytes of each version whose chunk entries it adds, replaces or deletes.
struct FSBatch {
    var batch = WriteBatch()
    let view: VersionView
    /// The dataset whose statistics and change index the batch updates (nil: none).
    var dataset: UInt64?
    /// Each inode once, in the order first touched (an operation touches one to four:
    /// an array, searched in order, costs less than a set to hash into).
    private(set) var touched: [UInt64] = []
    var inodeDelta: Int64 = 0
    var bytesDelta: Int64 = 0
    var written: [UInt64: Int64] = [:]
    /// Background work (reclaim, collect): paced when the worker thread runs it.
    var background = false

    init(view: VersionView, background: Bool = false) {
        self.view = view
        self.background = background
        // Room for a metadata operation's records, so the batch does not grow four times.
        batch.reserve(512)
    }

    mutating func addWritten(_ version: UInt64, _ delta: Int) {
        written[version, default: 0] += Int64(delta)
    }

    mutating func put(_ logical: [UInt8], _ value: [UInt8]) {
        batch.put(FSKeys.versioned(logical, view.head), value)
    }

    /// Puts `logical` at the head with the value `head` followed by `body`.
    mutating func put(_ logical: [UInt8], head: [UInt8], body: UnsafeRawBufferPointer) {
        FSKeys.versioned(logical, view.head).withUnsafeBytes { key in
            head.withUnsafeBytes { batch.put(key, head: $0, body: body) }
        }
    }

    /// Removes `logical` at the head: a whiteout when an ancestor could still show it.
    mutating func remove(_ logical: [UInt8]) {
        if view.ancestors.isEmpty {
            batch.delete(FSKeys.versioned(logical, view.head))
        } else {
            batch.put(FSKeys.versioned(logical, view.head), [ValueTag.whiteout.rawValue])
        }
    }

    mutating func putInode(_ inode: Inode) {
        put(FSKeys.inode(inode.ino), inode.encode())
        touch(inode.ino)
        inodes.append((inode.ino, inode))
    }

    /// Puts the record of an inode this batch creates. Its creator does not hold its lock
    /// (nobody can name it before the commit), but from the commit on another caller can
    /// find it, lock it and change it: so the commit forgets its cache slot rather than
    /// store this value after that caller's (`created`).
    mutating func putNewInode(_ inode: Inode) {
        putInode(inode)
        created.append(inode.ino)
    }

    /// Inodes whose records this batch creates (`putNewInode`).
    private(set) var created: [UInt64] = []

    /// Removes inode `ino`'s record.
    mutating func removeInode(_ ino: UInt64) {
        remove(FSKeys.inode(ino))
        touch(ino)
        inodes.append((ino, nil))
    }

    private mutating func touch(_ ino: UInt64) {
        if !touched.contains(ino) { touched.append(ino) }
    }

    /// The inode records this batch writes, in order (nil: removed): what an observer sees
    /// after the commit, without reading them back (Observation.swift).
    private(set) var inodes: [(ino: UInt64, inode: Inode?)] = []

    /// The directory entries this batch writes (nil: removed), in order: what the
    /// dataset's handle caches after the commit (HandleCache.swift).
    private(set) var entries: [(key: EntryKey, value: DirEntry??)] = []

    mutating func noteEntry(_ dir: UInt64, _ name: [UInt8], _ entry: DirEntry?) {
        entries.append((EntryKey(dir: dir, name: name), .some(entry)))
    }

    /// What the batch writes by any means, `putInode` and `noteEntry` or not: the inodes
    /// whose records it puts or deletes, whether it writes any directory entry, and
    /// whether it deletes a range (which may cover anything). A batch of no dataset (the
    /// collector, the reclaimer) changes that under every handle's caches.
    var recordsWritten: (inodes: [UInt64], entries: Bool, ranges: Bool) {
        var written: (inodes: [UInt64], entries: Bool, ranges: Bool) = ([], false, false)
        batch.forEach { op, key, _ in
            if op == .deleteRange { written.ranges = true }
            guard let kind = key.first else { return }
            if kind == KeyKind.dirEntry.rawValue { written.entries = true }
            if kind == KeyKind.inode.rawValue, key.count == 17 { written.inodes.append(key.readBigEndian(at: 1)) }
        }
        return written
    }

    /// Inodes as the operation read them under their locks before changing them (the
    /// first time it changes each): an observer's attributes from before the change,
    /// without reading them again (Observation.swift).
    private(set) var originals: [Inode] = []

    mutating func noteOriginal(_ inode: Inode) {
        if !originals.contains(where: { $0.ino == inode.ino }) { originals.append(inode) }
    }

    /// The record of `ino` as this batch leaves it: .some(nil) when it removes it, nil when
    /// it writes no record of `ino`.
    func lastInode(_ ino: UInt64) -> Inode?? {
        inodes.last { $0.ino == ino }.map { $0.inode }
    }

    /// Reclaim records the batch puts (with their kind) or deletes (nil), for the pool's
    /// queue in memory (Reclaimer.swift).
    var reclaims: [(id: ReclaimID, kind: ReclaimKind?)] = []

    mutating func putUnversioned(_ key: [UInt8], _ value: [UInt8]) {
        batch.put(key, value)
        if let id = ReclaimID(key: key), value.count == 1, let kind = ReclaimKind(rawValue: value[0]) { reclaims.append((id, kind)) }
    }

    mutating func deleteUnversioned(_ key: [UInt8]) {
        batch.delete(key)
        if let id = ReclaimID(key: key) { reclaims.append((id, nil)) }
    }
}

/// The key of a reclaim record: (inode, version).
struct ReclaimID: Hashable, Comparable, Sendable {
    var ino: UInt64
    var version: UInt64

    init(ino: UInt64, version: UInt64) {
        self.ino = ino
        self.version = version
    }

    /// nil unless `key` is a well-formed reclaim record key.
    init?(key: [UInt8]) {
        guard key.count == 17, key[0] == KeyKind.reclaim.rawValue else { return nil }
        let (ino, version) = key.withUnsafeBytes { ($0.readBigEndian(at: 1), $0.readBigEndian(at: 9)) }
        self.init(ino: ino, version: version)
    }

    static func < (a: ReclaimID, b: ReclaimID) -> Bool { (a.ino, a.version) < (b.ino, b.version) }
}
