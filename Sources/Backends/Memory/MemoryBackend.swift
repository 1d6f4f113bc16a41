// The `memory` backend: a sorted in-memory map, the reference model of the randomized
// tests. A store lives for the life of the process under its path, so reopen within one
// process finds it (checkpoints too), but nothing survives the process.

import Engine
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One in-memory store, shared by every handle opened on its path in this process.
final class MemoryStore: Sendable {
    struct State {
        var tree = PersistentTree()
        var checkpoints: [String: (info: CheckpointInfo, tree: PersistentTree)] = [:]
        var isOpen = false
    }

    let state = Locked(State())

    /// Stores by absolute path: the process-wide "disk" of this backend.
    static let all = Locked<[String: MemoryStore]>([:])
}

public struct MemoryBackendFactory: KVBackendFactory {
    public let name = "memory"
    public let capabilities = BackendCapabilities(persistent: false, crashSafe: false)

    public init() {}

    public func open(at path: String, options: BackendOptions) throws -> any KVBackend {
        try Self.validate(options)
        let key = FileOps.absolutePath(path)
        let store: MemoryStore = try MemoryStore.all.withLock { stores in
            if let existing = stores[key] { return existing }
            guard options.createIfMissing else { throw KVError(.storeNotFound, "no memory store here", path: key) }
            let created = MemoryStore()
            stores[key] = created
            return created
        }
        try store.state.withLock { state in
            if state.isOpen { throw KVError(.locked, "store is held by PID \(getpid()) (this process)", path: key) }
            state.isOpen = true
        }
        return MemoryBackend(store: store, path: key, tree: nil)
    }

    public func openCheckpoint(at path: String, named name: String, options: BackendOptions) throws -> any KVBackend {
        try CheckpointName.validate(name)
        let store = try Self.existing(path)
        let tree = try store.state.withLock { state in
            guard let checkpoint = state.checkpoints[name] else {
                throw KVError(.notFound, "no checkpoint '\(name)'", path: path)
            }
            return checkpoint.tree
        }
        return MemoryBackend(store: store, path: FileOps.absolutePath(path), tree: tree)
    }

    public func restoreCheckpoint(at path: String, named name: String, to destination: String) throws {
        try CheckpointName.validate(name)
        let tree = try Self.existing(path).state.withLock { state in
            guard let checkpoint = state.checkpoints[name] else {
                throw KVError(.notFound, "no checkpoint '\(name)'", path: path)
            }
            return checkpoint.tree
        }
        let key = FileOps.absolutePath(destination)
        try MemoryStore.all.withLock { stores in
            if stores[key] != nil { throw KVError(.alreadyExists, "a memory store exists here", path: key) }
            let restored = MemoryStore()
            restored.state.withLock { $0.tree = tree }
            stores[key] = restored
        }
    }

    /// Forgets every memory store whose path starts with `prefix` (test clean-up).
    public static func discardStores(under prefix: String) {
        MemoryStore.all.withLock { stores in
            stores = stores.filter { !$0.key.hasPrefix(FileOps.absolutePath(prefix)) }
        }
    }

    private static func existing(_ path: String) throws(KVError) -> MemoryStore {
        guard let store = MemoryStore.all.withLock({ $0[FileOps.absolutePath(path)] }) else {
            throw KVError(.storeNotFound, "no memory store here", path: path)
        }
        return store
    }

    public func validate(_ options: BackendOptions) throws { try Self.validate(options) }

    private static func validate(_ options: BackendOptions) throws(KVError) {
        guard options.compression == .none else {
            throw KVError(.invalidArgument, "the memory backend does not compress; set compression to none")
        }
        if let key = options.tuning.keys.sorted().first {
            throw KVError(.invalidArgument, "the memory backend has no tuning option '\(key)'")
        }
    }
}

/// A handle on a memory store (writable) or on one checkpoint's tree (read-only).
final class MemoryBackend: KVBackend {
    let backendName = "memory"
    let isReadOnly: Bool
    private let store: MemoryStore
    private let path: String
    private let frozen: PersistentTree?
    private let lifetime = LifetimeGuard("store")

    init(store: MemoryStore, path: String, tree: PersistentTree?) {
        self.store = store
        self.path = path
        frozen = tree
        isReadOnly = tree != nil
    }

    deinit { try? close() }

