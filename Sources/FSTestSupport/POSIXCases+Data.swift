// POSIX cases: file data, bad input, readdir cookies, statfs, reopen, relatime,
// compression and reclaim.

import Engine
import KVTestSupport
import FS
import Testing

extension POSIXSuite {
    static func readWrite(_ f: FSFixture) throws {
        let fs = f.fs
        let cs = fs.chunkSize
        let file = try fs.create(Users.root, FileSystem.rootInode, n("f"), mode: 0o644)
        #expect(try fs.read(Users.root, file.ino, offset: 0, count: 10) == ReadResult(data: [], eof: true))
        let tail = randomBytes(100, seed: 3)
        let written = try fs.write(Users.root, file.ino, offset: UInt64(3 * cs + 7), tail)
        #expect(written.size == UInt64(3 * cs + 107))
        let all = try fs.read(Users.root, file.ino, offset: 0, count: 4 * cs)
        #expect(all.eof && all.data.count == 3 * cs + 107)
        #expect(all.data[0..<(3 * cs + 7)].allSatisfy { $0 == 0 }, "a hole reads as zeros")
        #expect(Array(all.data[(3 * cs + 7)...]) == tail)
        let middle = try fs.read(Users.root, file.ino, offset: UInt64(3 * cs), count: 10)
        #expect(!middle.eof && middle.data == [UInt8](repeating: 0, count: 7) + tail[0..<3])
        #expect(try fs.read(Users.root, file.ino, offset: 1 << 40, count: 10) == ReadResult(data: [], eof: true))
        try fs.write(Users.root, file.ino, offset: 1, n("abc"), durable: true)
        #expect(try fs.read(Users.root, file.ino, offset: 0, count: 5).data == [0] + n("abc") + [0])
        try fs.fsync(file.ino)
        #expect(try fs.write(Users.root, file.ino, offset: 0, []).size == UInt64(3 * cs + 107))
    }

    static func badInput(_ f: FSFixture) throws {
        let fs = f.fs
        let file = try fs.create(Users.root, FileSystem.rootInode, n("f"), mode: 0o644)
        expectErrno(.EFBIG) { _ = try fs.write(Users.root, file.ino, offset: FSOptions.maxFileSize, [1]) }
        expectErrno(.EFBIG) { _ = try fs.write(Users.root, file.ino, offset: UInt64.max, [1]) }
        expectErrno(.EISDIR) { _ = try fs.read(Users.root, FileSystem.rootInode, offset: 0, count: 1) }
        expectErrno(.EISDIR) { _ = try fs.write(Users.root, FileSystem.rootInode, offset: 0, [1]) }
        expectErrno(.ENOTDIR) { _ = try fs.readdir(Users.root, file.ino, after: 0, limit: 10) }
        expectErrno(.ENOTDIR) { _ = try fs.lookup(Users.root, file.ino, n("x")) }
        expectErrno(.ESTALE) { _ = try fs.getattr(999_999) }
        expectErrno(.ESTALE) { _ = try fs.read(Users.root, 999_999, offset: 0, count: 1) }
        expectErrno(.ESTALE) { _ = try fs.create(Users.root, 999_999, n("x"), mode: 0o644) }
        expectErrno(.EINVAL) { _ = try fs.read(Users.root, file.ino, offset: 0, count: -1) }
        expectErrno(.EINVAL) { _ = try fs.readdir(Users.root, FileSystem.rootInode, after: 0, limit: 0) }
        expectErrno(.EINVAL) { _ = try fs.readlink(FileSystem.rootInode) }
    }

