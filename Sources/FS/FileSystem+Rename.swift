// rename in every case: file over file, directory over empty directory (ENOTEMPTY
// otherwise), EISDIR / ENOTDIR on type mismatch, a directory into its own subtree EINVAL,
// a name onto the same inode a no-op. A move between parents takes the rename mutex
// before any inode lock and checks ancestry under it, so two renames never build a cycle.

extension FileSystem {
    public func rename(_ cred: Credentials, _ fromDir: UInt64, _ fromName: [UInt8], _ toDir: UInt64, _ toName: [UInt8]) throws(FSError) {
        for name in [fromName, toName] {
            if Self.isDotOrDotDot(name) { throw FSError(.EINVAL, "cannot rename \(Self.show(name))") }
            try validateName(name)
        }
        try checkWritable()
        let pending: PendingSync
        do throws(FSError) {
            if fromDir == toDir {
                pending = try renameLocked(cred, fromDir, fromName, toDir, toName)
            } else {
                pending = try renameLock.withLock { () throws(FSError) in try renameLocked(cred, fromDir, fromName, toDir, toName) }
            }
        } catch {
            try answerAfterApplied(error)
        }
        // Outside the rename mutex and every inode lock: other renames need not wait for our sync.
        try awaitDurable(pending)
    }

    private func renameLocked(_ cred: Credentials, _ sd: UInt64, _ sn: [UInt8], _ dd: UInt64, _ dn: [UInt8]) throws(FSError) -> PendingSync {
        var guess = try locked([sd, dd], change: false) { () throws(FSError) in (try entry(sd, sn), try entry(dd, dn)) }
        while true {
            let inodes = [sd, dd] + [guess.0?.ino, guess.1?.ino].compactMap { $0 }
            let seen = guess
            let outcome = try locked(inodes) { () throws(FSError) -> (done: PendingSync?, now: (DirEntry?, DirEntry?)) in
                let now = (try entry(sd, sn), try entry(dd, dn))
                guard now.0?.ino == seen.0?.ino, now.1?.ino == seen.1?.ino else { return (nil, now) }
                return (try renameEntries(cred, sd, now.0, dd, dn, now.1), now)
            }
            if let pending = outcome.done { return pending }
            guess = outcome.now
        }
    }

    /// REQUIRES: the locks of both parents and both named inodes (and the rename mutex
    /// when the parents differ).
    private func renameEntries(
        _ cred: Credentials, _ sd: UInt64, _ source: DirEntry?, _ dd: UInt64, _ dn: [UInt8], _ target: DirEntry?
    ) throws(FSError) -> PendingSync {
        var dirs: [UInt64: Inode] = [sd: try directory(sd)]
        if dd != sd { dirs[dd] = try directory(dd) }
        // As Linux: finding the names needs search permission only, so a missing source
        // is ENOENT and a rename onto the same file (a name onto itself, or onto another
        // link of it) does nothing, before the checks of write permission and sticky bits.
        try dirs[sd]!.require(cred, .execute)
        try dirs[dd]!.require(cred, .execute)
        guard let source else { throw FSError(.ENOENT, "no such entry to rename") }
        if let target, target.ino == source.ino { return .none }
        try dirs[sd]!.require(cred, .write)
        try dirs[dd]!.require(cred, .write)
        var moving = try inode(source.ino)
        guard dirs[sd]!.allowsRemoval(of: moving, by: cred) else { throw FSError(.EPERM, "sticky source directory") }
        var replaced = try target.map { t throws(FSError) in try inode(t.ino) }
        if let replaced, !dirs[dd]!.allowsRemoval(of: replaced, by: cred) {
            throw FSError(.EPERM, "sticky target directory")
        }
        if moving.type == .directory {
            if let replaced {
                guard replaced.type == .directory else { throw FSError(.ENOTDIR, "cannot replace a non-directory with a directory") }
                guard replaced.entryCount == 0 else { throw FSError(.ENOTEMPTY, "the target directory is not empty") }
            }
            if sd != dd {
                try moving.require(cred, .write)
                try checkNotInside(moving.ino, dd)
            }
        } else if let replaced, replaced.type == .directory {
            throw FSError(.EISDIR, "cannot replace a directory with a non-directory")
        }

        let now = Self.now()
        var batch = FSBatch(view: view)
        try removeEntry(&batch, parent: &dirs[sd]!, source, now: now)
        if let target, var gone = replaced {
            try removeEntry(&batch, parent: &dirs[dd]!, target, now: now)
            if gone.type == .directory { dirs[dd]!.nlink = try Self.decremented(dirs[dd]!.nlink, "link count of directory \(dd)") }
            try unlinkInode(&batch, &gone, now: now)
            replaced = gone
        }
        try addEntry(&batch, parent: &dirs[dd]!, DirEntry(name: dn, ino: moving.ino, type: moving.type, cookie: 0), now: now)
        if moving.type == .directory, sd != dd {
            dirs[sd]!.nlink = try Self.decremented(dirs[sd]!.nlink, "link count of directory \(sd)")
            dirs[dd]!.nlink = try Self.incremented(dirs[dd]!.nlink, "link count of directory \(dd)", code: .EMLINK)
            moving.parent = dd
        }
        moving.ctime = now
        batch.putInode(moving)
        for dir in dirs.values { batch.putInode(dir) }
        return try commit(&batch, op: "rename", durable: options.durableMetadata)
    }

    /// EINVAL when `dir` is `ino` or lies inside it. REQUIRES: the rename mutex (directory
    /// parents change only under it, so the walk sees a stable tree).
    private func checkNotInside(_ ino: UInt64, _ dir: UInt64) throws(FSError) {
        var current = dir
        var steps = 0
        while true {
            if current == ino { throw FSError(.EINVAL, "cannot move a directory into its own subtree") }
            if current == root { return }
            current = try inode(current).parent
            steps += 1
            if steps > 1 << 20 { throw FSError.corrupt("directory parent chain does not reach the root") }
        }
    }
}
