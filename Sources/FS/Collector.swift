// The collector: reclaims the entries of dead versions (Docs/datasets.md, "Collecting").
// A version is dead once no dataset or snapshot references it. A dead leaf loses all its
// entries. A dead version with one child merges with it: when the child is frozen and
// holds fewer changes, the child's entries move up (Collector+Absorb.swift); otherwise
// each entry moves down to the child unless the child shadows it (its own entry for the
// key), or it is a chunk the child can no longer show (inode gone, or hidden by a shrink
// mark), or it is a whiteout that shadows nothing; those are dropped. A dead version with several children (a
// deleted snapshot with clones) stays as an internal node.
//
// The work is found through the change index (0x0B) of the dead version only, goes in
// bounded batches, each under the lock of the inode whose keys it moves (the child may be
// a live head), and removes a change record with the last batch of its inode, so after a
// crash the collector resumes where it stopped. The version node goes last, with the
// forest change, in one batch. No batch changes what any live version shows.

import Engine

extension Pool {
    /// Collects every dead version that can be collected now; returns how many went.
    @discardableResult
    public func collectNow() throws(FSError) -> Int {
        try worker.runLock.withLock { () throws(FSError) -> Int in
            try crashPoints.checkRunning()
            if store.isReadOnly { return 0 }
            var count = 0
            while let (version, child, parentView) = state.withLock({ s -> (UInt64, UInt64?, VersionView?)? in
                guard let version = s.forest.collectable().first, let node = s.forest.versions[version] else { return nil }
                return (version, s.forest.children[version]?.first, node.parent == 0 ? nil : s.forest.view(node.parent))
            }) {
                // Reads drained first when the version died after they last were: readers
                // of its view may still be going (ReadGate).
                if !drained([version]) {
                    quiesceReads()
                    continue
                }
                if let child, try absorbs(version, child: child) {
                    try absorb(child, into: version, parentView: parentView)
                } else if let child {
                    try merge(version, into: child, parentView: parentView)
                } else {
                    try drop(version)
                }
                count += 1
                collected.withLock { $0.count += 1 }
            }
            try pruneInternalVersions()
            if count > 0 { collected.withLock { $0.lastFinishedAtNanos = FileOps.nowNanos() } }
            return count
        }
    }

    /// Runs the reclaim queue and the collector until neither has work left.
    public func collectGarbage() throws(FSError) {
        // A background run in progress stops resting: someone waits for it.
        pacer.setActive(false)
        repeat {
            try reclaimNow()
        } while try collectNow() > 0
    }

    /// The collector's work: versions waiting, the chunk bytes they hold (WRITTEN summed),
    /// and what it has done since the pool opened.
    public var collectorStatus: CollectorStatus {
        let (versions, bytes) = state.withLock { s -> (Int, UInt64) in
            let dead = s.forest.collectable()
            return (dead.count, dead.reduce(UInt64(0)) { $0 &+ (s.forest.versions[$1]?.written ?? 0) })
        }
        let (done, finished) = collected.withLock { ($0.count, $0.lastFinishedAtNanos) }
        return CollectorStatus(pendingVersions: versions, pendingBytes: bytes, collectedVersions: done, lastFinishedAtNanos: finished)
    }

    /// Whether dead versions wait for the collector (USED is an estimate meanwhile).
    public var isCollecting: Bool { state.withLock { !$0.forest.collectable().isEmpty } }

    // MARK: dropping a dead leaf

    private func drop(_ version: UInt64) throws(FSError) {
        let limit = options.reclaimBatchSize
        try forEachChangedInode(version) { ino throws(FSError) in
            var resume: [UInt8]?
            while true {
                let page = try entries(ino, version, after: resume, limit: limit)
                let entries = page.entries
                var batch = FSBatch(view: VersionView(head: version), background: true)
                for entry in entries {
                    batch.deleteUnversioned(entry.key)
                    if entry.key.first == KeyKind.chunk.rawValue { batch.addWritten(version, -entry.value.count) }
                }
                let last = page.done
                if last { batch.deleteUnversioned(FSKeys.changeIndex(version, ino)) }
                _ = try commit(&batch, op: "collect", durable: false)
                pacer.step()
                if last { break }
                resume = entries.last?.key
            }
        }
        try removeVersionNode(version)
    }

