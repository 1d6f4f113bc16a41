// Absorbing: the collector's other way to merge a dead version with one child
// (Docs/datasets.md, "Collecting"). Merging down moves every entry of the dead version
// into the child; when the dead version is an old snapshot holding a whole dataset and
// the child holds the little that changed after it, that copies the dataset. Absorbing
// goes the other way: the child's entries move up into the dead version, which then
// takes the child's place (its records, its children), and the child's id goes. The work
// is the child's changes, not the dead version's data.
//
// Only a frozen child is absorbed (a snapshot's version, or a dead one): a writable
// dataset's head keeps its id, because writes and handles name it. As when merging down,
// every batch keeps what each live version shows, so a crash at any point leaves a
// consistent store, and a later run may finish by either way.

import Engine

extension Pool {
    /// Whether merging `version` with its only child `child` is cheaper by absorbing: the
    /// child is frozen, and fewer inodes move up (the child's changes) than would move
    /// down (the dead version's changes the child did not shadow by its own).
    func absorbs(_ version: UInt64, child: UInt64) throws(FSError) -> Bool {
        let isHead = state.withLock { s in s.forest.datasets.values.contains { !$0.isSnapshot && $0.version == child } }
        if isHead { return false }
        var childChanged: Set<UInt64> = []
        try forEachChangedInode(child) { ino in childChanged.insert(ino) }
        var unshadowed = 0
        try forEachChangedInode(version) { ino in if !childChanged.contains(ino) { unshadowed += 1 } }
        return childChanged.count < unshadowed
    }

    /// Moves the entries of the frozen `child` up into the dead `version`, then gives
    /// `version` the child's place in the forest and removes the child.
    func absorb(_ child: UInt64, into version: UInt64, parentView: VersionView?) throws(FSError) {
        let limit = options.reclaimBatchSize
        let childView = state.withLock { s in s.forest.view(child) }
        try forEachChangedInode(child) { ino throws(FSError) in
            let inode = try visibleInode(ino, childView)
            // First the dead version's chunks of the inode that the child can no longer
            // show (inode gone there, or hidden by its shrink marks): nothing sees them.
            if let inode {
                var resume: [UInt8]?
                while true {
                    let page = try entries(ino, version, after: resume, limit: limit)
                    var batch = FSBatch(view: VersionView(head: version), background: true)
                    let hidden = page.entries.filter { hiddenChunk(Array($0.key.dropLast(FSKeys.versionSuffixSize)), $0.value, by: inode) }
                    for entry in hidden {
                        batch.deleteUnversioned(entry.key)
                        batch.addWritten(version, -entry.value.count)
                    }
                    if !hidden.isEmpty {
                        _ = try commit(&batch, op: "collect", durable: false)
                        pacer.step()
                    }
                    if page.done { break }
                    resume = page.entries.last?.key
                }
            }
            // Then the child's entries move up, each replacing the dead version's entry
            // of the same key (which the child shadowed). The inode record goes last,
            // with its content version lowered: until then it names the child, and a read
            // looks for the content from there, wherever it is by then.
            func moveUp(_ entry: KVEntry, _ batch: inout FSBatch) throws(FSError) {
                let logical = Array(entry.key.dropLast(FSKeys.versionSuffixSize))
                let target = FSKeys.versioned(logical, version)
                let isChunk = logical.first == KeyKind.chunk.rawValue
                batch.deleteUnversioned(entry.key)
                if isChunk { batch.addWritten(child, -entry.value.count) }
                let replaced = try kv { try store.get(target) }
                if let replaced, replaced.first != ValueTag.whiteout.rawValue, isChunk {
                    batch.addWritten(version, -replaced.count)
                }
                let hidden = inode.map { hiddenChunk(logical, entry.value, by: $0) } ?? false
                // A whiteout that shadows nothing above the dead version shadowed only the
                // dead version's entry: both go.
                let shadowsNothing = entry.value.first == ValueTag.whiteout.rawValue ? try !shows(logical, parentView) : false
                if hidden || shadowsNothing {
                    if replaced != nil { batch.deleteUnversioned(target) }
                    return
                }
                // An inode record's content version names the child at most: lowered to the
                // dead version, where the content it names now is.
                batch.putUnversioned(target, withContentVersion(entry.value, ino: ino, logical: logical) { $0 > version ? version : nil })
                if isChunk { batch.addWritten(version, entry.value.count) }
            }
            var record: KVEntry?
            var resume: [UInt8]?
            while true {
                let page = try entries(ino, child, after: resume, limit: limit)
                var batch = FSBatch(view: VersionView(head: version), background: true)
                for entry in page.entries {
                    if entry.key.first == KeyKind.inode.rawValue, entry.key.count == 17 {
                        record = entry
                        continue
                    }
                    try moveUp(entry, &batch)
                }
                if page.done {
                    if let record { try moveUp(record, &batch) }
                    batch.putUnversioned(FSKeys.changeIndex(version, ino), [])
                    batch.deleteUnversioned(FSKeys.changeIndex(child, ino))
                    try moveReclaimRecord(ino, from: child, to: version, inode: inode, rootMarks: parentView == nil, &batch)
                }
                _ = try commit(&batch, op: "collect", durable: false)
                pacer.step()
                if page.done { break }
                resume = page.entries.last?.key
            }
        }
        try finishAbsorbing(child, into: version)
    }

