// Versioned reads and writes over the KV store, following the design's lookup rule:
// read logical key k at version v = the first entry of k whose version is v or one of
// v's ancestors (a whiteout means absent). Until datasets exist there is one version with
// no ancestors, and a read is one point get; with ancestors it is one firstEntry per gap.

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

    func sees(_ version: UInt64) -> Bool { version == head || ancestors.contains(version) }

    /// The nearest visible version strictly below `version`, if any.
    func visible(below version: UInt64) -> UInt64? {
        if head < version { return head }
        return ancestors.first { $0 < version }
    }
}

struct VersionedStore {
    let store: any KVReader
    let view: VersionView

    /// The live value of `logical` at this view, or nil when absent or whited out.
    func get(_ logical: [UInt8]) throws(FSError) -> [UInt8]? {
        if view.ancestors.isEmpty {
            guard let value = try kv({ try store.get(FSKeys.versioned(logical, view.head)) }) else { return nil }
            return value.first == ValueTag.live.rawValue ? value : nil
        }
        var version = view.head
        while true {
            let from = FSKeys.versioned(logical, version)
            guard let entry = try kv({ try store.firstEntry(from: from, prefix: logical) }) else { return nil }
            guard entry.key.count == logical.count + FSKeys.versionSuffixSize,
                  let found = FSKeys.uint64(entry.key, at: logical.count).map({ UInt64.max - $0 })
            else { return nil }
            if view.sees(found) { return entry.value.first == ValueTag.live.rawValue ? entry.value : nil }
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
                switch Result(catching: { () throws(FSError) in try body(logical, value) }) {
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
/// the change index) and the counter deltas it applies.
struct FSBatch {
    var batch = WriteBatch()
    let view: VersionView
    var touched: Set<UInt64> = []
    var inodeDelta: Int64 = 0
    var chunkDelta: Int64 = 0

    init(view: VersionView) { self.view = view }

    mutating func put(_ logical: [UInt8], _ value: [UInt8]) {
        batch.put(FSKeys.versioned(logical, view.head), value)
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
        touched.insert(inode.ino)
    }

    mutating func putUnversioned(_ key: [UInt8], _ value: [UInt8]) { batch.put(key, value) }
    mutating func deleteUnversioned(_ key: [UInt8]) { batch.delete(key) }
}
