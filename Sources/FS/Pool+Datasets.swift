// Dataset and snapshot operations (Docs/datasets.md): create, list, info, delete, rename,
// default, snapshot (also recursive), clone, rollback, read-only. Each is one atomic batch
// of records plus the matching forest change, made under the commit lock; none copies a
// key, whatever the dataset holds. Snapshot, rollback, delete and read-only changes hold
// the barriers of the datasets they change exclusively, so every operation falls whole on
// one side, and move the handles' views before any waiting operation resumes.

import Engine

/// What the command line, gRPC and NFS show of a dataset or snapshot.
public struct DatasetInfo: Sendable, Equatable {
    public var id: UInt64
    /// "a/b" for a dataset, "a/b@s" for a snapshot.
    public var name: String
    public var uuid: String
    /// Snapshots: the dataset they were taken of; clones: their origin snapshot.
    public var parentID: UInt64?
    public var parentUUID: String?
    /// The parent's current name, while it exists.
    public var parentName: String?
    public var rootInode: UInt64
    public var createdAt: Timestamp
    public var readonly: Bool
    public var isSnapshot: Bool
    public var isDefault: Bool
    public var generation: UInt64
    public var flags: UInt32
    /// Inodes and logical bytes shown.
    public var counters: FSCounters
    /// REFER: logical bytes plus a fixed charge per inode.
    public var referBytes: UInt64 { counters.refer }
    /// WRITTEN: stored bytes of the chunks first written at this version (for a dataset:
    /// since its last snapshot).
    public var writtenBytes: UInt64
    /// USED: what deleting it (a dataset with its snapshots) would free. Computed by
    /// `info` and the lists; nil in what snapshot, clone and create return (for a
    /// snapshot it may take a read of the snapshot's own entries).
    public var usedBytes: UInt64?
    /// True while the collector still works: USED may change when it finishes.
    public var usedIsEstimate: Bool
}

extension Pool {
    // MARK: names

    static let maxNameLength = 255

