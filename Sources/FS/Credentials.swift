// AUTH_SYS-style credentials and the POSIX permission rules every operation applies:
// owner, group (primary or supplementary) or other bits; root bypasses read and write
// checks and needs one execute bit to execute; the sticky bit restricts removal.

public struct Credentials: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    /// Calls of a stateless protocol (NFS), which has no open file: the client checked
    /// access when its program opened the file, and a file open for writing must stay
    /// writable after a chmod. So, as Linux's NFS server does, the owner reads, writes and
    /// truncates a regular file whatever its mode, and anyone who may execute a regular
    /// file may read it (page-ins of a program). Every other check is as usual.
    public var statelessIO: Bool

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = [], statelessIO: Bool = false) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.statelessIO = statelessIO
    }

    public static let root = Credentials(uid: 0, gid: 0)

    public var isRoot: Bool { uid == 0 }

    public func inGroup(_ gid: UInt32) -> Bool { self.gid == gid || groups.contains(gid) }
}

/// Access bits as in access(2).
public struct AccessMask: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let read = AccessMask(rawValue: 4)
    public static let write = AccessMask(rawValue: 2)
    public static let execute = AccessMask(rawValue: 1)
}

enum Mode {
    static let setuid: UInt32 = 0o4000
    static let setgid: UInt32 = 0o2000
    static let sticky: UInt32 = 0o1000
}

extension Inode {
    /// Whether `cred` may access this inode with every bit of `mask`.
    public func permits(_ cred: Credentials, _ mask: AccessMask) -> Bool {
        if cred.isRoot {
            // Root executes only what someone may execute (directories are always searchable).
            if mask.contains(.execute) && type != .directory { return mode & 0o111 != 0 }
            return true
        }
        let bits: UInt32
        if cred.uid == uid {
            bits = (mode >> 6) & 7
        } else if cred.inGroup(gid) {
            bits = (mode >> 3) & 7
        } else {
            bits = mode & 7
        }
        return bits & mask.rawValue == mask.rawValue
    }

    func require(_ cred: Credentials, _ mask: AccessMask) throws(FSError) {
        guard permits(cred, mask) else { throw FSError(.EACCES, "permission denied on inode \(ino)") }
    }

    /// The check of a read, write or truncate of this regular file's contents: as
    /// `require`, with the owner's and the executable's allowances of `statelessIO`.
    func requireIO(_ cred: Credentials, _ mask: AccessMask) throws(FSError) {
        if cred.statelessIO, type == .regular {
            if cred.uid == uid { return }
            if mask == .read, permits(cred, .execute) { return }
        }
        try require(cred, mask)
    }

    /// The sticky-bit rule: in a sticky directory only the file's owner, the directory's
    /// owner or root may remove or rename an entry.
    func allowsRemoval(of child: Inode, by cred: Credentials) -> Bool {
        guard mode & Mode.sticky != 0, !cred.isRoot else { return true }
        return cred.uid == uid || cred.uid == child.uid
    }
}
