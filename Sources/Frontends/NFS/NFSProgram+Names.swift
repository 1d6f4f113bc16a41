// NFS procedures that add or remove names: LOOKUP, CREATE (UNCHECKED, GUARDED,
// EXCLUSIVE), MKDIR, SYMLINK, MKNOD, REMOVE, RMDIR, RENAME, LINK. The name `.snapshots`
// in a dataset's root is reserved for the virtual directory of its snapshots.

import FS

extension NFSProgram {
    /// diropargs3: a directory handle and a name.
    struct DirOp {
        var dir: [UInt8]
        var name: [UInt8]

        init(_ a: inout XDRReader) throws(XDRError) {
            dir = try a.handleBytes()
            name = try a.name()
        }
    }

    func isReserved(_ t: Target, _ name: [UInt8]) -> Bool {
        !t.isSnapshots && t.ino == t.fs.root && !t.fs.isSnapshot && name == Self.snapshotsName
    }

    func lookup(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let op = try DirOp(&a)
        var resolvedDir: Target?
        do throws(NFSStatus) {
            let dir = try target(op.dir)
            resolvedDir = dir
            let found: NFSFileHandle
            let objectAttributes: NFSAttributes?
            if dir.isSnapshots {
                try requireRootSearch(dir.fs, cred)
                let (fs, handle) = try lookupSnapshot(dir.fs, op.name)
                (found, objectAttributes) = (handle, handle.kind == .snapshotsDirectory ? snapshotsAttributes(fs) : attributes(fs, handle.ino))
            } else if isReserved(dir, op.name) {
                try requireRootSearch(dir.fs, cred)
                (found, objectAttributes) = (snapshotsHandle(dir.fs), snapshotsAttributes(dir.fs))
            } else {
                let inode = try nfs { () throws(FSError) in
                    // The directory as read when its handle was checked.
                    if let parent = dir.inode { try dir.fs.lookup(cred, in: parent, op.name) } else { try dir.fs.lookup(cred, dir.ino, op.name) }
                }
                (found, objectAttributes) = (handle(dir.fs, inode), attributes(dir.fs, inode))
            }
            w.status(.ok)
            w.handle(found)
            w.postOp(objectAttributes)
            w.postOp(known(dir))
        } catch {
            w.status(error)
            w.postOp(resolvedDir.flatMap { attributes($0) })
        }
    }

    /// `.snapshots` is reached through the dataset's root: a caller who may not search the
    /// root (execute) may not look it up, list it or look up in it either (NFS3ERR_ACCES),
    /// as with any name there.
    func requireRootSearch(_ fs: FileSystem, _ cred: Credentials) throws(NFSStatus) {
        let root = try nfs { () throws(FSError) in try fs.getattr(fs.root) }
        guard root.permits(cred, .execute) else { throw .acces }
    }

    /// A name in dataset `fs`'s `.snapshots`: ".", "..", or one of its snapshots' roots.
    func lookupSnapshot(_ fs: FileSystem, _ name: [UInt8]) throws(NFSStatus) -> (FileSystem, NFSFileHandle) {
        if name == [0x2E] { return (fs, snapshotsHandle(fs)) }
        if name == [0x2E, 0x2E] {
            let root = try nfs { () throws(FSError) in try fs.getattr(fs.root) }
            return (fs, handle(fs, root))
        }
        guard let id = pool.snapshotID(of: fs.dataset, named: name), let snapshot = try? pool.filesystem(id) else { throw .noent }
        let root = try nfs { () throws(FSError) in try snapshot.getattr(snapshot.root) }
        return (snapshot, handle(snapshot, root))
    }

    // MARK: making names

    enum CreateMode: UInt32 {
        case unchecked = 0
        case guarded = 1
        case exclusive = 2
    }