    /// The parts of a dataset name: 1 to 255 bytes, no '@', no control character (NUL
    /// included), '/' only between non-empty parts, no part ".", ".." or ".snapshots" (a
    /// dataset "a/.snapshots" would hide the snapshots of "a": NFS exports it at the
    /// path of their folder). Names looked up (`new` false) may break the last two rules,
    /// which came later: what was made before stays reachable.
    static func datasetParts(_ name: String, new: Bool = true) throws(DatasetError) -> [[UInt8]] {
        let bytes = Array(name.utf8)
        try checkName(bytes, what: "dataset name", slash: true, new: new)
        let parts = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init)
        for part in parts {
            guard !part.isEmpty else { throw DatasetError(.invalidName, "dataset name \(shown(bytes)) has an empty part") }
            guard part != [0x2E], part != [0x2E, 0x2E] else {
                throw DatasetError(.invalidName, "dataset name \(shown(bytes)) has a part \".\" or \"..\"")
            }
            guard !new || part != Self.snapshotsFolderName else {
                throw DatasetError(.invalidName, "dataset name \(shown(bytes)) has a part \".snapshots\", the name of each dataset's snapshot folder")
            }
        }
        return parts
    }

    static func snapshotName(_ name: String, new: Bool = true) throws(DatasetError) -> [UInt8] {
        let bytes = Array(name.utf8)
        try checkName(bytes, what: "snapshot name", slash: false, new: new)
        guard bytes != [0x2E], bytes != [0x2E, 0x2E], !new || bytes != Self.snapshotsFolderName else {
            throw DatasetError(.invalidName, "snapshot name may not be \".\", \"..\" or \".snapshots\"")
        }
        return bytes
    }

    /// The folder at each dataset's root that holds its snapshots.
    static let snapshotsFolderName = Array(".snapshots".utf8)

    /// A name for a message: quoted with escapes, and cut short when long.
    static func shown(_ bytes: [UInt8]) -> String {
        let limit = 64
        let text = String(decoding: bytes.prefix(limit), as: UTF8.self).debugDescription
        return bytes.count > limit ? text + " (\(bytes.count) bytes)" : text
    }

    private static func checkName(_ bytes: [UInt8], what: String, slash: Bool, new: Bool) throws(DatasetError) {
        guard (1...maxNameLength).contains(bytes.count) else {
            throw DatasetError(.invalidName, "\(what) \(shown(bytes)) must be 1 to \(maxNameLength) bytes, not \(bytes.count)")
        }
        guard !bytes.contains(0) else { throw DatasetError(.invalidName, "\(what) \(shown(bytes)) contains NUL") }
        guard !new || !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw DatasetError(.invalidName, "\(what) \(shown(bytes)) contains a control character")
        }
        guard !bytes.contains(UInt8(ascii: "@")) else { throw DatasetError(.invalidName, "\(what) \(shown(bytes)) contains '@'") }
        if !slash, bytes.contains(UInt8(ascii: "/")) { throw DatasetError(.invalidName, "\(what) \(shown(bytes)) contains '/'") }
    }

    /// "DATASET@SNAP" split at its "@", or nil for a name without one. Done on bytes, as
    /// names are checked: "@" followed by a combining mark is one Character, which a
    /// search for the Character "@" misses.
    public static func splitSnapshotName(_ name: String) -> (dataset: String, snapshot: String)? {
        let bytes = Array(name.utf8)
        guard let at = bytes.firstIndex(of: UInt8(ascii: "@")) else { return nil }
        return (String(decoding: bytes[..<at], as: UTF8.self), String(decoding: bytes[(at + 1)...], as: UTF8.self))
    }

    /// The id of the dataset "a/b" or the snapshot "a/b@s".
    public func resolve(_ name: String) throws(DatasetError) -> UInt64 {
        try state.withLock { s throws(DatasetError) in try Self.resolve(name, in: s.forest) }
    }

    static func resolve(_ name: String, in forest: Forest) throws(DatasetError) -> UInt64 {
        if let parts = splitSnapshotName(name) {
            let snapshot = try snapshotName(parts.snapshot, new: false)
            let dataset = try resolve(parts.dataset, in: forest)
            guard let id = forest.snapshot(of: dataset, named: snapshot) else {
                throw DatasetError(.notFound, "no snapshot \(name.debugDescription)")
            }
            return id
        }
        _ = try datasetParts(name, new: false)
        guard let id = forest.dataset(named: Array(name.utf8)) else { throw DatasetError(.notFound, "no dataset \(name.debugDescription)") }
        return id
    }

    /// The writable dataset `name` (not a snapshot).
    private func writableDataset(_ name: String, _ s: PoolState) throws(DatasetError) -> DatasetRecord {
        let id = try Self.resolve(name, in: s.forest)
        guard let record = s.forest.datasets[id] else { throw DatasetError(.notFound, "no dataset \(name.debugDescription)") }
        guard !record.isSnapshot else { throw DatasetError(.isSnapshot, "\(name.debugDescription) is a snapshot") }
        return record
    }

    /// Where a new dataset named by `parts` goes: its container (`none` at the top).
    private func container(of parts: [[UInt8]], _ s: PoolState) throws(DatasetError) -> UInt64 {
        guard parts.count > 1 else { return DatasetRecord.none }
        let path = Array(parts.dropLast().joined(separator: [UInt8(ascii: "/")]))
        guard let id = s.forest.dataset(named: path) else {
            throw DatasetError(.notFound, "no parent dataset \(String(decoding: path, as: UTF8.self).debugDescription)")
        }
        return id
    }

    // MARK: applying a change

    /// Runs `body` on a copy of the state under the commit lock; applies its batch (records
    /// and id counters are added by `body`), then adopts the copy and refreshes the handles.
    /// Returns the sync to await once the caller has released its barriers.
    private func change<R>(
        _ body: (inout PoolState, inout WriteBatch) throws(DatasetError) -> R
    ) throws(DatasetError) -> (R, PendingSync) {
        let outcome = try state.withLock { s throws(DatasetError) -> (R, PendingSync) in
            var next = s
            var batch = WriteBatch()
            let result = try body(&next, &batch)
            try storage { () throws(FSError) in try crashPoints.pass("dataset.before-commit") }
            let pending = try storage { () throws(FSError) in try applyLocked(batch) }
            s = next
            try storage { () throws(FSError) in try crashPoints.pass("dataset.after-commit") }
            return (result, pending)
        }
        refreshHandles()
        return outcome
    }

    /// Holds the barriers of `ids` exclusively (in id order) around `body`.
    private func exclusively<R>(_ ids: [UInt64], _ body: () throws(DatasetError) -> R) throws(DatasetError) -> R {
        let held = try ids.sorted().map { id throws(DatasetError) in try filesystem(id) }
        for handle in held { handle.barrier.lockExclusive() }
        defer { for handle in held.reversed() { handle.barrier.unlockExclusive() } }
        return try body()
    }

    private func finish<R>(_ outcome: (R, PendingSync)) throws(DatasetError) -> R {
        try storage { () throws(FSError) in try awaitDurable(outcome.1) }
        return outcome.0
    }

    // MARK: datasets

    /// Creates an empty dataset ("a/b" inside the existing "a"). O(1).
    @discardableResult
    public func createDataset(_ name: String) throws(DatasetError) -> DatasetInfo {
        let parts = try Self.datasetParts(name)
        let id = try finish(try change { s, batch throws(DatasetError) -> UInt64 in
            let container = try container(of: parts, s)
            if s.forest.dataset(named: Array(name.utf8)) != nil { throw DatasetError(.exists, "dataset \(name.debugDescription) exists") }
            let (id, version, ino) = (s.nextDataset, s.nextVersion, s.nextInode)
            s.nextDataset += 1
            s.nextVersion += 1
            s.nextInode += 1
            let now = FileSystem.now()
            var root = Inode(ino: ino, type: .directory, mode: 0o755, uid: 0, gid: 0, now: now)
            root.parent = ino
            root.contentVersion = version
            root.generation = UInt64.random(in: 1...UInt64(UInt32.max))
            let record = DatasetRecord(id: id, name: parts.last!, container: container, version: version, rootInode: ino, createdAt: now)
            s.forest.addVersion(version, VersionNode(parent: 0, written: 0))
            s.forest.put(record)
            s.counters[id] = FSCounters(inodes: 1, bytes: 0)
            s.changed[version] = [ino]
            batch.put(FSKeys.versioned(FSKeys.inode(ino), version), root.encode())
            batch.put(FSKeys.cookieCounter(ino), SystemRecords.encodeUInt64(1))
            batch.put(FSKeys.changeIndex(version, ino), [])
            Self.putRecords(&batch, s, datasets: [record], versions: [version])
            return id
        })
        return try info(id, used: false)
    }

    /// Every writable dataset, by name; with USED unless `used` is false (what the NFS
    /// server lists needs no USED).
    public func listDatasets(used: Bool = true) throws(DatasetError) -> [DatasetInfo] {
        try infos(used: used) { s in s.forest.datasets.values.filter { !$0.isSnapshot }.map(\.id) }
            .sorted { $0.name < $1.name }
    }

    /// Every snapshot, or those of `dataset`, by dataset name then age; with USED unless
    /// `used` is false (a snapshot's USED may read every key its version wrote).
    public func listSnapshots(of dataset: String? = nil, used: Bool = true) throws(DatasetError) -> [DatasetInfo] {
        try infos(used: used) { s throws(DatasetError) in
            let of = try dataset.map { name throws(DatasetError) in try writableDataset(name, s).id }
            return s.forest.datasets.values.filter { $0.isSnapshot && (of == nil || $0.parent == of) }.map(\.id)
        }
        .sorted { (Self.splitSnapshotName($0.name)?.dataset ?? $0.name, $0.id) < (Self.splitSnapshotName($1.name)?.dataset ?? $1.name, $1.id) }
    }

    public func info(_ name: String) throws(DatasetError) -> DatasetInfo {
        try info(try resolve(name))
    }

    /// The snapshots of dataset `id`, by id, each with its own name (after the "@"): found
    /// by the dataset's id in one look at the forest, so a rename of the dataset at the
    /// same moment changes nothing (NFS `.snapshots`).
    public func snapshotNames(of id: UInt64) throws(DatasetError) -> [(id: UInt64, name: [UInt8])] {
        try state.withLock { s throws(DatasetError) in
            guard let record = s.forest.datasets[id], !record.isSnapshot else {
                throw DatasetError(.notFound, "no dataset with id \(id)")
            }
            return s.forest.snapshots(of: id).compactMap { snapshot in s.forest.datasets[snapshot].map { (snapshot, $0.name) } }
        }
    }

    /// The snapshot of dataset `id` named `name` (after the "@"), by the dataset's id.
    public func snapshotID(of id: UInt64, named name: [UInt8]) -> UInt64? {
        state.withLock { s in s.forest.snapshot(of: id, named: name) }
    }

    /// What `id` is, with USED unless `used` is false.
    public func info(_ id: UInt64, used computeUsed: Bool = true) throws(DatasetError) -> DatasetInfo {
        guard let info = try infos(used: computeUsed, { _ in [id] }).first else {
            throw DatasetError(.notFound, "no dataset or snapshot with id \(id)")
        }
        return info
    }

    /// The datasets and snapshots `select` names (those that exist), read under the
    /// commit lock. USED, when asked for, is computed after the lock is released, from a
    /// copy of the forest (`ForestUsage`): the commits waiting meanwhile are the reason.
    private func infos(
        used computeUsed: Bool, _ select: (PoolState) throws(DatasetError) -> [UInt64]
    ) throws(DatasetError) -> [DatasetInfo] {
        // USED reads what versions show: the collector leaves them as they are until it is
        // done (ReadGate). Entered before the forest is looked at.
        let token = computeUsed ? readGate.enter() : nil
        defer { if let token { readGate.leave(token) } }
        let (found, forest) = try state.withLock { s throws(DatasetError) -> ([DatasetInfo], Forest?) in
            (try select(s).compactMap { Self.describe($0, s) }, computeUsed ? s.forest : nil)
        }
        guard let forest else { return found }
        let usage = ForestUsage(forest)
        var infos = found
        for index in infos.indices {
            let id = infos[index].id
            let (bytes, mergeInto) = usage.freed(by: id)
            infos[index].usedIsEstimate = usage.collecting
            if let child = mergeInto {
                infos[index].usedBytes = try storage { () throws(FSError) in try snapshotFreed(id, child: child) }
            } else {
                infos[index].usedBytes = bytes
            }
        }
        return infos
    }

    /// `id` as `s` shows it, without USED; nil when it does not exist.
    private static func describe(_ id: UInt64, _ s: PoolState) -> DatasetInfo? {
        guard let record = s.forest.datasets[id], let counters = s.counters[id] else { return nil }
        let parent = record.parent == DatasetRecord.none ? nil : record.parent
        return DatasetInfo(
            id: id, name: s.forest.fullName(id), uuid: DatasetRecord.showUUID(record.uuid), parentID: parent,
            parentUUID: parent.map { _ in DatasetRecord.showUUID(record.parentUUID) },
            parentName: parent.flatMap { s.forest.datasets[$0] == nil ? nil : s.forest.fullName($0) },
            rootInode: record.rootInode, createdAt: record.createdAt, readonly: record.readonly,
            isSnapshot: record.isSnapshot, isDefault: id == s.defaultDataset, generation: record.generation,
            flags: record.flags, counters: counters, writtenBytes: s.forest.versions[record.version]?.written ?? 0,
            usedBytes: nil, usedIsEstimate: false)
    }

    /// USED of a snapshot whose version would merge into `child`: the stored bytes of its
    /// chunks the merge would drop (computed by reading, cached while nothing changes).
    private func snapshotFreed(_ id: UInt64, child: UInt64) throws(FSError) -> UInt64 {
        let (version, key, parentView, childView) = state.withLock { s -> (UInt64, [UInt64], VersionView?, VersionView) in
            let version = s.forest.datasets[id]?.version ?? 0
            let parent = s.forest.versions[version]?.parent ?? 0
            // Any change at the child may change what the merge drops: the key holds the
            // number of batches applied so far, so the cache serves only a quiet pool.
            let key = [version, child, s.forest.generation, syncGate.lastApplied]
            return (version, key, parent == 0 ? nil : s.forest.view(parent), s.forest.view(child))
        }
        if let cached = usedCache.withLock({ $0[id] }), cached.key == key { return cached.bytes }
        let bytes = try mergeDropBytes(version, child: child, childView: childView, parentView: parentView)
        usedCache.withLock { $0[id] = (key, bytes) }
        return bytes
    }

    /// Deletes a dataset. Refused for the root and the default dataset, and, unless
    /// `recursive`, when it has snapshots, clones or nested datasets; recursively its nested
    /// datasets and every snapshot of them go too (clones stay: they are independent).
    /// Returns at once: the collector reclaims the space in the background.
    public func deleteDataset(_ name: String, recursive: Bool = false) throws(DatasetError) {
        while true {
            let targets = try state.withLock { s throws(DatasetError) in try deletionTargets(name, recursive: recursive, s) }
            let deleted = try finish(try exclusively(targets) { () throws(DatasetError) -> (Bool, PendingSync) in
                try change { s, batch throws(DatasetError) -> Bool in
                    // Checked again at the commit: between the look above and the barriers a
                    // call may have made the dataset the default, or added a nested dataset
                    // or a snapshot. Other targets than those the barriers hold: once more.
                    guard Set(try deletionTargets(name, recursive: recursive, s)) == Set(targets) else { return false }
                    let gone = targets + targets.flatMap { s.forest.snapshots(of: $0) }
                    for id in gone { remove(id, &s, &batch) }
                    return true
                }
            })
            if deleted { break }
        }
        worker.wake()
    }

    /// The datasets deleting `name` removes (the dataset, then those nested in it), or why
    /// it is refused.
    private func deletionTargets(_ name: String, recursive: Bool, _ s: PoolState) throws(DatasetError) -> [UInt64] {
        let record = try writableDataset(name, s)
        let subtree = s.forest.subtree(record.id)
        if subtree.contains(FileSystem.rootDataset) { throw DatasetError(.isRoot, "the root dataset cannot be deleted") }
        if subtree.contains(s.defaultDataset) {
            throw DatasetError(.isDefault, "\(s.forest.fullName(s.defaultDataset).debugDescription) is the default dataset")
        }
        if !recursive {
            let snapshots = s.forest.snapshots(of: record.id)
            let clones = snapshots.flatMap { s.forest.clones(of: $0) }
            let dependents = subtree.dropFirst() + snapshots + clones
            if !dependents.isEmpty {
                let shown = dependents.prefix(5).map { s.forest.fullName($0) }.joined(separator: ", ")
                throw DatasetError(.hasDependents, "\(name.debugDescription) has nested datasets, snapshots or clones (\(shown)); delete recursively")
            }
        }
        return subtree
    }

    private func remove(_ id: UInt64, _ s: inout PoolState, _ batch: inout WriteBatch) {
        guard let record = s.forest.datasets[id] else { return }
        batch.delete(FSKeys.dataset(id))
        batch.delete(s.forest.registryKey(record))
        batch.delete(FSKeys.stats(id))
        s.forest.remove(id)
        s.counters[id] = nil
        if !record.isSnapshot { s.changed[record.version] = nil }
    }

    /// Renames a dataset, possibly into another container ("a/b" to "c/b"). Its nested
    /// datasets and snapshots follow (they are named relative to it).
    public func renameDataset(_ name: String, to newName: String) throws(DatasetError) {
        let parts = try Self.datasetParts(newName)
        try finish(try change { s, batch throws(DatasetError) in
            var record = try writableDataset(name, s)
            let container = try container(of: parts, s)
            if s.forest.dataset(named: Array(newName.utf8)) != nil {
                throw DatasetError(.exists, "dataset \(newName.debugDescription) exists")
            }
            let subtree = s.forest.subtree(record.id)
            if subtree.contains(container) { throw DatasetError(.invalidMove, "cannot move \(name.debugDescription) inside itself") }
            batch.delete(s.forest.registryKey(record))
            record.name = parts.last!
            record.container = container
            record.generation += 1
            s.forest.put(record)
            for id in subtree where s.forest.fullNameBytes(id).count > Self.maxNameLength {
                throw DatasetError(.invalidName, "\(s.forest.fullName(id).debugDescription) would exceed \(Self.maxNameLength) bytes")
            }
            Self.putRecords(&batch, s, datasets: [record], versions: [])
        })
    }

    public func setDefault(_ name: String) throws(DatasetError) {
        try finish(try change { s, batch throws(DatasetError) in
            s.defaultDataset = try writableDataset(name, s).id
            Self.putRecords(&batch, s, datasets: [], versions: [])
        })
    }

    public func getDefault() throws(DatasetError) -> DatasetInfo {
        try info(state.withLock { $0.defaultDataset })
    }

    /// Sets the read-only property of a dataset (snapshots are always read-only).
    public func setReadonly(_ name: String, _ readonly: Bool) throws(DatasetError) {
        let id = try state.withLock { s throws(DatasetError) in try writableDataset(name, s).id }
        // Atimes deferred by reads so far are written while the dataset can still take
        // them: once read-only, its notes are dropped (AccessTimes.swift), and an atime a
        // client was shown would go back.
        if readonly { _ = try? handles.withLock({ $0[id] })?.flushAccessTimes() }
        try finish(try exclusively([id]) { () throws(DatasetError) in
            try change { s, batch throws(DatasetError) in
                guard var record = s.forest.datasets[id] else { throw DatasetError(.notFound, "no dataset \(name.debugDescription)") }
                record.readonly = readonly
                record.generation += 1
                s.forest.put(record)
                Self.putRecords(&batch, s, datasets: [record], versions: [])
            }
        })
    }

    // MARK: snapshots

    /// Snapshots `dataset` as `dataset@name`; with `recursive`, every dataset nested in it
    /// too, all at one instant. O(1) per dataset: the head version freezes and a new empty
    /// head takes its place.
    @discardableResult
    public func snapshot(_ dataset: String, _ name: String, recursive: Bool = false) throws(DatasetError) -> [DatasetInfo] {
        let snapName = try Self.snapshotName(name)
        while true {
            if let made = try snapshotOnce(dataset, name, snapName, recursive: recursive) {
                return try made.map { id throws(DatasetError) in try info(id, used: false) }
            }
        }
    }

    /// `snapshot`, or nil when a recursive one found, once it held the barriers, that
    /// datasets were nested in the target or went meanwhile: it is tried again with them.
    private func snapshotOnce(_ dataset: String, _ name: String, _ snapName: [UInt8], recursive: Bool) throws(DatasetError) -> [UInt64]? {
        let targets = try state.withLock { s throws(DatasetError) -> [UInt64] in
            let record = try writableDataset(dataset, s)
            return recursive ? s.forest.subtree(record.id) : [record.id]
        }
        // Atimes deferred by reads so far are in the snapshot (AccessTimes.swift).
        for id in targets { _ = try? handles.withLock({ $0[id] })?.flushAccessTimes() }
        return try finish(try exclusively(targets) { () throws(DatasetError) in
            try change { s, batch throws(DatasetError) -> [UInt64]? in
                // Datasets nested in the target while the barriers were awaited are in the
                // snapshot too: taken again, with their barriers.
                if recursive, s.forest.datasets[targets[0]] != nil, s.forest.subtree(targets[0]) != targets { return nil }
                for id in targets {
                    guard s.forest.datasets[id] != nil else { throw DatasetError(.notFound, "dataset \(id) went meanwhile") }
                    if s.forest.snapshot(of: id, named: snapName) != nil {
                        throw DatasetError(.exists, "snapshot \("\(s.forest.fullName(id))@\(name)".debugDescription) exists")
                    }
                }
                var records: [DatasetRecord] = []
                var versions: [UInt64] = []
                var made: [UInt64] = []
                let now = FileSystem.now()
                for id in targets {
                    var record = s.forest.datasets[id]!
                    let frozen = record.version
                    let (snapshotID, head) = (s.nextDataset, s.nextVersion)
                    s.nextDataset += 1
                    s.nextVersion += 1
                    let snapshot = DatasetRecord(id: snapshotID, name: snapName, parent: id, parentUUID: record.uuid,
                                                 version: frozen, rootInode: record.rootInode, createdAt: now, isSnapshot: true)
                    s.counters[snapshotID] = s.counters[id]
                    s.forest.addVersion(head, VersionNode(parent: frozen, written: 0))
                    record.version = head
                    record.generation += 1
                    s.forest.put(record)
                    s.forest.put(snapshot)
                    s.changed[frozen] = nil
                    s.changed[head] = []
                    records += [record, snapshot]
                    versions.append(head)
                    made.append(snapshotID)
                }
                Self.putRecords(&batch, s, datasets: records, versions: versions)
                return made
            }
        })
    }

    /// Deletes the snapshot "a@s" at once, whatever clones were made from it: their data
    /// stays (its version stays in the forest while they need it).
    public func deleteSnapshot(_ name: String) throws(DatasetError) {
        try finish(try change { s, batch throws(DatasetError) in
            let id = try Self.resolve(name, in: s.forest)
            guard s.forest.datasets[id]?.isSnapshot == true else {
                throw DatasetError(.notSnapshot, "\(name.debugDescription) is not a snapshot")
            }
            remove(id, &s, &batch)
        })
        worker.wake()
    }

    /// Renames the snapshot "a@s" to "a@t".
    public func renameSnapshot(_ name: String, to newName: String) throws(DatasetError) {
        let bytes = try Self.snapshotName(newName)
        try finish(try change { s, batch throws(DatasetError) in
            let id = try Self.resolve(name, in: s.forest)
            guard var record = s.forest.datasets[id], record.isSnapshot else {
                throw DatasetError(.notSnapshot, "\(name.debugDescription) is not a snapshot")
            }
            if s.forest.snapshot(of: record.parent, named: bytes) != nil {
                throw DatasetError(.exists, "snapshot \("\(s.forest.fullName(record.parent))@\(newName)".debugDescription) exists")
            }
            batch.delete(s.forest.registryKey(record))
            record.name = bytes
            record.generation += 1
            s.forest.put(record)
            Self.putRecords(&batch, s, datasets: [record], versions: [])
        })
    }

    /// A new writable dataset `name` showing the snapshot "a@s". O(1).
    @discardableResult
    public func clone(_ snapshot: String, to name: String) throws(DatasetError) -> DatasetInfo {
        let parts = try Self.datasetParts(name)
        let id = try finish(try change { s, batch throws(DatasetError) -> UInt64 in
            let origin = try Self.resolve(snapshot, in: s.forest)
            guard let source = s.forest.datasets[origin], source.isSnapshot else {
                throw DatasetError(.notSnapshot, "\(snapshot.debugDescription) is not a snapshot")
            }
            let container = try container(of: parts, s)
            if s.forest.dataset(named: Array(name.utf8)) != nil { throw DatasetError(.exists, "dataset \(name.debugDescription) exists") }
            let (id, head) = (s.nextDataset, s.nextVersion)
            s.nextDataset += 1
            s.nextVersion += 1
            let record = DatasetRecord(id: id, name: parts.last!, parent: origin, parentUUID: source.uuid, container: container,
                                       version: head, rootInode: source.rootInode, createdAt: FileSystem.now())
            s.forest.addVersion(head, VersionNode(parent: source.version, written: 0))
            s.forest.put(record)
            s.counters[id] = s.counters[origin]
            s.changed[head] = []
            Self.putRecords(&batch, s, datasets: [record], versions: [head])
            return id
        })
        return try info(id, used: false)
    }

    /// Rolls `dataset` back to its snapshot `snapshot` (a name without "@"): its head
    /// becomes a new version on top of the snapshot. Every snapshot, older or newer, stays.
    public func rollback(_ dataset: String, to snapshot: String) throws(DatasetError) {
        let snapName = try Self.snapshotName(snapshot, new: false)
        let (id, origin) = try state.withLock { s throws(DatasetError) -> (UInt64, UInt64) in
            let record = try writableDataset(dataset, s)
            guard let origin = s.forest.snapshot(of: record.id, named: snapName) else {
                if s.forest.datasets.values.contains(where: { $0.isSnapshot && $0.name == snapName }) {
                    throw DatasetError(.wrongDataset, "\(snapshot.debugDescription) is not a snapshot of \(dataset.debugDescription)")
                }
                throw DatasetError(.notFound, "no snapshot \("\(dataset)@\(snapshot)".debugDescription)")
            }
            return (record.id, origin)
        }
        try finish(try exclusively([id]) { () throws(DatasetError) in
            // Atimes deferred at the head being discarded go with it (AccessTimes.swift).
            handles.withLock { $0[id] }?.dropDeferredAccessTimes()
            return try change { s, batch throws(DatasetError) in
                guard var record = s.forest.datasets[id], let source = s.forest.datasets[origin] else {
                    throw DatasetError(.notFound, "the dataset or snapshot went meanwhile")
                }
                let head = s.nextVersion
                s.nextVersion += 1
                s.forest.addVersion(head, VersionNode(parent: source.version, written: 0))
                s.changed[record.version] = nil
                s.changed[head] = []
                record.version = head
                record.generation += 1
                s.forest.put(record)
                s.counters[id] = s.counters[origin]
                Self.putRecords(&batch, s, datasets: [record], versions: [head])
            }
        })
        worker.wake()
    }
}