    // MARK: pruning a dead version with several children

    /// Drops, from each dead version with several children, the entries no live version
    /// below it can see (every child shadows them, or their inode is gone there). All of
    /// them after the forest changed shape; after that, only the inodes that batches below
    /// it touched since (`PoolState.branchPoints`): a write at a head shadows the entry
    /// the version held for its key, which may have been the last view to see it.
    private func pruneInternalVersions() throws(FSError) {
        // Reads drained first when a version died after they last were: a snapshot just
        // deleted may be one of the dead versions, and its readers see what is pruned.
        var taken: (generation: UInt64, work: [(UInt64, [VersionView])], due: [UInt64: Set<UInt64>])?
        while taken == nil {
            taken = state.withLock { s -> (UInt64, [(UInt64, [VersionView])], [UInt64: Set<UInt64>])? in
                let live = s.forest.referenced
                let dead = s.forest.versions.keys.filter { !live.contains($0) && (s.forest.children[$0]?.count ?? 0) >= 2 }
                if !drained(dead) { return nil }
                let views = live.map { s.forest.view($0) }
                // Taken before the entries are read: a batch after this is noted again.
                let due = s.branchPoints.filter { !$0.value.isEmpty }
                for version in due.keys { s.branchPoints[version] = [] }
                return (s.forest.generation, dead.sorted().map { v in (v, views.filter { $0.ancestors.contains(v) }) }, due)
            }
            if taken == nil { quiesceReads() }
        }
        guard let (generation, work, due) = taken else { return }
        do {
            if prunedGeneration.withLock({ $0 }) != generation {
                for (version, views) in work { try forEachChangedInode(version) { ino throws(FSError) in try prune(ino, of: version, seenBy: views) } }
                prunedGeneration.withLock { $0 = generation }
            } else {
                for (version, views) in work {
                    for ino in (due[version] ?? []).sorted() {
                        // Only an inode the version changed has entries there.
                        guard try kv({ try store.get(FSKeys.changeIndex(version, ino)) }) != nil else { continue }
                        try prune(ino, of: version, seenBy: views)
                    }
                }
            }
        } catch {
            // Left for the next pass.
            state.withLock { s in for (version, inodes) in due where s.branchPoints[version] != nil { s.branchPoints[version]!.formUnion(inodes) } }
            throw error
        }
    }

    private func prune(_ ino: UInt64, of version: UInt64, seenBy views: [VersionView]) throws(FSError) {
        let limit = options.reclaimBatchSize
        let inodes = try views.map { view throws(FSError) in try visibleInode(ino, view) }
        var resume: [UInt8]?
        var kept = false
        while true {
            let page = try entries(ino, version, after: resume, limit: limit)
            let entries = page.entries
            var batch = FSBatch(view: VersionView(head: version), background: true)
            for entry in entries {
                let logical = Array(entry.key.dropLast(FSKeys.versionSuffixSize))
                if try seen(logical, entry.value, at: version, by: views, inodes) {
                    kept = true
                    continue
                }
                batch.deleteUnversioned(entry.key)
                if logical.first == KeyKind.chunk.rawValue { batch.addWritten(version, -entry.value.count) }
            }
            let last = page.done
            if last, !kept { batch.deleteUnversioned(FSKeys.changeIndex(version, ino)) }
            _ = try commit(&batch, op: "collect", durable: false)
            pacer.step()
            if last { break }
            resume = entries.last?.key
        }
    }

    /// Whether some view answers `logical` with the entry at `version` (for a chunk: and
    /// its inode there, `inodes[i]` for `views[i]`, still shows it).
    private func seen(
        _ logical: [UInt8], _ value: [UInt8], at version: UInt64, by views: [VersionView], _ inodes: [Inode??]
    ) throws(FSError) -> Bool {
        for (view, inode) in zip(views, inodes) {
            guard try VersionedStore(store: store, view: view).lookup(logical)?.version == version else { continue }
            // An inode that cannot be decoded (nil) hides nothing.
            guard let inode, hiddenChunk(logical, value, by: inode) else { return true }
        }
        return false
    }

