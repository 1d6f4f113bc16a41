// NFS procedures on one file: GETATTR, SETATTR, ACCESS, READLINK, READ, WRITE, COMMIT,
// and the filesystem-wide FSSTAT, FSINFO and PATHCONF.

import FS

extension NFSProgram {
    enum Stable: UInt32 {
        case unstable = 0
        case dataSync = 1
        case fileSync = 2
    }

    /// NFS3ERR_ROFS for a snapshot, a read-only dataset or the `.snapshots` directory:
    /// checked before anything else a change could fail on.
    func requireWritable(_ t: Target) throws(NFSStatus) {
        if t.isSnapshots || !t.fs.isWritable { throw .rofs }
    }

    func getattr(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        do throws(NFSStatus) {
            let t = try target(fh)
            guard let attributes = known(t) else { throw .io }
            w.status(.ok)
            w.fattr(attributes)
        } catch {
            w.status(error)
        }
    }

    func setattr(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        var change = try a.setAttributes()
        change.ctimeGuard = try a.optional { r throws(XDRError) in try r.time() }
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            try requireWritable(t)
            let (_, observed) = try ChangeObserver.observing([t.ino]) { () throws(NFSStatus) in
                try nfs { () throws(FSError) in try t.fs.setattr(cred, t.ino, change) }
            }
            w.status(.ok)
            wcc(&w, t, observed)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: resolved.flatMap { attributes($0) })
        }
    }

    func access(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        let asked = try a.uint32()
        do throws(NFSStatus) {
            let t = try target(fh)
            guard let attributes = known(t) else { throw .io }
            let inode = attributes.inode
            let writable = !t.isSnapshots && t.fs.isWritable
            var granted: UInt32 = 0
            if inode.permits(cred, .read) { granted |= 0x01 }
            if inode.type == .directory && inode.permits(cred, .execute) { granted |= 0x02 }
            if writable && inode.permits(cred, .write) { granted |= inode.type == .directory ? 0x1C : 0x0C }
            if inode.type != .directory && inode.permits(cred, .execute) { granted |= 0x20 }
            w.status(.ok)
            w.postOp(attributes)
            w.uint32(asked & granted)
        } catch {
            w.status(error)
            w.postOp(nil)
        }
    }

    func readlink(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            if t.isSnapshots { throw .inval }
            let path = try nfs { () throws(FSError) in try t.fs.readlink(t.ino) }
            w.status(.ok)
            w.postOp(known(t))
            w.opaque(path)
        } catch {
            w.status(error)
            w.postOp(resolved.flatMap { attributes($0) })
        }
    }

    func read(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        let offset = try a.uint64()
        let count = Int(min(try a.uint32(), UInt32(Self.maxIO)))
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            if t.isSnapshots { throw .isdir }
            // The data goes straight into the reply; count, eof and the opaque's length
            // are filled in after it.
            let start = w.count
            w.status(.ok)
            w.postOp(known(t))
            let fields = w.count
            w.uint32(0)
            w.bool(false)
            w.uint32(0)
            let eof: Bool
            do {
                // The filesystem makes room for the data and the padding after it (so the
                // reply is not copied to grow), or hands over a range it read ahead, with
                // this header copied into its room, as the reply.
                eof = try w.appendInPlace { (bytes: inout [UInt8]) throws(NFSStatus) -> Bool in
                    try nfs { () throws(FSError) in try t.fs.read(cred, t.ino, offset: offset, count: count, appendingTo: &bytes) }
                }
            } catch {
                w.truncate(to: start)
                throw error
            }
            let length = UInt32(w.count - fields - 12)
            w.patch(fields, length)
            w.patch(fields + 4, eof ? 1 : 0)
            w.patch(fields + 8, length)
            w.pad()
        } catch {
            w.status(error)
            w.postOp(resolved.flatMap { attributes($0) })
        }
    }

    func write(_ a: inout XDRReader, _ cred: Credentials, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        let offset = try a.uint64()
        let count = try a.uint32()
        guard let stable = Stable(rawValue: try a.uint32()) else { throw XDRError("stable_how out of range") }
        let data = try a.opaqueRange(limit: Self.maxIO)
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            try requireWritable(t)
            guard count <= data.count else { throw .inval }
            let bytes = data.lowerBound..<(data.lowerBound + Int(count))
            // UNSTABLE is applied at once and made durable by COMMIT; the others are durable
            // before the reply (DATA_SYNC as FILE_SYNC: metadata is in the same batch). The
            // data is read where it lies in the call.
            let (_, observed) = try ChangeObserver.observing([t.ino]) { () throws(NFSStatus) in
                try nfs { () throws(FSError) in
                    let written: Result<Inode, FSError> = a.bytes.withUnsafeBytes { call in
                        Result { () throws(FSError) in
                            try t.fs.write(cred, t.ino, offset: offset, UnsafeRawBufferPointer(rebasing: call[bytes]), durable: stable != .unstable)
                        }
                    }
                    _ = try written.get()
                }
            }
            w.status(.ok)
            wcc(&w, t, observed)
            w.uint32(UInt32(bytes.count))
            w.uint32(stable == .unstable ? Stable.unstable.rawValue : Stable.fileSync.rawValue)
            w.uint64(writeVerifier)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: resolved.flatMap { attributes($0) })
        }
    }

    func commit(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        _ = try a.uint64()
        _ = try a.uint32()
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            if !t.isSnapshots { try nfs { () throws(FSError) in try t.fs.fsync(t.ino) } }
            w.status(.ok)
            w.wcc(before: nil, after: attributes(t))
            w.uint64(writeVerifier)
        } catch {
            w.status(error)
            w.wcc(before: nil, after: resolved.flatMap { attributes($0) })
        }
    }

    func fsstat(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        var resolved: Target?
        do throws(NFSStatus) {
            let t = try target(fh)
            resolved = t
            let stat = try nfs { () throws(FSError) in try t.fs.statfs() }
            w.status(.ok)
            w.postOp(known(t))
            w.uint64(stat.totalBytes)
            w.uint64(stat.freeBytes)
            w.uint64(t.fs.isWritable ? stat.freeBytes : 0)
            w.uint64(stat.totalInodes)
            w.uint64(stat.freeInodes)
            w.uint64(t.fs.isWritable ? stat.freeInodes : 0)
            w.uint32(0)  // invarsec: the figures change at any time
        } catch {
            w.status(error)
            w.postOp(resolved.flatMap { attributes($0) })
        }
    }

    func fsinfo(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        do throws(NFSStatus) {
            let t = try target(fh)
            w.status(.ok)
            w.postOp(known(t))
            let io = UInt32(Self.maxIO)
            let multiple = UInt32(t.fs.chunkSize)
            for value in [io, io, multiple, io, io, multiple, UInt32(64 << 10)] { w.uint32(value) }
            w.uint64(FSOptions.maxFileSize - 1)
            w.uint32(0)  // time_delta: nanoseconds are kept
            w.uint32(1)
            w.uint32(0x1B)  // FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME
        } catch {
            w.status(error)
            w.postOp(nil)
        }
    }

    func pathconf(_ a: inout XDRReader, _ w: inout XDRWriter) throws(XDRError) {
        let fh = try a.handleBytes()
        do throws(NFSStatus) {
            let t = try target(fh)
            w.status(.ok)
            w.postOp(known(t))
            w.uint32(UInt32.max - 1)  // linkmax
            w.uint32(UInt32(FSOptions.maxNameLength))
            w.bool(true)  // no_trunc: longer names are refused
            w.bool(true)  // chown_restricted
            w.bool(false)  // case_insensitive
            w.bool(true)  // case_preserving
        } catch {
            w.status(error)
            w.postOp(nil)
        }
    }
}