    static func readdirCookies(_ f: FSFixture) throws {
        let fs = f.fs
        let root = FileSystem.rootInode
        for i in 0..<100 { _ = try fs.create(Users.root, root, n("f\(i)"), mode: 0o644) }
        var seen: [[UInt8]] = []
        var cookie: UInt64 = 0
        var page = 0
        while true {
            let result = try fs.readdir(Users.root, root, after: cookie, limit: 7)
            seen += result.entries.map(\.name)
            if let last = result.entries.last { cookie = last.cookie }
            // Between pages: remove one entry not yet listed, add new ones, rename one.
            page += 1
            try? fs.unlink(Users.root, root, n("f\(99 - page)"))
            _ = try fs.create(Users.root, root, n("new\(page)"), mode: 0o644)
            if result.eof { break }
        }
        let survivors = (0..<100).filter { $0 < 99 - page }.map { n("f\($0)") }
        for name in survivors { #expect(seen.filter { $0 == name }.count == 1, "\(String(decoding: name, as: UTF8.self)) listed once") }
        #expect(Set(seen).count == seen.count, "no entry repeats")
        #expect(try fs.readdir(Users.root, root, after: UInt64.max, limit: 5).eof)
    }

    static func statfsAccounting(_ f: FSFixture) throws {
        let fs = f.fs
        let cs = UInt64(fs.chunkSize)
        // Used bytes are stored bytes: a chunk of n incompressible bytes costs n plus its header.
        let chunk = { (bytes: UInt64) in bytes + UInt64(FileSystem.chunkHeaderSize) }
        #expect(try fs.statfs().usedBytes == 0 && fs.statfs().usedInodes == 1)
        let a = try fs.create(Users.root, FileSystem.rootInode, n("a"), mode: 0o644)
        try fs.write(Users.root, a.ino, offset: 0, randomBytes(Int(cs) * 3 + 1, seed: 4))
        #expect(try fs.statfs().usedBytes == 3 * chunk(cs) + chunk(1) && fs.statfs().usedInodes == 2)
        try fs.write(Users.root, a.ino, offset: 10 * cs, [1])
        #expect(try fs.statfs().usedBytes == 3 * chunk(cs) + 2 * chunk(1), "a hole takes no space")
        try fs.setattr(Users.root, a.ino, SetAttributes(size: cs + 5))
        try fs.pool.reclaimNow()
        #expect(try fs.statfs().usedBytes == chunk(cs) + chunk(5), "truncate frees the chunks past the size")
        _ = try fs.mkdir(Users.root, FileSystem.rootInode, n("d"), mode: 0o755)
        #expect(try fs.statfs().usedInodes == 3)
        try fs.unlink(Users.root, FileSystem.rootInode, n("a"))
        #expect(try fs.statfs().usedInodes == 2)
        try fs.pool.reclaimNow()
        #expect(try fs.statfs().usedBytes == 0)
        try f.expectClean()
    }

    static func reopen(_ f: FSFixture) throws {
        let data = randomBytes(100_000, seed: 5)
        let d = try f.fs.mkdir(Users.alice, FileSystem.rootInode, n("d"), mode: 0o750)
        let file = try f.fs.create(Users.alice, d.ino, n("f"), mode: 0o640)
        try f.fs.write(Users.alice, file.ino, offset: 0, data)
        let link = try f.fs.symlink(Users.root, d.ino, n("l"), target: n("f"))
        let before = (try f.fs.getattr(file.ino), try f.fs.statfs(), f.fs.incarnation)
        try f.reopen()
        let fs = f.fs
        #expect(try fs.getattr(file.ino) == before.0 && fs.statfs() == before.1 && fs.incarnation == before.2)
        #expect(try fs.read(Users.alice, file.ino, offset: 0, count: 200_000).data == data)
        #expect(try fs.readlink(link.ino) == n("f"))
        let next = try fs.create(Users.root, FileSystem.rootInode, n("n"), mode: 0o644)
        #expect(next.ino > link.ino, "the inode counter survives a reopen")
        #expect(try fs.readdir(Users.root, d.ino, after: 0, limit: 10).entries.map(\.name) == [n("f"), n("l")])
    }

    static func relatime(_ f: FSFixture) throws {
        let fs = f.fs
        let file = try fs.create(Users.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(Users.root, file.ino, offset: 0, n("x"))
        let old = Timestamp(seconds: 1000, nanoseconds: 0)
        try fs.setattr(Users.root, file.ino, SetAttributes(atime: .set(old)))
        _ = try fs.read(Users.root, file.ino, offset: 0, count: 1)
        let first = try fs.getattr(file.ino).atime
        #expect(first > old, "atime older than mtime moves on read")
        let stamp = Timestamp(seconds: first.seconds + 3600, nanoseconds: 0)
        try fs.setattr(Users.root, file.ino, SetAttributes(atime: .set(stamp)))
        _ = try fs.read(Users.root, file.ino, offset: 0, count: 1)
        #expect(try fs.getattr(file.ino).atime == stamp, "a recent atime newer than mtime and ctime stays")
    }

    static func compression(_ f: FSFixture) throws {
        let compressible = [UInt8]((0..<300_000).map { UInt8(truncatingIfNeeded: $0 / 1000) })
        let random = randomBytes(300_000, seed: 6)
        for compress in [true, false] {
            f.options.compressChunks = compress
            try f.reopen()
            let name = n("c\(compress)")
            let a = try f.fs.create(Users.root, FileSystem.rootInode, name, mode: 0o644)
            try f.fs.write(Users.root, a.ino, offset: 0, compressible)
            try f.fs.write(Users.root, a.ino, offset: 300_000, random)
            #expect(try f.fs.read(Users.root, a.ino, offset: 0, count: 600_000).data == compressible + random)
        }
        // Chunks written either way read back after switching.
        try f.reopen()
        let a = try f.fs.lookup(Users.root, FileSystem.rootInode, n("ctrue"))
        #expect(try f.fs.read(Users.root, a.ino, offset: 0, count: 600_000).data == compressible + random)
    }

    static func reclaimResumes(_ f: FSFixture) throws {
        let a = try f.fs.create(Users.root, FileSystem.rootInode, n("big"), mode: 0o644)
        try f.fs.write(Users.root, a.ino, offset: 0, randomBytes(2 << 20, seed: 7))
        let chunks = UInt64(try chunkCount(f.fs.store))
        #expect(chunks == UInt64((2 << 20) / f.fs.chunkSize))
        try f.fs.unlink(Users.root, FileSystem.rootInode, n("big"))
        #expect(UInt64(try chunkCount(f.fs.store)) == chunks, "unlink returns before the chunks go")
        try f.expectClean("with a queued delete")
        try f.reopen()
        #expect(try f.fs.pool.reclaimNow() == 1)
        #expect(UInt64(try chunkCount(f.fs.store)) == 0)
        // The background reclaimer does the same on its own.
        f.options.backgroundReclaim = true
        try f.reopen()
        let b = try f.fs.create(Users.root, FileSystem.rootInode, n("big2"), mode: 0o644)
        try f.fs.write(Users.root, b.ino, offset: 0, randomBytes(1 << 20, seed: 8))
        try f.fs.unlink(Users.root, FileSystem.rootInode, n("big2"))
        var waited = 0
        while UInt64(try chunkCount(f.fs.store)) != 0 && waited < 500 {
            usleepMilliseconds(10)
            waited += 1
        }
        #expect(UInt64(try chunkCount(f.fs.store)) == 0, "the background reclaimer emptied the queue")
    }
}
