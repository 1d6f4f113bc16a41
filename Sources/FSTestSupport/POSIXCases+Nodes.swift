// POSIX cases: creating and removing names of every file type.

import FS
import Testing

extension POSIXSuite {
    static func createAndLookup(_ f: FSFixture) throws {
        let fs = f.fs
        let file = try fs.create(Users.root, FileSystem.rootInode, n("a"), mode: 0o644)
        #expect(file.type == .regular && file.mode == 0o644 && file.nlink == 1 && file.size == 0)
        #expect(file.uid == 0 && file.gid == 0 && file.ino > FileSystem.rootInode)
        #expect(try fs.lookup(Users.root, FileSystem.rootInode, n("a")) == file)
        #expect(try fs.getattr(file.ino) == file)
        let root = try fs.getattr(FileSystem.rootInode)
        #expect(root.mtime == file.mtime && root.entryCount == 1)
        let userFile = try fs.create(Users.root, FileSystem.rootInode, n("b"), mode: 0o600)
        #expect(userFile.ino > file.ino)
        try fs.unlink(Users.root, FileSystem.rootInode, n("b"))
        let again = try fs.create(Users.root, FileSystem.rootInode, n("b"), mode: 0o600)
        #expect(again.ino > userFile.ino, "inode numbers are never reused")
        expectErrno(.ESTALE, "getattr of a deleted inode") { _ = try fs.getattr(userFile.ino) }
        expectErrno(.ENOENT) { _ = try fs.lookup(Users.root, FileSystem.rootInode, n("missing")) }
        #expect(try fs.lookup(Users.root, FileSystem.rootInode, n(".")).ino == FileSystem.rootInode)
        #expect(try fs.lookup(Users.root, FileSystem.rootInode, n("..")).ino == FileSystem.rootInode)
    }

    static func exclusiveCreate(_ f: FSFixture) throws {
        let fs = f.fs
        let file = try fs.create(Users.root, FileSystem.rootInode, n("x"), mode: 0o644, exclusive: true)
        expectErrno(.EEXIST) { _ = try fs.create(Users.root, FileSystem.rootInode, n("x"), mode: 0o644, exclusive: true) }
        #expect(try fs.create(Users.root, FileSystem.rootInode, n("x"), mode: 0o600).ino == file.ino)
        _ = try fs.mkdir(Users.root, FileSystem.rootInode, n("d"), mode: 0o755)
        expectErrno(.EISDIR) { _ = try fs.create(Users.root, FileSystem.rootInode, n("d"), mode: 0o644) }
        expectErrno(.EEXIST) { _ = try fs.mkdir(Users.root, FileSystem.rootInode, n("x"), mode: 0o755) }
        expectErrno(.EEXIST) { _ = try fs.symlink(Users.root, FileSystem.rootInode, n("d"), target: n("t")) }
        // Opening an existing file with O_CREAT needs only search permission on the
        // directory; creating a new name there still needs write permission.
        let locked = try fs.mkdir(Users.root, FileSystem.rootInode, n("ro"), mode: 0o755)
        let inside = try fs.create(Users.root, locked.ino, n("f"), mode: 0o666)
        #expect(try fs.create(Users.alice, locked.ino, n("f"), mode: 0o644).ino == inside.ino)
        expectErrno(.EEXIST, "exclusive create of an existing name") {
            _ = try fs.create(Users.alice, locked.ino, n("f"), mode: 0o644, exclusive: true)
        }
        expectErrno(.EACCES, "a new name needs write permission") { _ = try fs.create(Users.alice, locked.ino, n("g"), mode: 0o644) }
        try fs.setattr(Users.root, locked.ino, SetAttributes(mode: 0o700))
        expectErrno(.EACCES, "even an existing name needs search permission") {
            _ = try fs.create(Users.alice, locked.ino, n("f"), mode: 0o644)
        }
    }

