// READDIR and READDIRPLUS. A listing starts with "." (cookie 1) and ".." (cookie 2), as
// Linux's nfsd and nfs-ganesha send them: the Linux v3 client shows only what the server
// sends, and programs that skip the first two entries of a listing exist. Then the
// filesystem's entry cookies, plus 2, valid for as long as an entry exists, so paging
// across changes needs no verifier: it is always zero, and any verifier a client sends
// back is accepted. A reply never exceeds the client's byte budgets (count; dircount and
// maxcount), and is NFS3ERR_TOOSMALL when not one entry fits. `.snapshots` lists the
// dataset's snapshots, with their ids plus 3 as cookies.

import FS

extension NFSProgram {
    /// One entry to encode.
    struct Listed {
        var fileid: UInt64
        var name: [UInt8]
        var cookie: UInt64
        var handle: NFSFileHandle?
        var attributes: NFSAttributes?
        /// For an entry of `.snapshots`: the snapshot's id.
        var snapshot: UInt64?
    }

    /// The cookies of "." and ".."; the directory's own entries come after them.
    static let dotCookie: UInt64 = 1
    static let dotDotCookie: UInt64 = 2

    /// Bytes of a reply around its entries: status, post_op_attr, verifier, list end, eof.
    static let readdirOverhead = 4 + 4 + 84 + 8 + 4 + 4

    func readdir(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter, plus: Bool) throws(XDRError) {
        let fh = try a.handleBytes()
        let cookie = try a.uint64()
        _ = try a.fixed(8)
        let dircount = Int(try a.uint32())
        let maxcount = plus ? Int(try a.uint32()) : dircount
        var resolvedDir: Target?
        do throws(NFSStatus) {
            let dir = try target(fh)
            resolvedDir = dir
            var budget = min(maxcount, Self.maxIO) - Self.readdirOverhead
            if budget < 0 { throw .toosmall }
            // dircount (the bytes of names, ids and cookies alone) only bounds a READDIRPLUS
            // reply past its first entry: a client sending a small one still gets entries.
            var names = plus ? dircount : Int.max
            var listed: [Listed] = []
            var eof = false
            var after = cookie
            // Entries are fetched about as many as can fit (the smallest entry has a 1-4
            // byte name), and READDIRPLUS attributes are read only for those sent.
            let smallest = 4 + 8 + 8 + 8 + (plus ? 4 + 84 + 4 + 4 + NFSFileHandle.size : 0)
            fill: while true {
                let limit = max(1, min(256, budget / smallest + 1))
                let (page, pageEOF) = try entries(dir, cred, after: after, limit: limit)
                for entry in page {
                    // value_follows, fileid, name, cookie (+ attributes and handle with plus)
                    let nameBytes = 8 + 4 + (entry.name.count + 3) & ~3 + 8
                    var size = 4 + nameBytes
                    if plus { size += 4 + 84 + 4 + 4 + NFSFileHandle.size }
                    guard size <= budget, nameBytes <= names || listed.isEmpty else { break fill }
                    budget -= size
                    names -= nameBytes
                    listed.append(entry)
                    after = entry.cookie
                }
                if pageEOF {
                    eof = true
                    break
                }
            }
            if listed.isEmpty && !eof { throw .toosmall }
            if plus { listed = listed.map { withAttributes($0, dir) } }
            w.status(.ok)
            w.postOp(known(dir))
            w.uint64(0)  // cookieverf
            for entry in listed {
                w.bool(true)
                w.uint64(entry.fileid)
                w.opaque(entry.name)
                w.uint64(entry.cookie)
                if plus {
                    w.postOp(entry.attributes)
                    w.postOpHandle(entry.handle)
                }
            }
            w.bool(false)
            w.bool(eof)
        } catch {
            w.status(error)
            w.postOp(resolvedDir.flatMap { attributes($0) })
        }
    }

    /// `entry` with its handle and attributes (READDIRPLUS), when they can be read.
    private func withAttributes(_ entry: Listed, _ dir: Target) -> Listed {
        var entry = entry
        if entry.cookie == Self.dotCookie {
            entry.handle = dir.handle
            entry.attributes = attributes(dir)
        } else if dir.isSnapshots, entry.cookie == Self.dotDotCookie {
            if let root = try? dir.fs.getattr(dir.fs.root) {
                entry.handle = handle(dir.fs, root)
                entry.attributes = attributes(dir.fs, root)
            }
        } else if dir.isSnapshots {
            if let id = entry.snapshot, let fs = try? pool.filesystem(id), let root = try? fs.getattr(fs.root) {
                entry.handle = handle(fs, root)
                entry.attributes = attributes(fs, root)
            }
        } else if let inode = try? dir.fs.getattr(entry.fileid) {
            entry.handle = handle(dir.fs, inode)
            entry.attributes = attributes(dir.fs, inode)
        }
        return entry
    }

    /// Up to `limit` entries after `cookie` (all of them for `.snapshots`), "." and ".."
    /// first, and whether they end the directory.
    private func entries(_ dir: Target, _ cred: Credentials, after cookie: UInt64, limit: Int) throws(NFSStatus) -> ([Listed], Bool) {
        let fs = dir.fs
        var dots: [Listed] = []
        if cookie < Self.dotDotCookie {
            // At an export's root ".." is the root itself (its own parent), as LOOKUP says.
            let (own, parent) = dir.isSnapshots ? (UInt64.max - 1, fs.root) : (dir.ino, dir.inode?.parent ?? dir.ino)
            if cookie == 0 { dots.append(Listed(fileid: own, name: [0x2E], cookie: Self.dotCookie)) }
            dots.append(Listed(fileid: parent, name: [0x2E, 0x2E], cookie: Self.dotDotCookie))
        }
        if dir.isSnapshots {
            try requireRootSearch(fs, cred)
            guard let snapshots = try? pool.snapshotNames(of: fs.dataset) else { throw .stale }
            let page = snapshots.filter { $0.id &+ 3 > cookie }.sorted { $0.id < $1.id }
            let listed = page.map { snapshot in
                // A fileid of the parent's fsid that no inode uses (the root's own is in the snapshot's).
                var entry = Listed(fileid: UInt64.max &- 2 &- snapshot.id, name: snapshot.name, cookie: snapshot.id &+ 3)
                entry.snapshot = snapshot.id
                return entry
            }
            return (dots + listed, true)
        }
        // The filesystem's check of read permission runs even for a page of dots only.
        let after = cookie < Self.dotDotCookie ? 0 : cookie - Self.dotDotCookie
        let result = try nfs { () throws(FSError) in try fs.readdir(cred, dir.ino, after: after, limit: limit) }
        return (dots + result.entries.map { Listed(fileid: $0.ino, name: $0.name, cookie: $0.cookie &+ Self.dotDotCookie) }, result.eof)
    }
}
