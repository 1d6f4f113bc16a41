// Operations that remove a name: unlink and rmdir. The last link of a file removes its
// inode in the same batch. A small file's chunks go in that batch too; a larger file's
// are queued in the reclaim queue (0x07), so deleting a file of any size returns at once,
// and the reclaimer deletes them in the background.

extension FileSystem {
    public func unlink(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8]) throws(FSError) {
        if Self.isDotOrDotDot(name) { throw FSError(.EINVAL, "cannot unlink \(Self.show(name))") }
        let pending: PendingSync
        do throws(FSError) {
            pending = try removeName(cred, dir, name, op: "unlink") { child throws(FSError) in
                guard child.type != .directory else { throw FSError(.EISDIR, "\(Self.show(name)) is a directory") }
            } parent: { _ throws(FSError) in }
        } catch {
            try answerAfterApplied(error)
        }
        try awaitDurable(pending)
    }

    public func rmdir(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8]) throws(FSError) {
        if name == [0x2E] { throw FSError(.EINVAL, "cannot remove \".\"") }
        if name == [0x2E, 0x2E] { throw FSError(.ENOTEMPTY, "cannot remove \"..\"") }
        let pending: PendingSync
        do throws(FSError) {
            pending = try removeName(cred, dir, name, op: "rmdir") { child throws(FSError) in
                guard child.type == .directory else { throw FSError(.ENOTDIR, "\(Self.show(name)) is not a directory") }
                guard child.entryCount == 0 else { throw FSError(.ENOTEMPTY, "\(Self.show(name)) is not empty") }
            } parent: { parent throws(FSError) in
                parent.nlink = try Self.decremented(parent.nlink, "link count of directory \(dir)")
            }
        } catch {
            try answerAfterApplied(error)
        }
        try awaitDurable(pending)
    }

    /// The shared body of unlink and rmdir: under the entry's locks, checks search
    /// permission, existence, write permission, `check` (the operation's own rules) and
    /// the sticky bit, in that order, then removes the name, lets `parent` adjust the
    /// directory, and drops the link.
    private func removeName(
        _ cred: Credentials, _ dir: UInt64, _ name: [UInt8], op: String,
        check: (Inode) throws(FSError) -> Void, parent adjust: (inout Inode) throws(FSError) -> Void
    ) throws(FSError) -> PendingSync {
        try validateName(name)
        try checkWritable()
        return try withEntryLocked(dir, name) { found throws(FSError) -> PendingSync in
            var parent = try directory(dir)
            // Finding the name needs search permission only: a missing one is ENOENT
            // before the check of write permission (as on Linux).
            try parent.require(cred, .execute)
            guard let found else { throw FSError(.ENOENT, "no entry named \(Self.show(name))") }
            try parent.require(cred, .write)
            var child = try inode(found.ino)
            try check(child)
            guard parent.allowsRemoval(of: child, by: cred) else { throw FSError(.EPERM, "sticky directory") }
            let now = Self.now()
            var batch = FSBatch(view: view)
            try removeEntry(&batch, parent: &parent, found, now: now)
            try adjust(&parent)
            batch.putInode(parent)
            try unlinkInode(&batch, &child, now: now)
            return try commit(&batch, op: op, durable: options.durableMetadata)
        }
    }

    /// Files of at most this many chunks lose them in the batch that removes the inode.
    static let inlineReclaimChunks = 4

    /// Drops one link of `child`; at the last one removes the inode and its chunks: in the
    /// same batch when it has at most `inlineReclaimChunks` of them at this version and no
    /// shrink marks (most files: one commit, no background work), otherwise through a
    /// reclaim record.
    func unlinkInode(_ batch: inout FSBatch, _ child: inout Inode, now: Timestamp) throws(FSError) {
        let lastLink = child.type == .directory || child.nlink <= 1
        if !lastLink {
            child.nlink -= 1
            child.ctime = now
            batch.putInode(child)
            return
        }
        batch.removeInode(child.ino)
        batch.inodeDelta -= 1
        if child.type == .regular || child.type == .symlink { batch.bytesDelta -= Int64(child.size) }
        if child.type == .regular, child.size > 0 || !child.shrinkMarks.isEmpty {
            if child.shrinkMarks.isEmpty, child.size <= UInt64(Self.inlineReclaimChunks * chunkSize),
               let chunks = try smallFileChunks(child) {
                for chunk in chunks {
                    batch.deleteUnversioned(chunk.key)
                    batch.addWritten(view.head, -chunk.size)
                }
            } else {
                batch.putUnversioned(FSKeys.reclaim(child.ino, view.head), [ReclaimKind.deleteFile.rawValue])
            }
        }
    }

    /// The chunk entries (key, stored size) at this version of `file`, a file of at most
    /// `inlineReclaimChunks` chunks without shrink marks, or nil when there are more.
    /// Without ancestor versions they are point reads of the chunks below its size (with no
    /// shrink mark nothing at this version lies beyond it), which a table's bloom filter
    /// answers; a scan instead visits every table the inode's chunk range overlaps, which
    /// cost an unlink over 10,000 files a tenth of its instructions.
    func smallFileChunks(_ file: Inode) throws(FSError) -> [(key: [UInt8], size: Int)]? {
        guard view.ancestors.isEmpty else { return try pool.chunkEntries(file.ino, view.head, atMost: Self.inlineReclaimChunks) }
        var found: [(key: [UInt8], size: Int)] = []
        for index in 0..<file.size.quotientRoundingUp(chunkSize) {
            let key = FSKeys.versioned(FSKeys.chunk(file.ino, index), view.head)
            // Only the size: the value is borrowed (a cached block's bytes), not copied out.
            if let size = try kv({ try store.withValue(key) { $0?.count } }) { found.append((key, size)) }
        }
        return found
    }

    /// Runs `body` holding the locks of `dir` and of the inode its entry `name` names (if
    /// any), re-reading the entry under the locks until it is stable.
    func withEntryLocked<R>(_ dir: UInt64, _ name: [UInt8], _ body: (DirEntry?) throws(FSError) -> R) throws(FSError) -> R {
        // One change from the first look at the entry to the batch (see SyncGate).
        pool.syncGate.beginChange()
        defer { pool.syncGate.endChange() }
        var guess = try locked([dir], change: false) { () throws(FSError) in try entry(dir, name) }
        while true {
            let inodes = [dir] + (guess.map { [$0.ino] } ?? [])
            let outcome = try locked(inodes) { () throws(FSError) -> (R?, DirEntry?) in
                let now = try entry(dir, name)
                guard now?.ino == guess?.ino else { return (nil, now) }
                return (try body(now), now)
            }
            if let result = outcome.0 { return result }
            guess = outcome.1
        }
    }
}
