// Operations that only read: lookup, getattr, access, readlink, readdir and statfs.

import Engine

public struct ReadDirResult: Sendable, Equatable {
    public var entries: [DirEntry]
    /// True when no entry follows the last one returned.
    public var eof: Bool
}

public struct StatFS: Sendable, Equatable {
    public var blockSize: UInt64
    public var totalBytes: UInt64
    public var usedBytes: UInt64
    public var freeBytes: UInt64
    public var totalInodes: UInt64
    public var usedInodes: UInt64
    public var freeInodes: UInt64
}

extension FileSystem {
    /// The attributes of `name` in directory `dir` ("." and ".." included).
    public func lookup(_ cred: Credentials, _ dir: UInt64, _ name: [UInt8]) throws(FSError) -> Inode {
        try reading { () throws(FSError) in try lookup(cred, directory: try directory(dir), name) }
    }

    /// `lookup` in a directory whose inode the caller has just read (the NFS server reads
    /// it to check the handle): one read fewer.
    public func lookup(_ cred: Credentials, in parent: Inode, _ name: [UInt8]) throws(FSError) -> Inode {
        try reading { () throws(FSError) in
            guard parent.type == .directory else { throw FSError(.ENOTDIR, "inode \(parent.ino) is not a directory") }
            return try lookup(cred, directory: parent, name)
        }
    }

    private func lookup(_ cred: Credentials, directory parent: Inode, _ name: [UInt8]) throws(FSError) -> Inode {
        let dir = parent.ino
        try parent.require(cred, .execute)
        if name == [0x2E] { return parent }
        if name == [0x2E, 0x2E] { return try inode(parent.parent) }
        try validateName(name)
        guard let found = try entry(dir, name, hint: parent.contentVersion) else {
            throw FSError(.ENOENT, "no entry named \(Self.show(name))")
        }
        do {
            return try inode(found.ino)
        } catch where error.code == .ESTALE {
            // Unlinked between the two reads: the name is gone, not the caller's handle.
            throw FSError(.ENOENT, "no entry named \(Self.show(name))")
        }
    }

    public func getattr(_ ino: UInt64) throws(FSError) -> Inode {
        try reading { () throws(FSError) in try inode(ino) }
    }

    /// Whether `cred` may access `ino` with `mask` (NFS ACCESS).
    public func access(_ cred: Credentials, _ ino: UInt64, _ mask: AccessMask) throws(FSError) -> Bool {
        try reading { () throws(FSError) in try inode(ino).permits(cred, mask) }
    }

    public func readlink(_ ino: UInt64) throws(FSError) -> [UInt8] {
        let link = try reading { () throws(FSError) in try inode(ino) }
        guard link.type == .symlink else { throw FSError(.EINVAL, "inode \(ino) is not a symbolic link") }
        return link.target
    }

    /// Up to `limit` entries of `dir` whose cookies follow `cookie` (0 starts the listing),
    /// in cookie order. Cookies never change while an entry exists, so a listing paged
    /// across concurrent changes never repeats or skips an entry that existed throughout.
    public func readdir(_ cred: Credentials, _ dir: UInt64, after cookie: UInt64, limit: Int) throws(FSError) -> ReadDirResult {
        try reading { () throws(FSError) in
            guard limit > 0 else { throw FSError(.EINVAL, "readdir limit must be positive") }
            return try readdirOpen(cred, dir, after: cookie, limit: limit)
        }
    }

    private func readdirOpen(_ cred: Credentials, _ dir: UInt64, after cookie: UInt64, limit: Int) throws(FSError) -> ReadDirResult {
        let parent = try directory(dir)
        try parent.require(cred, .read)
        var entries: [DirEntry] = []
        var eof = true
        let start = cookie == UInt64.max ? nil : FSKeys.dirScan(dir, cookie + 1)
        if cookie == UInt64.max { return ReadDirResult(entries: [], eof: true) }
        try reads.scan(prefix: FSKeys.dirScanPrefix(dir), from: start) { logical, value throws(FSError) in
            if entries.count == limit {
                eof = false
                return false
            }
            guard logical.count == 17 else { throw FSError.corrupt("directory \(dir): a scan record's key of \(logical.count) bytes") }
            let entryCookie = logical.readBigEndian(at: 9)
            entries.append(try DirEntry.decodeScan(cookie: entryCookie, value))
            return true
        }
        return ReadDirResult(entries: entries, eof: eof)
    }

    public func statfs() throws(FSError) -> StatFS {
        try checkOpen()
        let counters = self.counters
        let used = pool.storedBytes
        let total: UInt64 = 1 << 50
        let totalInodes: UInt64 = 1 << 40
        return StatFS(blockSize: UInt64(chunkSize), totalBytes: total, usedBytes: used, freeBytes: total - min(used, total),
                      totalInodes: totalInodes, usedInodes: counters.inodes, freeInodes: totalInodes - min(counters.inodes, totalInodes))
    }

    /// This dataset's statistics (what statfs reports and fsck checks).
    public var counters: FSCounters { pool.state.withLock { $0.counters[dataset] ?? FSCounters() } }

    static func show(_ name: [UInt8]) -> String {
        String(decoding: name, as: UTF8.self).debugDescription
    }
}