    // MARK: merging a dead version into its only child

    private enum MergeStep {
        /// Move the entry to the child.
        case move
        /// Drop the entry.
        case drop
        /// Drop the entry and the child's whiteout that shadowed it (nothing above needs it).
        case dropBoth
    }

    private func merge(_ version: UInt64, into child: UInt64, parentView: VersionView?) throws(FSError) {
        let limit = options.reclaimBatchSize
        let childView = state.withLock { $0.forest.view(child) }
        // The child's whiteouts to look at when it becomes a root: its own changes. Moved
        // entries bring none (a whiteout moving into a root shadows nothing and is
        // dropped). After a crash this list also holds what the first run moved: more
        // work, the same outcome.
        var own: [UInt64] = []
        if parentView == nil {
            // Changes at the child from here on are noted for `finishRootMerge`.
            state.withLock { $0.rootMerges[child] = [] }
            var after: UInt64?
            while true {
                let page = try changedInodes(child, after: after, limit: 4096)
                own += page
                guard let last = page.last, page.count == 4096 else { break }
                after = last
            }
        }
        try forEachChangedInode(version) { ino throws(FSError) in
            var resume: [UInt8]?
            var moved = false
            while true {
                // Each batch decides and commits under the inode's lock: a writer at the
                // child (a live head) cannot slip in between.
                let last = try locks.withLocks([ino]) { () throws(FSError) -> Bool in
                    let inode = try visibleInode(ino, childView)
                    var batch = FSBatch(view: VersionView(head: child), background: true)
                    // Content moving down to the child must stay below the content
                    // version of every inode record that can see it (before it moves).
                    // The versions below the child are read here, under the inode's lock:
                    // a snapshot during the merge puts a new head below the child, and a
                    // change there copies this inode's record, content version and all.
                    // Records made after this batch copy a raised one.
                    if resume == nil {
                        let below = state.withLock { $0.forest.descendants(child) }
                        try raiseContentVersions(ino, to: child, in: below, &batch)
                    }
                    let page = try entries(ino, version, after: resume, limit: limit)
                    let entries = page.entries
                    for entry in entries {
                        let logical = Array(entry.key.dropLast(FSKeys.versionSuffixSize))
                        let childKey = FSKeys.versioned(logical, child)
                        let isChunk = logical.first == KeyKind.chunk.rawValue
                        batch.deleteUnversioned(entry.key)
                        if isChunk { batch.addWritten(version, -entry.value.count) }
                        switch try mergeStep(logical, entry.value, childKey: childKey, inode: inode, parentView: parentView) {
                        case .move:
                            batch.putUnversioned(childKey, raised(entry.value, ino: ino, logical: logical, to: child))
                            // Marks moving into a root hide nothing above any more.
                            if parentView == nil, logical.first == KeyKind.inode.rawValue, hasShrinkMarks(entry.value, ino) {
                                batch.putUnversioned(FSKeys.reclaim(ino, child), [ReclaimKind.shrink.rawValue])
                            }
                            if isChunk { batch.addWritten(child, entry.value.count) }
                            moved = true
                        case .dropBoth:
                            batch.deleteUnversioned(childKey)
                        case .drop:
                            break
                        }
                    }
                    let last = page.done
                    // Every batch that moves names the inode in the child's change index
                    // (a crash may end the run between two batches).
                    if moved { batch.putUnversioned(FSKeys.changeIndex(child, ino), []) }
                    if last { batch.deleteUnversioned(FSKeys.changeIndex(version, ino)) }
                    // Lookups that read a hint before this commit and search after it look
                    // again (the commit and the cache slots it clears are done by the end).
                    mergeBatches.add(1, ordering: .sequentiallyConsistent)
                    defer { mergeBatches.add(1, ordering: .sequentiallyConsistent) }
                    _ = try commit(&batch, op: "collect", durable: false)
                    resume = entries.last?.key
                    return last
                }
                // Paced with the inode's lock released.
                pacer.step()
                if last { break }
            }
        }
        // With no parent the child starts a tree of its own: none of its whiteouts shadows
        // anything. Done before the node goes, so a crash in between repeats it on resume.
        if parentView == nil {
            try dropWhiteouts(child, of: own, paced: true)
            try finishRootMerge(version, into: child)
        } else {
            try removeVersionNode(version)
        }
    }

