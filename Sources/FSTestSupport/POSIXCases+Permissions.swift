// POSIX cases: AUTH_SYS permission checks, the sticky bit, setgid directories, setattr.

import FS
import Testing

extension POSIXSuite {
    static func permissions(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let home = try fs.mkdir(Users.root, root, n("home"), mode: 0o755)
        try fs.setattr(Users.root, home.ino, SetAttributes(uid: 1000, gid: 1000))
        let secret = try fs.create(Users.alice, home.ino, n("secret"), mode: 0o600)
        #expect(secret.uid == 1000 && secret.gid == 1000)
        try fs.write(Users.alice, secret.ino, offset: 0, n("mine"))
        expectErrno(.EACCES, "other may not read") { _ = try fs.read(Users.bob, secret.ino, offset: 0, count: 4) }
        expectErrno(.EACCES, "other may not write") { _ = try fs.write(Users.bob, secret.ino, offset: 0, n("x")) }
        #expect(try fs.read(Users.root, secret.ino, offset: 0, count: 4).data == n("mine"), "root bypasses")
        expectErrno(.EACCES, "bob may not create in alice's directory") { _ = try fs.create(Users.bob, home.ino, n("b"), mode: 0o644) }
        expectErrno(.EACCES, "bob may not unlink in alice's directory") { try fs.unlink(Users.bob, home.ino, n("secret")) }
        // As on Linux, finding a name needs search permission only: a missing name is
        // ENOENT, and a rename onto the same file does nothing, before write is checked.
        expectErrno(.ENOENT, "a missing name is missing, writable or not") { try fs.unlink(Users.bob, home.ino, n("none")) }
        expectErrno(.ENOENT) { try fs.rename(Users.bob, home.ino, n("none"), home.ino, n("other")) }
        try fs.rename(Users.bob, home.ino, n("secret"), home.ino, n("secret"))
        expectErrno(.EACCES, "another name needs write permission") { try fs.rename(Users.bob, home.ino, n("secret"), home.ino, n("other")) }
        // Group bits, through a supplementary group.
        let shared = try fs.create(Users.alice, home.ino, n("shared"), mode: 0o640)
        #expect(try fs.read(Users.carol, shared.ino, offset: 0, count: 1).eof)
        expectErrno(.EACCES) { _ = try fs.write(Users.carol, shared.ino, offset: 0, n("x")) }
        expectErrno(.EACCES) { _ = try fs.read(Users.bob, shared.ino, offset: 0, count: 1) }
        // Search permission on the directory.
        try fs.setattr(Users.alice, home.ino, SetAttributes(mode: 0o700))
        expectErrno(.EACCES, "lookup needs search permission") { _ = try fs.lookup(Users.bob, home.ino, n("shared")) }
        expectErrno(.EACCES, "readdir needs read permission") { _ = try fs.readdir(Users.bob, home.ino, after: 0, limit: 10) }
        #expect(try fs.lookup(Users.root, home.ino, n("shared")).ino == shared.ino)
        #expect(try fs.access(Users.alice, shared.ino, [.read, .write]))
        #expect(try !fs.access(Users.bob, shared.ino, .read))
        // Root executes only what someone may execute.
        #expect(try !fs.access(Users.root, shared.ino, .execute))
        try fs.setattr(Users.alice, shared.ino, SetAttributes(mode: 0o610))
        #expect(try fs.access(Users.root, shared.ino, .execute))

        // Over a stateless protocol (NFS) the owner reads, writes and truncates a file
        // whatever its mode (a file created 0444 is still filled by its creator), and a
        // file one may execute may be read; nobody else gains anything, and local callers
        // keep the plain rules.
        var alice = Users.alice
        alice.statelessIO = true
        var bob = Users.bob
        bob.statelessIO = true
        var carol = Users.carol
        carol.statelessIO = true
        let sealed = try fs.create(Users.alice, home.ino, n("sealed"), mode: 0o444)
        try fs.write(alice, sealed.ino, offset: 0, n("filled"))
        try fs.setattr(alice, sealed.ino, SetAttributes(size: 3))
        try fs.setattr(Users.alice, sealed.ino, SetAttributes(mode: 0o000))
        #expect(try fs.read(alice, sealed.ino, offset: 0, count: 8).data == n("fil"))
        expectErrno(.EACCES, "the owner's allowance is only for stateless calls") { _ = try fs.write(Users.alice, sealed.ino, offset: 0, n("x")) }
        expectErrno(.EACCES, "the owner's allowance is only for stateless calls") { _ = try fs.read(Users.alice, sealed.ino, offset: 0, count: 1) }
        expectErrno(.EACCES, "nobody else gains") { _ = try fs.write(carol, sealed.ino, offset: 0, n("x")) }
        try fs.setattr(Users.alice, sealed.ino, SetAttributes(mode: 0o751))
        #expect(try fs.read(bob, sealed.ino, offset: 0, count: 8).data == n("fil"), "execute permits a read")
        expectErrno(.EACCES, "but not a write") { _ = try fs.write(bob, sealed.ino, offset: 0, n("x")) }
        expectErrno(.EACCES, "and only for stateless calls") { _ = try fs.read(Users.bob, sealed.ino, offset: 0, count: 1) }
        try fs.setattr(Users.alice, sealed.ino, SetAttributes(mode: 0o750))
        expectErrno(.EACCES, "without execute, no read") { _ = try fs.read(bob, sealed.ino, offset: 0, count: 1) }
    }

