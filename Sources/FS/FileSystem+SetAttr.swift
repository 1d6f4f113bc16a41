// setattr: mode, owner, group, size and times ("set to now" included), with the POSIX
// rules on who may change what, in one batch.

public enum TimeChange: Sendable, Equatable {
    case now
    case set(Timestamp)
}

public struct SetAttributes: Sendable, Equatable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeChange?
    public var mtime: TimeChange?
    /// Change nothing unless the inode's ctime is still this (NFS's sattrguard3), checked
    /// under the inode's lock with the change, so no other change slips in between.
    public var ctimeGuard: Timestamp?

    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
                atime: TimeChange? = nil, mtime: TimeChange? = nil, ctimeGuard: Timestamp? = nil) {
        self.ctimeGuard = ctimeGuard
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }
}

extension FileSystem {
    /// `mode` after a change a setuid or setgid program must not survive (a write, a
    /// truncate, a new owner): setuid goes, and setgid when group execute is set (setgid
    /// without it marks mandatory locking, not a program). Linux should_remove_suid.
    static func killingSetID(_ mode: UInt32) -> UInt32 {
        var mode = mode & ~Mode.setuid
        if mode & 0o010 != 0 { mode &= ~Mode.setgid }
        return mode
    }

    @discardableResult
    public func setattr(_ cred: Credentials, _ ino: UInt64, _ change: SetAttributes) throws(FSError) -> Inode {
        try mutate([ino]) { () throws(FSError) -> (Inode, PendingSync) in
            var node = try inode(ino)
            if let expected = change.ctimeGuard, node.ctime != expected {
                throw FSError(.EAGAIN, "the inode changed since the guard's ctime")
            }
            let isOwner = cred.isRoot || cred.uid == node.uid
            // Nothing to change: nothing written, not even ctime (Linux nfsd answers an empty
            // SETATTR so; a ctime moved by anyone holding a handle would drop every client's
            // cache and fail their guarded SETATTRs).
            var asked = change
            asked.ctimeGuard = nil
            if asked == SetAttributes() { return (node, .none) }
            let now = Self.now()
            var batch = FSBatch(view: view)

            // Linux chown_ok and chgrp_ok: setting the owner it has, or a group, is the
            // owner's (or root's) call even when nothing changes.
            if let uid = change.uid, !cred.isRoot, !(uid == node.uid && cred.uid == node.uid) {
                throw FSError(.EPERM, "only root may change the owner")
            }
            if let gid = change.gid, !cred.isRoot, !(cred.uid == node.uid && (gid == node.gid || cred.inGroup(gid))) {
                throw FSError(.EPERM, "only the owner, in the new group, or root may change the group")
            }
            if change.mode != nil, !isOwner { throw FSError(.EPERM, "only the owner or root may change the mode") }
            for time in [change.atime, change.mtime] {
                switch time {
                case .now?:
                    if !isOwner, !node.permits(cred, .write) { throw FSError(.EACCES, "setting times needs ownership or write access") }
                case .set?:
                    if !isOwner { throw FSError(.EPERM, "only the owner or root may set times") }
                case nil:
                    break
                }
            }
            if let size = change.size {
                try checkRegular(node)
                try node.requireIO(cred, .write)
                if size != node.size {
                    try truncate(&batch, &node, to: size)
                    node.mtime = now
                }
                // A truncate changes the contents, as a write does. An explicit mode below wins.
                if !cred.isRoot { node.mode = Self.killingSetID(node.mode) }
            }
            if let uid = change.uid { node.uid = uid }
            if let gid = change.gid { node.gid = gid }
            if let mode = change.mode {
                node.mode = mode & 0o7777
                // Linux setattr_copy: a caller outside the file's group (and not root) cannot
                // set setgid, on directories as on files.
                if !cred.isRoot, !cred.inGroup(node.gid) { node.mode &= ~Mode.setgid }
            }
            // An owner or group set on anything but a directory revokes setuid, and setgid
            // with group execute, whoever sets it and whatever mode comes with it (Linux
            // nfsd_sanitize_attrs).
            if change.uid != nil || change.gid != nil, node.type != .directory { node.mode = Self.killingSetID(node.mode) }
            switch change.atime {
            case .now?: node.atime = now
            case .set(let t)?: node.atime = t
            case nil: break
            }
            switch change.mtime {
            case .now?: node.mtime = now
            case .set(let t)?: node.mtime = t
            case nil: break
            }
            node.ctime = now
            batch.putInode(node)
            // The atime set here wins over one a read deferred (AccessTimes.swift): the note
            // goes before the commit (which lays notes over what it writes), and comes back
            // if the commit fails.
            let dropped = change.atime != nil ? dropDeferredAccessTime(ino) : nil
            do throws(FSError) {
                return (node, try commit(&batch, op: "setattr", durable: options.durableMetadata))
            } catch {
                if let dropped { restoreDeferredAccessTime(ino, dropped) }
                throw error
            }
        }
    }
}