    /// Drops the whiteouts (and queues the shrink marks) that changes at `child` wrote while
    /// the dead root `version` merged into it, then removes `version`: until then a change
    /// there writes whiteouts. Taken until none are left, then once more, and the node
    /// removed, with the datasets whose head `child` is held still (their barriers), so
    /// that no change lands between the last look and the removal.
    private func finishRootMerge(_ version: UInt64, into child: UInt64) throws(FSError) {
        func take() -> [UInt64] {
            state.withLock { s in
                defer { s.rootMerges[child] = [] }
                return (s.rootMerges[child] ?? []).sorted()
            }
        }
        defer { state.withLock { $0.rootMerges[child] = nil } }
        var touched = take()
        while !touched.isEmpty {
            try dropWhiteouts(child, of: touched, paced: true)
            touched = take()
        }
        let heads = state.withLock { s in s.forest.datasets.values.filter { !$0.isSnapshot && $0.version == child }.map(\.id).sorted() }
        var held: [FileSystem] = []
        for id in heads {
            if let handle = try? filesystem(id) { held.append(handle) }
        }
        for handle in held { handle.barrier.lockExclusive() }
        defer { for handle in held.reversed() { handle.barrier.unlockExclusive() } }
        try dropWhiteouts(child, of: take(), paced: false)
        try removeVersionNode(version)
    }

    /// Raises to `child` the content version of every inode record of `ino` at `child` or
    /// below it (`below`) that names an older one (0, unknown, stays).
    private func raiseContentVersions(_ ino: UInt64, to child: UInt64, in below: Set<UInt64>, _ batch: inout FSBatch) throws(FSError) {
        var records: [KVEntry] = []
        try kv {
            try store.scan(.prefix(FSKeys.inode(ino))) { key, value in
                guard key.count == 17, below.contains(UInt64.max - key.readBigEndian(at: 9)) else { return true }
                records.append(KVEntry(key: Array(key), value: Array(value)))
                return true
            }
        }
        for record in records {
            let value = raised(record.value, ino: ino, logical: FSKeys.inode(ino), to: child)
            if value != record.value { batch.putUnversioned(record.key, value) }
        }
    }

    /// An inode value with its content version raised to at least `child`; other values,
    /// and inodes that cannot be decoded or have no content version, unchanged.
    private func raised(_ value: [UInt8], ino: UInt64, logical: [UInt8], to child: UInt64) -> [UInt8] {
        withContentVersion(value, ino: ino, logical: logical) { $0 != 0 && $0 < child ? child : nil }
    }

    /// `value` with its content version replaced by what `change` returns for it, when
    /// it is a live inode record that decodes and `change` returns a version; else
    /// unchanged.
    func withContentVersion(_ value: [UInt8], ino: UInt64, logical: [UInt8], _ change: (UInt64) -> UInt64?) -> [UInt8] {
        guard logical.first == KeyKind.inode.rawValue, value.first == ValueTag.live.rawValue,
              var inode = try? withBytes(value, { raw throws(FSError) in try Inode.decode(ino: ino, raw) }),
              let version = change(inode.contentVersion)
        else { return value }
        inode.contentVersion = version
        return inode.encode()
    }

    /// Whether `logical` (with `value`) is a chunk that `inode`, as some version shows
    /// it (nil: gone there, and inode numbers are never reused), can never show.
    func hiddenChunk(_ logical: [UInt8], _ value: [UInt8], by inode: Inode?) -> Bool {
        guard logical.first == KeyKind.chunk.rawValue, logical.count == 17 else { return false }
        guard let inode else { return true }
        let index = logical.withUnsafeBytes { $0.readBigEndian(at: 9) }
        let epoch = value.count >= 10 ? value.withUnsafeBytes { $0.readBigEndian(at: 2) } : 0
        return inode.hides(chunkIndex: index, epoch: epoch, chunkSize: chunkSize)
    }