    /// The result of CREATE, MKDIR, SYMLINK and MKNOD: the new handle and attributes, and
    /// the directory's wcc_data.
    func made(_ dir: Target?, _ w: inout XDRWriter, _ body: (Target) throws(NFSStatus) -> Inode) {
        do throws(NFSStatus) {
            guard let dir else { throw .stale }
            try requireWritable(dir)
            let (inode, observed) = try ChangeObserver.observing([dir.ino]) { () throws(NFSStatus) -> Inode in try body(dir) }
            w.status(.ok)
            w.postOpHandle(handle(dir.fs, inode))
            w.postOp(attributes(dir.fs, inode))
            wcc(&w, dir, observed)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: dir.flatMap { attributes($0) })
        }
    }

    func resolvedDirectory(_ bytes: [UInt8]) -> Result<Target, NFSStatus> {
        do throws(NFSStatus) { return .success(try target(bytes)) } catch { return .failure(error) }
    }

    func create(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let op = try DirOp(&a)
        guard let mode = CreateMode(rawValue: try a.uint32()) else { throw XDRError("createmode3 out of range") }
        var attributes = SetAttributes()
        var verifier: UInt64 = 0
        if mode == .exclusive { verifier = try a.uint64() } else { attributes = try a.setAttributes() }
        withDirectory(op.dir, &w) { dir, w in
            made(dir, &w) { dir throws(NFSStatus) -> Inode in
                if isReserved(dir, op.name) { throw .exist }
                let fs = dir.fs
                switch mode {
                case .unchecked, .guarded:
                    let (inode, created) = try nfs { () throws(FSError) in
                        mode == .guarded
                            ? (try fs.create(cred, dir.ino, op.name, mode: attributes.mode ?? 0o644, exclusive: true), true)
                            : try fs.createOrFind(cred, dir.ino, op.name, mode: attributes.mode ?? 0o644)
                    }
                    // An existing file (UNCHECKED) takes only the size, as open(O_CREAT|
                    // O_TRUNC) would; a new one the rest of what was sent (Linux nfsd).
                    var rest = created ? Self.afterCreate(attributes, cred) : SetAttributes(size: attributes.size)
                    rest.mode = nil
                    guard rest != SetAttributes() else { return inode }
                    return try nfs { () throws(FSError) in try fs.setattr(cred, inode.ino, rest) }
                case .exclusive:
                    // The verifier is kept as the file's mtime (and atime), written with the
                    // file in one batch, until the client sets them: a retransmitted CREATE
                    // finds its own file (only mtime is compared; a read may move atime).
                    let stamp = Timestamp(seconds: Int64(verifier >> 32), nanoseconds: UInt32(verifier & 0xFFFF_FFFF) % 1_000_000_000)
                    return try nfs { () throws(FSError) in try fs.createExclusive(cred, dir.ino, op.name, mode: 0o644, verifier: stamp) }
                }
            }
        }
    }

    /// What of a CREATE's or MKDIR's attributes is set after the object is made: an owner
    /// or group only from root, as Linux nfsd does (clients send the caller's own ids, and
    /// a group would override the one a setgid directory gives).
    static func afterCreate(_ attributes: SetAttributes, _ cred: Credentials) -> SetAttributes {
        var rest = attributes
        if !cred.isRoot {
            rest.uid = nil
            rest.gid = nil
        }
        return rest
    }

    /// Runs `body` with the directory a handle names, or the failure to resolve it.
    func withDirectory(_ bytes: [UInt8], _ w: inout XDRWriter, _ body: (Target?, inout XDRWriter) -> Void) {
        switch resolvedDirectory(bytes) {
        case .success(let dir): body(dir, &w)
        case .failure(let status):
            w.status(status)
            w.wcc(before: nil, after: nil)
        }
    }

    func mkdir(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let op = try DirOp(&a)
        let attributes = try a.setAttributes()
        withDirectory(op.dir, &w) { dir, w in
            made(dir, &w) { dir throws(NFSStatus) -> Inode in
                if isReserved(dir, op.name) { throw .exist }
                let inode = try nfs { () throws(FSError) in try dir.fs.mkdir(cred, dir.ino, op.name, mode: attributes.mode ?? 0o755) }
                var rest = Self.afterCreate(attributes, cred)
                rest.mode = nil
                rest.size = nil
                guard rest != SetAttributes() else { return inode }
                return try nfs { () throws(FSError) in try dir.fs.setattr(cred, inode.ino, rest) }
            }
        }
    }

    func symlink(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let op = try DirOp(&a)
        _ = try a.setAttributes()
        let path = try a.name()
        withDirectory(op.dir, &w) { dir, w in
            made(dir, &w) { dir throws(NFSStatus) -> Inode in
                if isReserved(dir, op.name) { throw .exist }
                return try nfs { () throws(FSError) in try dir.fs.symlink(cred, dir.ino, op.name, target: path) }
            }
        }
    }

    func mknod(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let op = try DirOp(&a)
        let kind = try a.uint32()
        var attributes = SetAttributes()
        var rdev: UInt64 = 0
        let type: FileType?
        switch NFSFileType(rawValue: kind) {
        case .character, .block:
            attributes = try a.setAttributes()
            rdev = UInt64(try a.uint32()) << 32 | UInt64(try a.uint32())
            type = kind == NFSFileType.character.rawValue ? .characterDevice : .blockDevice
        case .socket, .fifo:
            attributes = try a.setAttributes()
            type = kind == NFSFileType.socket.rawValue ? .socket : .fifo
        case .regular, .directory, .symlink:
            type = nil
        case nil:
            throw XDRError("ftype3 \(kind)")
        }
        withDirectory(op.dir, &w) { dir, w in
            made(dir, &w) { dir throws(NFSStatus) -> Inode in
                guard let type else { throw .badtype }
                if isReserved(dir, op.name) { throw .exist }
                return try nfs { () throws(FSError) in
                    try dir.fs.mknod(cred, dir.ino, op.name, type: type, mode: attributes.mode ?? 0o644, rdev: rdev)
                }
            }
        }
    }

    // MARK: removing and moving names

    func remove(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter, directory: Bool) throws(XDRError) {
        let op = try DirOp(&a)
        var resolvedDir: Target?
        do throws(NFSStatus) {
            let dir = try target(op.dir)
            resolvedDir = dir
            try requireWritable(dir)
            if isReserved(dir, op.name) { throw .acces }
            let (_, observed) = try ChangeObserver.observing([dir.ino]) { () throws(NFSStatus) in
                try nfs { () throws(FSError) in
                    if directory { try dir.fs.rmdir(cred, dir.ino, op.name) } else { try dir.fs.unlink(cred, dir.ino, op.name) }
                }
            }
            w.status(.ok)
            wcc(&w, dir, observed)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: resolvedDir.flatMap { attributes($0) })
        }
    }

    func rename(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let from = try DirOp(&a)
        let to = try DirOp(&a)
        var resolvedSource: Target?
        var resolvedDestination: Target?
        do throws(NFSStatus) {
            let s = try target(from.dir)
            resolvedSource = s
            let d = try target(to.dir)
            resolvedDestination = d
            try requireWritable(s)
            try requireWritable(d)
            guard s.fs.dataset == d.fs.dataset else { throw .xdev }
            if isReserved(s, from.name) { throw .acces }
            if isReserved(d, to.name) { throw .exist }
            let (_, observed) = try ChangeObserver.observing([s.ino, d.ino]) { () throws(NFSStatus) in
                try nfs { () throws(FSError) in try s.fs.rename(cred, s.ino, from.name, d.ino, to.name) }
            }
            w.status(.ok)
            wcc(&w, s, observed)
            wcc(&w, d, observed)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: resolvedSource.flatMap { attributes($0) })
            w.wcc(before: nil, after: resolvedDestination.flatMap { attributes($0) })
        }
    }

    func link(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let file = try a.handleBytes()
        let op = try DirOp(&a)
        var resolvedObject: Target?
        var resolvedDir: Target?
        do throws(NFSStatus) {
            let o = try target(file)
            resolvedObject = o
            let d = try target(op.dir)
            resolvedDir = d
            try requireWritable(o)
            try requireWritable(d)
            guard o.fs.dataset == d.fs.dataset else { throw .xdev }
            if isReserved(d, op.name) { throw .exist }
            let (inode, observed) = try ChangeObserver.observing([o.ino, d.ino]) { () throws(NFSStatus) in
                try nfs { () throws(FSError) in try d.fs.link(cred, o.ino, d.ino, op.name) }
            }
            w.status(.ok)
            w.postOp(attributes(o.fs, inode))
            wcc(&w, d, observed)
        } catch {
            w.status(error)
            w.postOp(resolvedObject.flatMap { attributes($0) })
            w.wcc(before: nil, after: resolvedDir.flatMap { attributes($0) })
        }
    }
}