    /// The tree as of now, after checking the handle is open.
    private func current() throws -> PersistentTree {
        try lifetime.shared {
            if let frozen { return frozen }
            return store.state.withLock { $0.tree }
        }
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        let tree = try current()
        return key.withUnsafeBytes { tree.get($0)?.value }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        MemoryIterator(tree: try current(), range: range, lifetime: lifetime)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func write(_ batch: WriteBatch, durable: Bool) throws {
        try batch.validate()
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot be written", path: path) }
        try lifetime.shared {
            store.state.withLock { state in
                var tree = state.tree
                batch.forEach { op, a, b in
                    switch op {
                    case .put: tree.put(a, b)
                    case .delete: tree.delete(a)
                    case .deleteRange: tree.deleteRange(a, b)
                    }
                }
                state.tree = tree
            }
        }
    }

    func flush() throws {
        try lifetime.shared {}
    }

    func readView() throws -> any KVReadView {
        MemoryReadView(tree: try current(), parent: lifetime)
    }

    func close() throws {
        let readOnly = isReadOnly
        lifetime.close {
            if !readOnly { store.state.withLock { $0.isOpen = false } }
        }
    }

    func createCheckpoint(named name: String) throws -> CheckpointInfo {
        try CheckpointName.validate(name)
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot make checkpoints", path: path) }
        return try lifetime.shared {
            try store.state.withLock { state in
                if state.checkpoints[name] != nil { throw KVError(.alreadyExists, "checkpoint '\(name)' exists", path: path) }
                let info = CheckpointInfo(name: name, createdAtNanos: FileOps.nowNanos())
                state.checkpoints[name] = (info, state.tree)
                return info
            }
        }
    }

    func listCheckpoints() throws -> [CheckpointInfo] {
        try lifetime.shared {
            store.state.withLock { state in state.checkpoints.values.map(\.info).sorted { $0.name < $1.name } }
        }
    }

    func deleteCheckpoint(named name: String) throws {
        try CheckpointName.validate(name)
        if isReadOnly { throw KVError(.readOnly, "a checkpoint opened for reading cannot delete checkpoints", path: path) }
        try lifetime.shared {
            try store.state.withLock { state in
                guard state.checkpoints.removeValue(forKey: name) != nil else {
                    throw KVError(.notFound, "no checkpoint '\(name)'", path: path)
                }
            }
        }
    }
}

func checkKey(_ key: [UInt8]) throws(KVError) {
    if key.count > KVLimits.maxKeySize {
        throw KVError(.invalidArgument, "key of \(key.count) bytes exceeds the limit of \(KVLimits.maxKeySize)")
    }
}

final class MemoryReadView: KVReadView {
    private let tree: PersistentTree
    private let parent: LifetimeGuard
    private let lifetime = LifetimeGuard("read view")

    init(tree: PersistentTree, parent: LifetimeGuard) {
        self.tree = tree
        self.parent = parent
    }

    private func checkOpen() throws {
        try lifetime.shared {}
        try parent.shared {}
    }

    func get(_ key: [UInt8]) throws -> [UInt8]? {
        try checkKey(key)
        try checkOpen()
        return key.withUnsafeBytes { tree.get($0)?.value }
    }

    func makeIterator(_ range: KeyRange) throws -> any KVIterator {
        try checkOpen()
        return MemoryIterator(tree: tree, range: range, lifetime: parent)
    }

    func firstEntry(from: [UInt8], prefix: [UInt8]) throws -> KVEntry? {
        try firstEntryBySeek(from: from, prefix: prefix)
    }

    func close() { lifetime.close {} }
}

final class MemoryIterator: KVIterator {
    private let cursor: TreeCursor
    private let range: KeyRange
    private let lifetime: LifetimeGuard

    init(tree: PersistentTree, range: KeyRange, lifetime: LifetimeGuard) {
        cursor = TreeCursor(root: tree.root)
        self.range = range
        self.lifetime = lifetime
        range.start.withUnsafeBytes { cursor.seek($0) }
    }

    var isValid: Bool {
        guard let node = cursor.current else { return false }
        guard let end = range.end else { return true }
        return Bytes.compare(node.key, end) < 0
    }

    func seek(_ key: [UInt8]) throws {
        try lifetime.shared {}
        let target = Bytes.compare(key, range.start) >= 0 ? key : range.start
        target.withUnsafeBytes { cursor.seek($0) }
    }

    func next() throws {
        try lifetime.shared {}
        guard isValid else { throw KVError.iteratorNotValid }
        cursor.next()
    }

    func withCurrent<R>(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> R) throws -> R {
        try lifetime.shared {}
        guard isValid, let node = cursor.current else { throw KVError.iteratorNotValid }
        return try node.key.withUnsafeBytes { k in try node.value.withUnsafeBytes { v in try body(k, v) } }
    }
}

extension MemoryBackend {
    /// Logical bytes (keys and values): the live tree's, and those of checkpoint entries the
    /// live tree does not hold with the same value (trees share everything else).
    func spaceUsage() throws -> StoreSpace {
        let live = try current()
        let trees = isReadOnly ? [] : store.state.withLock { $0.checkpoints.values.map(\.tree) }
        func walk(_ node: TreeNode?, _ visit: (TreeNode) -> Void) {
            guard let node else { return }
            walk(node.left, visit)
            visit(node)
            walk(node.right, visit)
        }
        var liveBytes: UInt64 = 0
        walk(live.root) { liveBytes += UInt64($0.key.count + $0.value.count) }
        struct Entry: Hashable {
            var key: [UInt8]
            var value: [UInt8]
        }
        var counted: Set<Entry> = []
        var pinned: UInt64 = 0
        for tree in trees {
            walk(tree.root) { node in
                let same = node.key.withUnsafeBytes { live.get($0) }.map { $0.value == node.value } ?? false
                if !same, counted.insert(Entry(key: node.key, value: node.value)).inserted { pinned += UInt64(node.key.count + node.value.count) }
            }
        }
        return StoreSpace(liveBytes: liveBytes, checkpointOnlyBytes: pinned)
    }
}