    /// What merging does with the entry `logical` at the dead version.
    private func mergeStep(
        _ logical: [UInt8], _ value: [UInt8], childKey: [UInt8], inode: Inode??, parentView: VersionView?
    ) throws(FSError) -> MergeStep {
        if let existing = try kv({ try store.get(childKey) }) {
            if existing.first == ValueTag.whiteout.rawValue, try !shows(logical, parentView) { return .dropBoth }
            return .drop
        }
        // A chunk of an inode gone at the child, or that its shrink marks hide, stays
        // hidden below.
        if let inode, hiddenChunk(logical, value, by: inode) { return .drop }
        if value.first == ValueTag.whiteout.rawValue, try !shows(logical, parentView) { return .drop }
        return .move
    }

    /// The stored bytes of the chunks that merging `version` into `child` would drop: a
    /// dry run of the merge, for USED.
    func mergeDropBytes(_ version: UInt64, child: UInt64, childView: VersionView, parentView: VersionView?) throws(FSError) -> UInt64 {
        let limit = options.reclaimBatchSize
        var bytes: UInt64 = 0
        try forEachChangedInode(version) { ino throws(FSError) in
            let inode = try visibleInode(ino, childView)
            var resume: [UInt8]?
            while true {
                let page = try entries(ino, version, after: resume, limit: limit)
                let entries = page.entries
                for entry in entries where entry.key.first == KeyKind.chunk.rawValue {
                    let logical = Array(entry.key.dropLast(FSKeys.versionSuffixSize))
                    let step = try mergeStep(logical, entry.value, childKey: FSKeys.versioned(logical, child),
                                             inode: inode, parentView: parentView)
                    if step != .move { bytes &+= UInt64(entry.value.count) }
                }
                if page.done { break }
                resume = entries.last?.key
            }
        }
        return bytes
    }

    /// Whether a version above the dead one shows a live value for `logical`.
    func shows(_ logical: [UInt8], _ parentView: VersionView?) throws(FSError) -> Bool {
        guard let parentView else { return false }
        return try VersionedStore(store: store, view: parentView).get(logical) != nil
    }

    /// The inode as `view` shows it: .some(nil) when absent, nil when it cannot be decoded
    /// (then nothing is dropped on its account).
    func visibleInode(_ ino: UInt64, _ view: VersionView) throws(FSError) -> Inode?? {
        guard let value = try VersionedStore(store: store, view: view).get(FSKeys.inode(ino)) else { return .some(nil) }
        return try? withBytes(value) { raw throws(FSError) in try Inode.decode(ino: ino, raw) }
    }

    /// Deletes every whiteout that `inodes` have at `version`, which has no ancestors left,
    /// and queues a shrink record for each of them there with shrink marks: nothing above
    /// can hold what they hide any more, so the reclaimer may now drop them. `paced`: rest
    /// between batches (not while the caller holds barriers).
    private func dropWhiteouts(_ version: UInt64, of inodes: [UInt64], paced: Bool) throws(FSError) {
        let limit = options.reclaimBatchSize
        for ino in inodes {
            var resume: [UInt8]?
            while true {
                let last = try locks.withLocks([ino]) { () throws(FSError) -> Bool in
                    let page = try entries(ino, version, after: resume, limit: limit)
                    var batch = FSBatch(view: VersionView(head: version), background: true)
                    for entry in page.entries {
                        if entry.value.first == ValueTag.whiteout.rawValue {
                            batch.deleteUnversioned(entry.key)
                        } else if entry.key.first == KeyKind.inode.rawValue, hasShrinkMarks(entry.value, ino) {
                            batch.putUnversioned(FSKeys.reclaim(ino, version), [ReclaimKind.shrink.rawValue])
                        }
                    }
                    _ = try commit(&batch, op: "collect", durable: false)
                    resume = page.entries.last?.key
                    return page.done
                }
                if paced { pacer.step() }
                if last { break }
            }
        }
    }

    func hasShrinkMarks(_ value: [UInt8], _ ino: UInt64) -> Bool {
        guard value.first == ValueTag.live.rawValue,
              let inode = try? withBytes(value, { raw throws(FSError) in try Inode.decode(ino: ino, raw) })
        else { return false }
        return !inode.shrinkMarks.isEmpty
    }

