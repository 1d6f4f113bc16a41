// The NFSv3 data types of RFC 1813 section 2.5 that several procedures share: status
// codes, file types, fattr3, wcc_data, sattr3 and times.

import FS

enum NFSStatus: UInt32, Error {
    case ok = 0
    case perm = 1
    case noent = 2
    case io = 5
    case nxio = 6
    case acces = 13
    case exist = 17
    case xdev = 18
    case nodev = 19
    case notdir = 20
    case isdir = 21
    case inval = 22
    case fbig = 27
    case nospc = 28
    case rofs = 30
    case mlink = 31
    case nametoolong = 63
    case notempty = 66
    case dquot = 69
    case stale = 70
    case badhandle = 10001
    case notSync = 10002
    case badCookie = 10003
    case notsupp = 10004
    case toosmall = 10005
    case serverfault = 10006
    case badtype = 10007
}

extension NFSStatus {
    init(_ error: FSError) {
        switch error.code {
        case .EPERM: self = .perm
        case .ENOENT: self = .noent
        case .EIO: self = .io
        case .EAGAIN: self = .notSync
        case .EACCES: self = .acces
        case .EEXIST: self = .exist
        case .EXDEV: self = .xdev
        case .ENOTDIR: self = .notdir
        case .EISDIR: self = .isdir
        case .EINVAL: self = .inval
        case .EFBIG: self = .fbig
        case .ENOSPC: self = .nospc
        case .EROFS: self = .rofs
        case .EMLINK: self = .mlink
        case .ENAMETOOLONG: self = .nametoolong
        case .ENOTEMPTY: self = .notempty
        case .ENOTSUP: self = .notsupp
        case .ESTALE: self = .stale
        }
    }
}

enum NFSFileType: UInt32 {
    case regular = 1, directory, block, character, symlink, socket, fifo

    init(_ type: FileType) {
        switch type {
        case .regular: self = .regular
        case .directory: self = .directory
        case .blockDevice: self = .block
        case .characterDevice: self = .character
        case .symlink: self = .symlink
        case .socket: self = .socket
        case .fifo: self = .fifo
        }
    }
}

/// The attributes of a file as NFS shows them, with the fsid of its dataset.
struct NFSAttributes {
    var inode: Inode
    var fsid: UInt64
    /// Bytes the file occupies (its size rounded up to whole chunks).
    var used: UInt64
    /// Replaces the inode number for virtual directories.
    var fileid: UInt64

    init(_ inode: Inode, fsid: UInt64, chunkSize: Int, fileid: UInt64? = nil) {
        self.inode = inode
        self.fsid = fsid
        let cs = UInt64(chunkSize)
        used = inode.type == .regular ? (inode.size / cs + (inode.size % cs == 0 ? 0 : 1)) * cs : inode.size
        self.fileid = fileid ?? inode.ino
    }
}

extension XDRWriter {
    mutating func status(_ status: NFSStatus) { uint32(status.rawValue) }

    mutating func time(_ t: Timestamp) {
        uint32(UInt32(truncatingIfNeeded: max(0, t.seconds)))
        uint32(t.nanoseconds)
    }

    mutating func fattr(_ a: NFSAttributes) {
        let i = a.inode
        uint32(NFSFileType(i.type).rawValue)
        uint32(i.mode & 0o7777)
        uint32(i.nlink)
        uint32(i.uid)
        uint32(i.gid)
        uint64(i.size)
        uint64(a.used)
        uint32(UInt32(truncatingIfNeeded: i.rdev >> 32))
        uint32(UInt32(truncatingIfNeeded: i.rdev))
        uint64(a.fsid)
        uint64(a.fileid)
        time(i.atime)
        time(i.mtime)
        time(i.ctime)
    }

    /// post_op_attr.
    mutating func postOp(_ a: NFSAttributes?) { optional(a) { $0.fattr($1) } }

    /// wcc_data: pre-operation attributes (size, mtime, ctime) and post-operation ones.
    mutating func wcc(before: Inode?, after: NFSAttributes?) {
        optional(before) { w, i in
            w.uint64(i.size)
            w.time(i.mtime)
            w.time(i.ctime)
        }
        postOp(after)
    }

    /// nfs_fh3: the handle's bytes as opaque data, written in place (36 bytes, no padding).
    mutating func handle(_ h: NFSFileHandle) {
        uint32(UInt32(NFSFileHandle.size))
        h.write(into: &self)
    }

    /// post_op_fh3.
    mutating func postOpHandle(_ h: NFSFileHandle?) { optional(h) { $0.handle($1) } }
}

extension XDRReader {
    /// nfs_fh3: at most 64 bytes.
    mutating func handleBytes() throws(XDRError) -> [UInt8] { try opaque(limit: 64) }

    /// filename3 / nfspath3: bytes, bounded only by the record (the filesystem answers
    /// ENAMETOOLONG for a name over 255 bytes or a path over 4096).
    mutating func name() throws(XDRError) -> [UInt8] { try opaque(limit: remaining) }

    mutating func time() throws(XDRError) -> Timestamp {
        let seconds = try uint32()
        let nanoseconds = try uint32()
        guard nanoseconds < 1_000_000_000 else { throw XDRError("nanoseconds \(nanoseconds)") }
        return Timestamp(seconds: Int64(seconds), nanoseconds: nanoseconds)
    }

    /// sattr3.
    mutating func setAttributes() throws(XDRError) -> SetAttributes {
        var change = SetAttributes()
        change.mode = try optional { r throws(XDRError) in try r.uint32() & 0o7777 }
        change.uid = try optional { r throws(XDRError) in try r.uint32() }
        change.gid = try optional { r throws(XDRError) in try r.uint32() }
        change.size = try optional { r throws(XDRError) in try r.uint64() }
        change.atime = try timeChange()
        change.mtime = try timeChange()
        return change
    }

    private mutating func timeChange() throws(XDRError) -> TimeChange? {
        switch try uint32() {
        case 0: return nil
        case 1: return .now
        case 2: return .set(try time())
        case let other: throw XDRError("time_how \(other)")
        }
    }
}