    static func names(_ f: FSFixture) throws {
        let fs = f.fs
        let longest = [UInt8](repeating: UInt8(ascii: "n"), count: 255)
        _ = try fs.create(Users.root, FileSystem.rootInode, longest, mode: 0o644)
        #expect(try fs.lookup(Users.root, FileSystem.rootInode, longest).type == .regular)
        expectErrno(.ENAMETOOLONG) { _ = try fs.create(Users.root, FileSystem.rootInode, longest + [0x6E], mode: 0o644) }
        expectErrno(.ENAMETOOLONG) { _ = try fs.lookup(Users.root, FileSystem.rootInode, longest + [0x6E]) }
        expectErrno(.EINVAL) { _ = try fs.create(Users.root, FileSystem.rootInode, [], mode: 0o644) }
        expectErrno(.EINVAL) { _ = try fs.create(Users.root, FileSystem.rootInode, n("a/b"), mode: 0o644) }
        expectErrno(.EINVAL) { _ = try fs.create(Users.root, FileSystem.rootInode, [0x61, 0, 0x62], mode: 0o644) }
        expectErrno(.EEXIST) { _ = try fs.create(Users.root, FileSystem.rootInode, n("."), mode: 0o644) }
        expectErrno(.EEXIST) { _ = try fs.mkdir(Users.root, FileSystem.rootInode, n(".."), mode: 0o755) }
        // Names with 0xFF bytes, and names that prefix each other, stay distinct.
        let odd: [[UInt8]] = [[0xFF], [0xFF, 0xFF], [0x61], [0x61, 0xFF], [0x61, 0x01], [0x01], [0xFE, 0xFF, 0x80]]
        for name in odd { _ = try fs.create(Users.root, FileSystem.rootInode, name, mode: 0o644) }
        let listed = try fs.readdir(Users.root, FileSystem.rootInode, after: 0, limit: 100).entries.map(\.name)
        #expect(Set(listed) == Set(odd + [longest]))
        for name in odd { #expect(try fs.lookup(Users.root, FileSystem.rootInode, name).type == .regular) }
        try fs.unlink(Users.root, FileSystem.rootInode, [0x61])
        #expect(try fs.lookup(Users.root, FileSystem.rootInode, [0x61, 0xFF]).type == .regular)
    }

    static func mkdirRmdir(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let d = try fs.mkdir(Users.root, root, n("d"), mode: 0o755)
        #expect(d.nlink == 2 && d.type == .directory && d.entryCount == 0)
        #expect(try fs.getattr(root).nlink == 3)
        let sub = try fs.mkdir(Users.root, d.ino, n("sub"), mode: 0o700)
        #expect(try fs.getattr(d.ino).nlink == 3)
        #expect(try fs.lookup(Users.root, sub.ino, n("..")).ino == d.ino)
        _ = try fs.create(Users.root, d.ino, n("file"), mode: 0o644)
        expectErrno(.ENOTEMPTY) { try fs.rmdir(Users.root, root, n("d")) }
        expectErrno(.ENOTDIR) { try fs.rmdir(Users.root, d.ino, n("file")) }
        expectErrno(.EISDIR) { try fs.unlink(Users.root, d.ino, n("sub")) }
        expectErrno(.EINVAL) { try fs.rmdir(Users.root, d.ino, n(".")) }
        expectErrno(.ENOTEMPTY) { try fs.rmdir(Users.root, d.ino, n("..")) }
        expectErrno(.ENOENT) { try fs.rmdir(Users.root, d.ino, n("none")) }
        expectErrno(.ENOTDIR) { _ = try fs.mkdir(Users.root, try fs.lookup(Users.root, d.ino, n("file")).ino, n("x"), mode: 0o755) }
        try fs.rmdir(Users.root, d.ino, n("sub"))
        #expect(try fs.getattr(d.ino).nlink == 2)
        try fs.unlink(Users.root, d.ino, n("file"))
        try fs.rmdir(Users.root, root, n("d"))
        #expect(try fs.getattr(root).nlink == 2)
        expectErrno(.ESTALE) { _ = try fs.getattr(d.ino) }
    }

    static func symlinks(_ f: FSFixture) throws {
        let fs = f.fs
        let target = n("../some/where with spaces")
        let link = try fs.symlink(Users.alice, FileSystem.rootInode, n("l"), target: target)
        #expect(link.type == .symlink && link.size == UInt64(target.count) && link.uid == 1000)
        #expect(try fs.readlink(link.ino) == target)
        let file = try fs.create(Users.root, FileSystem.rootInode, n("f"), mode: 0o644)
        expectErrno(.EINVAL) { _ = try fs.readlink(file.ino) }
        expectErrno(.EINVAL) { _ = try fs.symlink(Users.root, FileSystem.rootInode, n("e"), target: []) }
        expectErrno(.ENAMETOOLONG) {
            _ = try fs.symlink(Users.root, FileSystem.rootInode, n("e"), target: [UInt8](repeating: 0x61, count: 4097))
        }
        expectErrno(.EINVAL) { _ = try fs.read(Users.root, link.ino, offset: 0, count: 10) }
        try fs.unlink(Users.root, FileSystem.rootInode, n("l"))
    }

    static func mknod(_ f: FSFixture) throws {
        let fs = f.fs
        let fifo = try fs.mknod(Users.alice, FileSystem.rootInode, n("fifo"), type: .fifo, mode: 0o644)
        let sock = try fs.mknod(Users.alice, FileSystem.rootInode, n("sock"), type: .socket, mode: 0o644)
        #expect(fifo.type == .fifo && sock.type == .socket)
        expectErrno(.EPERM) { _ = try fs.mknod(Users.alice, FileSystem.rootInode, n("c"), type: .characterDevice, mode: 0o644, rdev: 1) }
        let dev = try fs.mknod(Users.root, FileSystem.rootInode, n("c"), type: .characterDevice, mode: 0o600, rdev: 5 << 32 | 1)
        #expect(try fs.getattr(dev.ino).rdev == 5 << 32 | 1)
        let block = try fs.mknod(Users.root, FileSystem.rootInode, n("b"), type: .blockDevice, mode: 0o600, rdev: 8)
        #expect(block.type == .blockDevice)
        expectErrno(.EINVAL) { _ = try fs.mknod(Users.root, FileSystem.rootInode, n("r"), type: .regular, mode: 0o600) }
        expectErrno(.EINVAL) { _ = try fs.write(Users.root, fifo.ino, offset: 0, [1]) }
        try fs.unlink(Users.root, FileSystem.rootInode, n("fifo"))
    }

    static func hardLinks(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let file = try fs.create(Users.root, root, n("a"), mode: 0o644)
        try fs.write(Users.root, file.ino, offset: 0, n("hello"))
        let d = try fs.mkdir(Users.root, root, n("d"), mode: 0o755)
        let linked = try fs.link(Users.root, file.ino, d.ino, n("b"))
        #expect(linked.nlink == 2 && linked.ctime >= file.ctime)
        #expect(try fs.lookup(Users.root, d.ino, n("b")).ino == file.ino)
        expectErrno(.EEXIST) { _ = try fs.link(Users.root, file.ino, d.ino, n("b")) }
        expectErrno(.EPERM) { _ = try fs.link(Users.root, d.ino, root, n("dirlink")) }
        expectErrno(.ENOTDIR) { _ = try fs.link(Users.root, d.ino, file.ino, n("x")) }
        try fs.unlink(Users.root, root, n("a"))
        #expect(try fs.getattr(file.ino).nlink == 1)
        #expect(try fs.read(Users.root, file.ino, offset: 0, count: 100).data == n("hello"))
        try fs.unlink(Users.root, d.ino, n("b"))
        expectErrno(.ESTALE) { _ = try fs.getattr(file.ino) }
    }

    static func unlink(_ f: FSFixture) throws {
        let fs = f.fs
        expectErrno(.ENOENT) { try fs.unlink(Users.root, FileSystem.rootInode, n("none")) }
        let file = try fs.create(Users.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(Users.root, file.ino, offset: 0, randomBytes(200_000, seed: 1))
        expectErrno(.ENOTDIR) { try fs.unlink(Users.root, file.ino, n("x")) }
        try fs.unlink(Users.root, FileSystem.rootInode, n("f"))
        expectErrno(.ENOENT) { _ = try fs.lookup(Users.root, FileSystem.rootInode, n("f")) }
        #expect(try fs.getattr(FileSystem.rootInode).entryCount == 0)
    }
}