    /// Deletes the node of a collected version and takes it out of the forest, in one batch.
    private func removeVersionNode(_ version: UInt64) throws(FSError) {
        try crashPoints.pass("collect-finish.before-commit")
        try state.withLock { s throws(FSError) in
            guard let node = s.forest.versions[version] else { return }
            var batch = WriteBatch()
            batch.delete(FSKeys.versionNode(version))
            for child in s.forest.children[version] ?? [] {
                if var moved = s.forest.versions[child] {
                    moved.parent = node.parent
                    batch.put(FSKeys.versionNode(child), moved.encode())
                }
            }
            _ = try applyLocked(batch)
            s.forest.removeVersion(version)
            s.changed[version] = nil
        }
        refreshHandles()
    }

    // MARK: finding the work

    /// Calls `body` with each inode in the change index of `version`, in order, reading
    /// the index a page at a time and going on after the last inode seen (the body may
    /// delete its change record).
    func forEachChangedInode(_ version: UInt64, _ body: (UInt64) throws(FSError) -> Void) throws(FSError) {
        var after: UInt64?
        while true {
            let inodes = try changedInodes(version, after: after, limit: 64)
            if inodes.isEmpty { return }
            for ino in inodes { try body(ino) }
            after = inodes.last
        }
    }

    /// Up to `limit` inodes in the change index of `version`, after `after`.
    func changedInodes(_ version: UInt64, after: UInt64? = nil, limit: Int) throws(FSError) -> [UInt64] {
        let prefix = FSKeys.changeIndexPrefix(version)
        var start = prefix
        if let after {
            guard after < UInt64.max else { return [] }
            start = FSKeys.changeIndex(version, after + 1)
        }
        var found: [UInt64] = []
        try kv {
            try store.scan(KeyRange(start: start, end: Bytes.prefixSuccessor(prefix))) { key, _ in
                if key.count == 17 { found.append(key.readBigEndian(at: 9)) }
                return found.count < limit
            }
        }
        return found
    }

    /// A page of the versioned entries of one inode at one version; `done` when no more follow.
    struct EntryPage {
        var entries: [KVEntry] = []
        var done = true
    }

    /// Up to `limit` versioned entries (and about `collectBatchBytes` of values) of inode
    /// `ino` at exactly `version`, in key order, after the key `after`.
    func entries(_ ino: UInt64, _ version: UInt64, after: [UInt8]?, limit: Int) throws(FSError) -> EntryPage {
        var page = EntryPage()
        var bytes = 0
        for var range in FSKeys.inodeRanges(ino) {
            if let after {
                if let end = range.end, Bytes.compare(after, end) >= 0 { continue }
                if Bytes.compare(after, range.start) >= 0 { range.start = after + [0] }
            }
            try kv {
                try store.scan(range) { key, value in
                    guard key.count >= 17, UInt64.max - key.readBigEndian(at: key.count - 8) == version else { return true }
                    if page.entries.count >= limit || bytes >= Self.collectBatchBytes {
                        page.done = false
                        return false
                    }
                    page.entries.append(KVEntry(key: Array(key), value: Array(value)))
                    bytes += key.count + value.count
                    return true
                }
            }
            if !page.done { break }
        }
        return page
    }

    /// Value bytes one collector batch moves at most: the commit lock is held while the
    /// batch is applied, so a batch must stay short for the clients waiting on it.
    static let collectBatchBytes = 256 << 10
}

public struct CollectorStatus: Sendable, Equatable {
    /// Dead versions the collector can reclaim now.
    public var pendingVersions: Int
    /// Chunk bytes those versions hold.
    public var pendingBytes: UInt64
    /// Versions collected since the pool opened.
    public var collectedVersions: UInt64
    /// When the collector last finished a run that collected something (0: never).
    public var lastFinishedAtNanos: UInt64
}

/// What the collector did since the pool opened.
struct CollectedCount {
    var count: UInt64 = 0
    var lastFinishedAtNanos: UInt64 = 0
}
