// Operations that add a name: create (plain and exclusive), mkdir, symlink, mknod, link.
// Each is one batch: the new inode (if any), the entry, its scan record, the parent's
// updated inode and cookie counter.

extension FileSystem {
    /// Creates a regular file. With `exclusive` an existing name is EEXIST; without, an
    /// existing regular file is returned unchanged (open with O_CREAT).
    public func create(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], mode: UInt32, exclusive: Bool = false) throws(FSError) -> Inode {
        if exclusive { return try makeNode(cred, dir, name, type: .regular, mode: mode, op: "create") }
        return try createOrFind(cred, dir, name, mode: mode).inode
    }

    /// As `create` (not exclusive), and whether it made the file: false when it found a
    /// regular file of that name, returned as it is (what NFS UNCHECKED must tell apart).
    public func createOrFind(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], mode: UInt32) throws(FSError) -> (inode: Inode, created: Bool) {
        var existed = false
        let inode = try makeNode(cred, dir, name, type: .regular, mode: mode, op: "create", existing: { found throws(FSError) in
            let inode = try self.inode(found.ino)
            guard inode.type == .regular else {
                throw FSError(inode.type == .directory ? .EISDIR : .EEXIST, "\(Self.show(name)) exists and is not a regular file")
            }
            existed = true
            return inode
        })
        return (inode, !existed)
    }

    /// NFS EXCLUSIVE create: a regular file whose atime and mtime are `verifier`, in one
    /// batch. An existing regular file with that mtime is the caller's own earlier
    /// attempt and is returned; any other existing name is EEXIST.
    public func createExclusive(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], mode: UInt32, verifier: Timestamp) throws(FSError) -> Inode {
        try makeNode(cred, dir, name, type: .regular, mode: mode, op: "create", stamp: verifier, existing: { found throws(FSError) in
            let inode = try self.inode(found.ino)
            guard inode.type == .regular, inode.mtime == verifier else { throw FSError(.EEXIST, "\(Self.show(name)) exists") }
            return inode
        })
    }

    public func mkdir(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], mode: UInt32) throws(FSError) -> Inode {
        try makeNode(cred, dir, name, type: .directory, mode: mode, op: "mkdir")
    }

    public func symlink(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], target: [UInt8]) throws(FSError) -> Inode {
        guard !target.isEmpty, !target.contains(0) else { throw FSError(.EINVAL, "a symlink target must be non-empty without NUL") }
        guard target.count <= FSOptions.maxSymlinkLength else {
            throw FSError(.ENAMETOOLONG, "symlink target of \(target.count) bytes exceeds \(FSOptions.maxSymlinkLength)")
        }
        return try makeNode(cred, dir, name, type: .symlink, mode: 0o777, op: "symlink", target: target)
    }

    /// Creates a device, FIFO or socket node.
    public func mknod(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8], type: FileType, mode: UInt32, rdev: UInt64 = 0) throws(FSError) -> Inode {
        switch type {
        case .blockDevice, .characterDevice:
            guard cred.isRoot else { throw FSError(.EPERM, "only root may create device nodes") }
        case .fifo, .socket:
            break
        case .regular, .directory, .symlink:
            throw FSError(.EINVAL, "mknod makes devices, FIFOs and sockets only")
        }
        return try makeNode(cred, dir, name, type: type, mode: mode, op: "mknod", rdev: rdev)
    }

    /// Adds the name `name` in `dir` for the existing non-directory `ino`.
    public func link(_ cred: Credentials, _ ino: UInt64, _ dir: UInt64, _ name: [UInt8]) throws(FSError) -> Inode {
        try validateName(name)
        if Self.isDotOrDotDot(name) { throw FSError(.EEXIST, "\(Self.show(name)) always exists") }
        return try mutate([ino, dir]) { () throws(FSError) -> (Inode, PendingSync) in
            var parent = try directory(dir)
            try parent.require(cred, [.write, .execute])
            var target = try inode(ino)
            guard target.type != .directory else { throw FSError(.EPERM, "hard links to directories are not allowed") }
            guard target.nlink < UInt32.max - 1 else { throw FSError(.EMLINK, "too many links to inode \(ino)") }
            if try entry(dir, name) != nil { throw FSError(.EEXIST, "\(Self.show(name)) exists") }
            let now = Self.now()
            target.nlink += 1
            target.ctime = now
            var batch = FSBatch(view: view)
            try addEntry(&batch, parent: &parent, DirEntry(name: name, ino: ino, type: target.type, cookie: 0), now: now)
            batch.putInode(target)
            batch.putInode(parent)
            return (target, try commit(&batch, op: "link", durable: options.durableMetadata))
        }
    }

    private func makeNode(
        _ cred: Credentials, _ dir: UInt64, _ name: [UInt8], type: FileType, mode: UInt32, op: String,
        rdev: UInt64 = 0, target: [UInt8] = [], stamp: Timestamp? = nil, existing: ((DirEntry) throws(FSError) -> Inode)? = nil
    ) throws(FSError) -> Inode {
        try validateName(name)
        if Self.isDotOrDotDot(name) { throw FSError(.EEXIST, "\(Self.show(name)) always exists") }
        return try mutate([dir]) { () throws(FSError) -> (Inode, PendingSync) in
            var parent = try directory(dir)
            // Finding an existing name needs search permission only (open(O_CREAT) of an
            // existing file, and EEXIST, as on Linux); adding a name needs write as well.
            try parent.require(cred, .execute)
            if let found = try entry(dir, name) {
                // The name may come from another caller's create that is applied but not yet
                // durable: answer only once everything applied so far is durable.
                if let existing {
                    let pending = options.durableMetadata ? PendingSync(sequence: syncGate.lastApplied) : .none
                    return (try existing(found), pending)
                }
                throw FSError(.EEXIST, "\(Self.show(name)) exists")
            }
            try parent.require(cred, [.write, .execute])
            let now = Self.now()
            let setgidDir = parent.mode & Mode.setgid != 0
            // mkdir ignores setuid and setgid in the requested mode (Linux vfs_mkdir); a
            // directory gets setgid only from a setgid parent, below.
            let requested = type == .directory ? mode & ~(Mode.setuid | Mode.setgid) : mode
            var node = Inode(ino: allocateInode(), type: type, mode: requested, uid: cred.uid,
                             gid: setgidDir ? parent.gid : cred.gid, now: now)
            node.generation = UInt64.random(in: 1...UInt64(UInt32.max))
            node.contentVersion = view.head
            node.rdev = rdev
            node.target = target
            if let stamp {
                node.atime = stamp
                node.mtime = stamp
            }
            node.size = UInt64(target.count)
            if type == .directory {
                node.parent = dir
                if setgidDir { node.mode |= Mode.setgid }
            } else if node.mode & Mode.setgid != 0, !cred.isRoot, !cred.inGroup(node.gid) {
                node.mode &= ~Mode.setgid
            }
            var batch = FSBatch(view: view)
            try addEntry(&batch, parent: &parent, DirEntry(name: name, ino: node.ino, type: type, cookie: 0), now: now)
            if type == .directory {
                parent.nlink = try Self.incremented(parent.nlink, "link count of directory \(dir)", code: .EMLINK)
                batch.putUnversioned(FSKeys.cookieCounter(node.ino), SystemRecords.encodeUInt64(1))
            }
            batch.putNewInode(node)
            batch.putInode(parent)
            batch.inodeDelta = 1
            batch.bytesDelta = Int64(node.size)
            return (node, try commit(&batch, op: op, durable: options.durableMetadata))
        }
    }

    /// Puts the entry and scan record of `entry` (given a fresh cookie) and counts it in
    /// `parent`, whose inode the caller writes. REQUIRES: the parent's lock, and `parent`
    /// as read under it or as an earlier call for this batch left it (the first is noted as
    /// the batch's original: FSBatch.noteOriginal).
    func addEntry(_ batch: inout FSBatch, parent: inout Inode, _ entry: DirEntry, now: Timestamp) throws(FSError) {
        batch.noteOriginal(parent)
        var entry = entry
        let counterKey = FSKeys.cookieCounter(parent.ino)
        if let cached = pool.cookieCounters.withLock({ $0[parent.ino] }) {
            entry.cookie = cached
        } else {
            let counter = try kv { try store.get(counterKey) }
            entry.cookie = try counter.map { v throws(FSError) in try SystemRecords.decodeUInt64(v, "cookie counter") } ?? 1
        }
        let next = try Self.incremented(entry.cookie, "cookie counter of directory \(parent.ino)")
        batch.putUnversioned(counterKey, SystemRecords.encodeUInt64(next))
        // Advancing before the batch commits is safe: a failed batch only leaves a gap.
        pool.cookieCounters.withLock { cache in
            if cache.count >= Pool.cookieCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[parent.ino] = next
        }
        batch.put(FSKeys.dirEntry(parent.ino, entry.name), entry.encodeEntry())
        batch.noteEntry(parent.ino, entry.name, entry)
        batch.put(FSKeys.dirScan(parent.ino, entry.cookie), entry.encodeScan())
        parent.entryCount = try Self.incremented(parent.entryCount, "entry count of directory \(parent.ino)")
        parent.mtime = now
        parent.ctime = now
        parent.contentVersion = batch.view.head
    }

    /// Removes `entry` from `parent` (the caller writes the parent inode). REQUIRES: as
    /// `addEntry`.
    func removeEntry(_ batch: inout FSBatch, parent: inout Inode, _ entry: DirEntry, now: Timestamp) throws(FSError) {
        batch.noteOriginal(parent)
        batch.remove(FSKeys.dirEntry(parent.ino, entry.name))
        batch.noteEntry(parent.ino, entry.name, nil)
        batch.remove(FSKeys.dirScan(parent.ino, entry.cookie))
        parent.entryCount = try Self.decremented(parent.entryCount, "entry count of directory \(parent.ino)")
        parent.mtime = now
        parent.ctime = now
        parent.contentVersion = batch.view.head
    }
}