    static func stickyAndSetgid(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let tmp = try fs.mkdir(Users.root, root, n("tmp"), mode: 0o1777)
        #expect(tmp.mode == 0o1777)
        _ = try fs.create(Users.alice, tmp.ino, n("alice"), mode: 0o666)
        expectErrno(.EPERM, "sticky: bob may not remove alice's file") { try fs.unlink(Users.bob, tmp.ino, n("alice")) }
        expectErrno(.EPERM, "sticky: bob may not rename alice's file") { try fs.rename(Users.bob, tmp.ino, n("alice"), tmp.ino, n("b")) }
        _ = try fs.create(Users.bob, tmp.ino, n("bob"), mode: 0o666)
        expectErrno(.EPERM, "sticky: bob may not replace alice's file") { try fs.rename(Users.bob, tmp.ino, n("bob"), tmp.ino, n("alice")) }
        try fs.rename(Users.bob, tmp.ino, n("bob"), tmp.ino, n("bob2"))
        try fs.unlink(Users.alice, tmp.ino, n("alice"))
        try fs.unlink(Users.root, tmp.ino, n("bob2"))

        // mkdir ignores setuid and setgid in the requested mode (Linux vfs_mkdir): chmod sets it.
        let project = try fs.mkdir(Users.root, root, n("project"), mode: 0o6777)
        #expect(project.mode == 0o777, "mkdir strips setuid and setgid")
        try fs.setattr(Users.root, project.ino, SetAttributes(mode: 0o2777, gid: 500))
        let file = try fs.create(Users.alice, project.ino, n("f"), mode: 0o644)
        #expect(file.gid == 500, "a setgid directory gives new files its group")
        let sub = try fs.mkdir(Users.alice, project.ino, n("sub"), mode: 0o755)
        #expect(sub.gid == 500 && sub.mode & 0o2000 != 0, "and new directories its group and setgid bit")
        let subSetuid = try fs.mkdir(Users.alice, project.ino, n("sub2"), mode: 0o4755)
        #expect(subSetuid.mode == 0o2755, "setgid inherited, setuid from the mode dropped")
        // chmod by the owner outside the directory's group clears setgid (Linux setattr_copy).
        #expect(try fs.setattr(Users.alice, sub.ino, SetAttributes(mode: 0o2775)).mode == 0o775,
                "alice is not in group 500: setgid cleared on a directory too")
        let aliceIn500 = Credentials(uid: 1000, gid: 1000, groups: [500])
        #expect(try fs.setattr(aliceIn500, sub.ino, SetAttributes(mode: 0o2775)).mode == 0o2775)
        let plain = try fs.create(Users.alice, root, n("plain"), mode: 0o2755)
        #expect(plain.gid == 1000 && plain.mode & 0o2000 != 0, "a member keeps setgid outside setgid directories")
        let notMember = try fs.create(Users.alice, project.ino, n("g"), mode: 0o2755)
        #expect(notMember.mode & 0o2000 == 0, "setgid is dropped when the creator is not in the group")
    }

    static func setattrRules(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let dir = try fs.mkdir(Users.root, root, n("d"), mode: 0o777)
        let file = try fs.create(Users.alice, dir.ino, n("f"), mode: 0o644)
        expectErrno(.EPERM, "chmod by another user") { try fs.setattr(Users.bob, file.ino, SetAttributes(mode: 0o777)) }
        expectErrno(.EPERM, "chown by a user") { try fs.setattr(Users.alice, file.ino, SetAttributes(uid: 1001)) }
        expectErrno(.EPERM, "chgrp to a group alice is not in") { try fs.setattr(Users.alice, file.ino, SetAttributes(gid: 1001)) }
        let aliceInGroups = Credentials(uid: 1000, gid: 1000, groups: [77])
        #expect(try fs.setattr(aliceInGroups, file.ino, SetAttributes(gid: 77)).gid == 77)
        #expect(try fs.setattr(Users.alice, file.ino, SetAttributes(mode: 0o4755)).mode == 0o4755)
        let chowned = try fs.setattr(Users.root, file.ino, SetAttributes(uid: 1001))
        #expect(chowned.uid == 1001 && chowned.mode & 0o4000 == 0, "chown clears setuid")
        let stamp = Timestamp(seconds: 1_234_567_890, nanoseconds: 123_456_789)
        expectErrno(.EPERM, "setting explicit times needs ownership") {
            try fs.setattr(Users.alice, file.ino, SetAttributes(atime: .set(stamp)))
        }
        let timed = try fs.setattr(Users.bob, file.ino, SetAttributes(atime: .set(stamp), mtime: .set(stamp)))
        #expect(timed.atime == stamp && timed.mtime == stamp && timed.ctime > stamp)
        #expect(try fs.getattr(file.ino).mtime.nanoseconds == 123_456_789)
        expectErrno(.EACCES, "set to now needs write access") { try fs.setattr(Users.alice, file.ino, SetAttributes(mtime: .now)) }
        try fs.setattr(Users.bob, file.ino, SetAttributes(mode: 0o666))
        #expect(try fs.setattr(Users.alice, file.ino, SetAttributes(mtime: .now)).mtime > stamp)
        expectErrno(.EISDIR) { try fs.setattr(Users.root, dir.ino, SetAttributes(size: 0)) }
        let link = try fs.symlink(Users.root, root, n("l"), target: n("t"))
        expectErrno(.EINVAL) { try fs.setattr(Users.root, link.ino, SetAttributes(size: 0)) }
        expectErrno(.EFBIG) { try fs.setattr(Users.root, file.ino, SetAttributes(size: FSOptions.maxFileSize + 1)) }
        #expect(try fs.setattr(Users.root, file.ino, SetAttributes(size: 10)).size == 10)
        // A truncate by a non-root user clears setuid, and setgid with group execute, as
        // a write does; by root not.
        try fs.setattr(Users.root, file.ino, SetAttributes(gid: 1001))
        try fs.setattr(Users.root, file.ino, SetAttributes(mode: 0o6777))
        #expect(try fs.setattr(Users.root, file.ino, SetAttributes(size: 5)).mode == 0o6777, "root keeps them")
        #expect(try fs.setattr(Users.alice, file.ino, SetAttributes(size: 3)).mode == 0o777, "a user's truncate clears them")
        try fs.setattr(Users.root, file.ino, SetAttributes(mode: 0o6767))
        #expect(try fs.setattr(Users.alice, file.ino, SetAttributes(size: 2)).mode == 0o2767, "setgid without group execute stays")
        // Setting an owner or group revokes setuid (and setgid with group execute) even
        // from root, even to the same value, even with a mode in the same call.
        #expect(try fs.setattr(Users.root, file.ino, SetAttributes(mode: 0o6777, gid: 1001)).mode == 0o777)
        try fs.setattr(Users.root, file.ino, SetAttributes(mode: 0o4755))
        #expect(try fs.setattr(Users.bob, file.ino, SetAttributes(uid: 1001)).mode == 0o755, "the owner's own uid")
        // Setting the owner or group it has is still the owner's call; nothing asked for
        // changes nothing, not even ctime.
        expectErrno(.EPERM, "chown to the same owner by another user") { try fs.setattr(Users.alice, file.ino, SetAttributes(uid: 1001)) }
        expectErrno(.EPERM, "chgrp to the same group by another user") { try fs.setattr(Users.alice, file.ino, SetAttributes(gid: 1001)) }
        let before = try fs.getattr(file.ino)
        #expect(try fs.setattr(Users.alice, file.ino, SetAttributes()) == before)
        #expect(try fs.getattr(file.ino).ctime == before.ctime)
    }
}

