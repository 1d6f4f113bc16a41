// The MOUNT version 3 program (100005, RFC 1813 appendix I): NULL, MNT, DUMP, UMNT,
// UMNTALL and EXPORT, served on the NFS port so clients need no portmapper.
//
// Exports: "/" is the default dataset, "/NAME" a dataset (nested: "/a/b"), "/NAME@SNAP"
// a snapshot. MNT takes the longest dataset name that prefixes the path and walks the
// rest of it inside that dataset.

import FS
import Engine
import Synchronization

final class MountProgram: Sendable {
    static let program: UInt32 = 100_005
    static let version: UInt32 = 3
    static let maxPath = 1024
    /// What the mount list (DUMP) holds at most: entries, and bytes of machine names and
    /// paths, so a DUMP reply stays small whatever clients send (a machine name is up to
    /// 255 bytes, a path up to 1,024, and "/", "//", ... all mount the root). Mounts past
    /// either are served but not listed.
    static let maxListed = 1_000
    static let maxListedBytes = 64 << 10

    enum Status: UInt32, Error {
        case ok = 0
        case perm = 1
        case noent = 2
        case io = 5
        case acces = 13
        case notdir = 20
        case inval = 22
        case nametoolong = 63
    }

    let nfs: NFSProgram
    /// (client machine, path) of the mounts clients told us about, for DUMP.
    private let mounts = Locked<[(String, String)]>([])

    init(nfs: NFSProgram) {
        self.nfs = nfs
    }

    var pool: Pool { nfs.pool }

    /// Appends the result body of `procedure` to `w`; false when there is no such procedure.
    func call(_ procedure: UInt32, _ args: inout XDRReader, _ cred: Credentials, machine: String, into w: inout XDRWriter) throws(XDRError) -> Bool {
        switch procedure {
        case 0:
            break
        case 1:
            let path = try args.opaque(limit: Self.maxPath)
            switch mount(path, cred) {
            case .success(let handle):
                w.uint32(Status.ok.rawValue)
                w.handle(handle)
                w.uint32(1)
                w.uint32(RPC.Flavor.authSys.rawValue)
                let text = String(decoding: path, as: UTF8.self)
                mounts.withLock { list in
                    guard list.count < Self.maxListed, !list.contains(where: { $0 == (machine, text) }) else { return }
                    let bytes = list.reduce(machine.utf8.count + text.utf8.count) { $0 + $1.0.utf8.count + $1.1.utf8.count }
                    if bytes <= Self.maxListedBytes { list.append((machine, text)) }
                }
            case .failure(let status):
                w.uint32(status.rawValue)
            }
        case 2:
            for (machine, path) in mounts.withLock({ $0 }) {
                w.bool(true)
                w.opaque(Array(machine.utf8))
                w.opaque(Array(path.utf8))
            }
            w.bool(false)
        case 3:
            let text = String(decoding: try args.opaque(limit: Self.maxPath), as: UTF8.self)
            mounts.withLock { $0.removeAll { $0 == (machine, text) } }
        case 4:
            mounts.withLock { $0.removeAll { $0.0 == machine } }
        case 5:
            for name in exports() {
                w.bool(true)
                w.opaque(Array(name.utf8))
                w.bool(false)  // no group restrictions
            }
            w.bool(false)
        default:
            return false
        }
        return true
    }

    /// Every dataset and snapshot as an export path; the default dataset as "/" (not
    /// twice: libnfs mounts each export nested under the one it mounted).
    func exports() -> [String] {
        var names = ["/"]
        if let datasets = try? pool.listDatasets(used: false) { names += datasets.filter { !$0.isDefault }.map { "/" + $0.name } }
        if let snapshots = try? pool.listSnapshots(used: false) { names += snapshots.map { "/" + $0.name } }
        return names
    }

    /// The handle of `path`: the longest dataset (or snapshot) name prefixing it, then the
    /// rest walked inside, as `cred`.
    func mount(_ path: [UInt8], _ cred: Credentials) -> Result<NFSFileHandle, Status> {
        // An empty path is the root (libnfs's tools send one for a file at the top).
        guard let text = String(validating: path, as: UTF8.self), text.isEmpty || text.hasPrefix("/"), !text.contains("\0")
        else { return .failure(.inval) }
        let parts = text.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        var fs: FileSystem?
        var used = 0
        for count in stride(from: parts.count, through: 1, by: -1) {
            if let id = try? pool.resolve(parts[0..<count].joined(separator: "/")), let found = try? pool.filesystem(id) {
                fs = found
                used = count
                break
            }
        }
        if fs == nil { fs = try? pool.defaultFilesystem() }
        guard let fs else { return .failure(.io) }
        do throws(FSError) {
            var inode = try fs.getattr(fs.root)
            for part in parts[used...] {
                guard inode.type == .directory else { return .failure(.notdir) }
                inode = try fs.lookup(cred, inode.ino, Array(part.utf8))
            }
            guard inode.type == .directory else { return .failure(.notdir) }
            return .success(nfs.handle(fs, inode))
        } catch {
            switch error.code {
            case .ENOENT, .ESTALE: return .failure(.noent)
            case .EACCES, .EPERM: return .failure(.acces)
            case .ENOTDIR: return .failure(.notdir)
            case .ENAMETOOLONG: return .failure(.nametoolong)
            case .EINVAL: return .failure(.inval)
            default: return .failure(.io)
            }
        }
    }
}
