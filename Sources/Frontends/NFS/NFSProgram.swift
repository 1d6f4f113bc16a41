// The NFS version 3 program (100003, RFC 1813): decodes each procedure's arguments, runs
// it against the dataset the file handle names, and encodes the result. Procedures run on
// the server's thread pool, never on an event loop. Every failure a client can cause
// becomes an NFS status; malformed arguments become GARBAGE_ARGS (thrown XDRError).

import FS
import Synchronization

final class NFSProgram: Sendable {
    static let program: UInt32 = 100_003
    static let version: UInt32 = 3
    /// The largest READ and WRITE, and the preferred size.
    static let maxIO = 1 << 20
    /// The name of each dataset root's virtual directory of snapshots.
    static let snapshotsName: [UInt8] = Array(".snapshots".utf8)

    let pool: Pool
    /// The write verifier: one value per server start, the same in WRITE and COMMIT.
    let writeVerifier: UInt64

    init(pool: Pool, writeVerifier: UInt64) {
        self.pool = pool
        self.writeVerifier = writeVerifier
    }

    /// Appends the result body of `procedure` to `w`; false when there is no such procedure.
    func call(_ procedure: UInt32, _ args: inout XDRReader, _ cred: Credentials, into w: inout XDRWriter) throws(XDRError) -> Bool {
        switch procedure {
        case 0: break
        case 1: try getattr(&args, &w)
        case 2: try setattr(&args, cred, &w)
        case 3: try lookup(&args, cred, &w)
        case 4: try access(&args, cred, &w)
        case 5: try readlink(&args, &w)
        case 6: try read(&args, cred, &w)
        case 7: try write(&args, cred, &w)
        case 8: try create(&args, cred, &w)
        case 9: try mkdir(&args, cred, &w)
        case 10: try symlink(&args, cred, &w)
        case 11: try mknod(&args, cred, &w)
        case 12: try remove(&args, cred, &w, directory: false)
        case 13: try remove(&args, cred, &w, directory: true)
        case 14: try rename(&args, cred, &w)
        case 15: try link(&args, cred, &w)
        case 16: try readdir(&args, cred, &w, plus: false)
        case 17: try readdir(&args, cred, &w, plus: true)
        case 18: try fsstat(&args, &w)
        case 19: try fsinfo(&args, &w)
        case 20: try pathconf(&args, &w)
        case 21: try commit(&args, &w)
        default: return false
        }
        return true
    }

    // MARK: handles

    /// What a file handle names: a file of a dataset or snapshot, or a dataset's virtual
    /// `.snapshots` directory.
    struct Target {
        var fs: FileSystem
        var handle: NFSFileHandle
        /// The inode as read when the handle was checked (nil for `.snapshots`).
        var inode: Inode?
        var isSnapshots: Bool { handle.kind == .snapshotsDirectory }
        var ino: UInt64 { handle.ino }
    }

    func target(_ bytes: [UInt8]) throws(NFSStatus) -> Target {
        guard let handle = NFSFileHandle(bytes) else { throw .badhandle }
        guard handle.incarnation == pool.incarnation else { throw .stale }
        guard let fs = try? pool.filesystem(handle.dataset) else { throw .stale }
        if handle.kind == .snapshotsDirectory {
            guard !fs.isSnapshot, handle.ino == fs.root else { throw .stale }
            return Target(fs: fs, handle: handle, inode: nil)
        }
        // A missing inode is a stale handle; any other failure (EIO from a damaged inode)
        // is reported as what it is.
        let inode = try nfs { () throws(FSError) in try fs.getattr(handle.ino) }
        guard inode.generation == handle.generation else { throw .stale }
        return Target(fs: fs, handle: handle, inode: inode)
    }

    /// Attributes as read when the handle was checked: for procedures that change nothing.
    func known(_ t: Target) -> NFSAttributes? {
        guard let inode = t.inode else { return attributes(t) }
        return attributes(t.fs, inode)
    }

    func handle(_ fs: FileSystem, _ inode: Inode) -> NFSFileHandle {
        NFSFileHandle(incarnation: pool.incarnation, dataset: fs.dataset, ino: inode.ino, generation: inode.generation)
    }

    /// The handle of the virtual `.snapshots` directory of `fs` (a dataset).
    func snapshotsHandle(_ fs: FileSystem) -> NFSFileHandle {
        NFSFileHandle(kind: .snapshotsDirectory, incarnation: pool.incarnation, dataset: fs.dataset, ino: fs.root, generation: 0)
    }

    func attributes(_ fs: FileSystem, _ inode: Inode) -> NFSAttributes {
        NFSAttributes(inode, fsid: fsid(fs.dataset), chunkSize: fs.chunkSize)
    }

    /// Each dataset and snapshot is its own filesystem to the client.
    func fsid(_ dataset: UInt64) -> UInt64 { dataset &+ 1 }

    /// Attributes for post_op_attr: nil when they cannot be read.
    func attributes(_ t: Target) -> NFSAttributes? {
        if t.isSnapshots { return snapshotsAttributes(t.fs) }
        guard let inode = try? t.fs.getattr(t.ino) else { return nil }
        return attributes(t.fs, inode)
    }

    func attributes(_ fs: FileSystem, _ ino: UInt64) -> NFSAttributes? {
        (try? fs.getattr(ino)).map { attributes(fs, $0) }
    }

    /// The `.snapshots` directory: read-only, owned by the dataset root's owner, with the
    /// root's times. Its fileid is one no inode uses.
    func snapshotsAttributes(_ fs: FileSystem) -> NFSAttributes? {
        guard var root = try? fs.getattr(fs.root) else { return nil }
        root.mode = 0o555
        root.nlink = 2
        root.size = 4096
        return NFSAttributes(root, fsid: fsid(fs.dataset), chunkSize: fs.chunkSize, fileid: UInt64.max - 1)
    }
}

extension NFSProgram {
    /// wcc_data for `t` from what the filesystem observed under the operation's locks:
    /// both halves taken atomically with the change, or, when the operation committed
    /// nothing for it, no pre-operation attributes and the current ones.
    func wcc(_ w: inout XDRWriter, _ t: Target, _ observed: ChangeObserver) {
        let (before, after) = observed.change(t.ino)
        if let before, let after, !t.isSnapshots {
            w.wcc(before: before, after: attributes(t.fs, after))
        } else {
            w.wcc(before: nil, after: attributes(t))
        }
    }
}

/// Runs an FS call, turning FSError into its NFS status.
@inline(__always)
func nfs<T>(_ body: () throws(FSError) -> T) throws(NFSStatus) -> T {
    do {
        return try body()
    } catch {
        throw NFSStatus(error)
    }
}