    /// With the inode's last batch: the reclaim records of (ino, child) and (ino, version)
    /// become the one the inode now at `version` needs. The child's work moves up with its
    /// entries; a shrink record of the dead version whose marks the child's inode replaced
    /// goes; marks moving into a root (`rootMarks`) hide nothing above any more, so the
    /// reclaimer may drop what they hide.
    private func moveReclaimRecord(
        _ ino: UInt64, from child: UInt64, to version: UInt64, inode: Inode??, rootMarks: Bool, _ batch: inout FSBatch
    ) throws(FSError) {
        let records = try kv { [try store.get(FSKeys.reclaim(ino, child)), try store.get(FSKeys.reclaim(ino, version))] }
        let kinds = records.compactMap { $0?.count == 1 ? ReclaimKind(rawValue: $0![0]) : nil }
        let marks = inode.map { $0.map { !$0.shrinkMarks.isEmpty } ?? false } ?? true
        let needed: ReclaimKind?
        if kinds.contains(.deleteFile) {
            needed = .deleteFile
        } else if marks, kinds.contains(.shrink) || rootMarks {
            needed = .shrink
        } else {
            needed = nil
        }
        if records[0] != nil { batch.deleteUnversioned(FSKeys.reclaim(ino, child)) }
        if let needed {
            batch.putUnversioned(FSKeys.reclaim(ino, version), [needed.rawValue])
        } else if records[1] != nil {
            batch.deleteUnversioned(FSKeys.reclaim(ino, version))
        }
    }

    /// The last step, one batch: the records that referenced the child reference
    /// `version`, the child's children become its children, the child's node goes.
    private func finishAbsorbing(_ child: UInt64, into version: UInt64) throws(FSError) {
        try crashPoints.pass("collect-finish.before-commit")
        try state.withLock { s throws(FSError) in
            guard s.forest.versions[child] != nil, s.forest.versions[version] != nil else { return }
            var batch = WriteBatch()
            var moved: [DatasetRecord] = []
            for var record in s.forest.datasets.values where record.version == child {
                record.version = version
                moved.append(record)
                batch.put(FSKeys.dataset(record.id), record.encode())
            }
            for grandchild in s.forest.children[child] ?? [] {
                if var node = s.forest.versions[grandchild] {
                    node.parent = version
                    batch.put(FSKeys.versionNode(grandchild), node.encode())
                }
            }
            batch.delete(FSKeys.versionNode(child))
            _ = try applyLocked(batch)
            for record in moved { s.forest.put(record) }
            s.forest.removeVersion(child)
            s.changed[child] = nil
            // Live again, with readers to come: drained again if it dies again.
            drainedDead.withLock { _ = $0.remove(version) }
        }
        refreshHandles()
    }
}
