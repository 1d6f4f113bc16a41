// POSIX cases: rename in every case.

import FS
import Testing

extension POSIXSuite {
    static func renameFiles(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let a = try fs.create(Users.root, root, n("a"), mode: 0o644)
        let b = try fs.create(Users.root, root, n("b"), mode: 0o644)
        try fs.write(Users.root, b.ino, offset: 0, randomBytes(100_000, seed: 2))
        try fs.rename(Users.root, root, n("a"), root, n("b"))
        #expect(try fs.lookup(Users.root, root, n("b")).ino == a.ino)
        expectErrno(.ENOENT) { _ = try fs.lookup(Users.root, root, n("a")) }
        expectErrno(.ESTALE, "the replaced file is gone") { _ = try fs.getattr(b.ino) }
        #expect(try fs.getattr(root).entryCount == 1)
        // Onto itself, and onto another name of the same inode: no-ops.
        try fs.rename(Users.root, root, n("b"), root, n("b"))
        _ = try fs.link(Users.root, a.ino, root, n("c"))
        try fs.rename(Users.root, root, n("b"), root, n("c"))
        #expect(try fs.lookup(Users.root, root, n("b")).ino == a.ino)
        #expect(try fs.lookup(Users.root, root, n("c")).ino == a.ino)
        #expect(try fs.getattr(a.ino).nlink == 2)
        // Across directories; a replaced hard link keeps its other name.
        let d = try fs.mkdir(Users.root, root, n("d"), mode: 0o755)
        let e = try fs.create(Users.root, d.ino, n("e"), mode: 0o644)
        _ = try fs.link(Users.root, e.ino, root, n("e2"))
        try fs.rename(Users.root, root, n("b"), d.ino, n("e"))
        #expect(try fs.lookup(Users.root, d.ino, n("e")).ino == a.ino)
        #expect(try fs.getattr(e.ino).nlink == 1)
        // A file over a directory and the reverse.
        _ = try fs.mkdir(Users.root, root, n("dir"), mode: 0o755)
        expectErrno(.EISDIR) { try fs.rename(Users.root, root, n("c"), root, n("dir")) }
        expectErrno(.ENOTDIR) { try fs.rename(Users.root, root, n("dir"), root, n("c")) }
        expectErrno(.ENOENT) { try fs.rename(Users.root, root, n("none"), root, n("x")) }
        expectErrno(.EINVAL) { try fs.rename(Users.root, root, n("."), root, n("x")) }
        expectErrno(.ENOTDIR) { try fs.rename(Users.root, a.ino, n("x"), root, n("y")) }
    }

    static func renameDirectories(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let a = try fs.mkdir(Users.root, root, n("a"), mode: 0o755)
        let b = try fs.mkdir(Users.root, root, n("b"), mode: 0o755)
        let sub = try fs.mkdir(Users.root, a.ino, n("sub"), mode: 0o755)
        let deep = try fs.mkdir(Users.root, sub.ino, n("deep"), mode: 0o755)
        // Into its own subtree, or onto itself through its subtree.
        expectErrno(.EINVAL) { try fs.rename(Users.root, root, n("a"), sub.ino, n("x")) }
        expectErrno(.EINVAL) { try fs.rename(Users.root, root, n("a"), deep.ino, n("x")) }
        expectErrno(.EINVAL) { try fs.rename(Users.root, root, n("a"), a.ino, n("x")) }
        // Move between parents: link counts and ".." follow.
        try fs.rename(Users.root, a.ino, n("sub"), b.ino, n("moved"))
        #expect(try fs.getattr(a.ino).nlink == 2)
        #expect(try fs.getattr(b.ino).nlink == 3)
        #expect(try fs.lookup(Users.root, sub.ino, n("..")).ino == b.ino)
        // Over an empty directory, then over a non-empty one.
        let empty = try fs.mkdir(Users.root, a.ino, n("empty"), mode: 0o755)
        try fs.rename(Users.root, b.ino, n("moved"), a.ino, n("empty"))
        expectErrno(.ESTALE) { _ = try fs.getattr(empty.ino) }
        #expect(try fs.lookup(Users.root, a.ino, n("empty")).ino == sub.ino)
        #expect(try fs.getattr(a.ino).nlink == 3 && fs.getattr(b.ino).nlink == 2)
        _ = try fs.create(Users.root, b.ino, n("f"), mode: 0o644)
        let full = try fs.mkdir(Users.root, root, n("full"), mode: 0o755)
        _ = try fs.create(Users.root, full.ino, n("g"), mode: 0o644)
        expectErrno(.ENOTEMPTY) { try fs.rename(Users.root, a.ino, n("empty"), root, n("full")) }
        // A directory over a non-empty one in the same parent.
        expectErrno(.ENOTEMPTY) { try fs.rename(Users.root, root, n("b"), root, n("a")) }
        // Same-directory rename of a directory keeps link counts.
        try fs.rename(Users.root, root, n("full"), root, n("full2"))
        #expect(try fs.getattr(root).nlink == 5)
        #expect(try fs.lookup(Users.root, root, n("full2")).ino == full.ino)
    }
}