extension POSIXSuite {
    static func timestamps(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        let old = Timestamp(seconds: 100, nanoseconds: 5)
        func age(_ ino: UInt64) throws { try fs.setattr(.root, ino, SetAttributes(atime: .set(old), mtime: .set(old))) }
        let d = try fs.mkdir(.root, root, n("d"), mode: 0o777)
        try age(d.ino)
        let file = try fs.create(Users.alice, d.ino, n("f"), mode: 0o4755)
        #expect(try fs.getattr(d.ino).mtime > old, "create moves the parent's mtime")
        try age(file.ino)
        let ctimeBefore = try fs.getattr(file.ino).ctime
        try fs.write(Users.alice, file.ino, offset: 0, n("x"))
        let written = try fs.getattr(file.ino)
        #expect(written.mtime > old && written.ctime >= ctimeBefore && written.atime == old, "write moves mtime and ctime, not atime")
        #expect(written.mode == 0o755, "a write by a non-root user clears setuid")
        try age(file.ino)
        let chmodded = try fs.setattr(Users.alice, file.ino, SetAttributes(mode: 0o644))
        #expect(chmodded.mtime == old && chmodded.ctime > old, "setattr moves ctime only")
        let e = try fs.mkdir(.root, root, n("e"), mode: 0o777)
        try age(d.ino)
        try age(e.ino)
        try fs.rename(.root, d.ino, n("f"), e.ino, n("g"))
        #expect(try fs.getattr(d.ino).mtime > old && fs.getattr(e.ino).mtime > old, "rename moves both parents' mtime")
        let linked = try fs.link(.root, file.ino, d.ino, n("h"))
        #expect(linked.ctime > chmodded.ctime, "link moves the file's ctime")
        try age(e.ino)
        try fs.unlink(.root, e.ino, n("g"))
        #expect(try fs.getattr(e.ino).mtime > old, "unlink moves the parent's mtime")
        #expect(try fs.getattr(file.ino).ctime > linked.ctime, "unlink moves the ctime of a file that keeps a name")
    }
}
