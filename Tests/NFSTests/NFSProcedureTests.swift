// Every MOUNT and NFS procedure through NFSService (no sockets): results, the errors a
// client can cause, RPC-level refusals, snapshots through both paths, the duplicate-
// request cache, EXCLUSIVE create, and handles that survive a restart.

@testable import NFS
import Engine
import Foundation
@testable import FS
import FSTestSupport
import KVTestSupport
import LSMBackend
import MemoryBackend
import Testing

@Suite struct NFSProcedureTests {
    static func make(_ factory: any KVBackendFactory = MemoryBackendFactory()) throws -> (FSFixture, NFSService, NFSTestClient) {
        let f = try FSFixture(factory)
        let service = NFSService(pool: f.fs.pool)
        return (f, service, NFSTestClient(service))
    }

    static func status(_ body: () throws -> Void) -> UInt32? {
        do {
            try body()
            return 0
        } catch let error as NFSCallError {
            return error.status
        } catch {
            return nil
        }
    }

    /// As with Linux's NFS server: a program that creates a file read-only still fills it
    /// (the client checked access at open), and a program one may only execute is read.
    @Test func theOwnerWritesItsReadOnlyFileAndExecutableFilesAreRead() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let d = try c.mkdir(root, "shared", mode: 0o777)
        c.uid = 1000
        c.gid = 1000
        let file = try c.create(d, "readonly", mode: 0o444)
        #expect(try c.write(file, 0, Array("contents".utf8)).count == 8)
        let (status, _) = try c.nfs(2) { w in
            w.opaque(file)
            NFSTestClient.sattr(&w, size: 4)
            w.bool(false)
        }
        #expect(try status == 0 && c.getattr(file).size == 4)
        let program = try c.create(d, "program", mode: 0o711)
        _ = try c.write(program, 0, Array("#!".utf8))
        c.uid = 1001
        c.gid = 1001
        #expect(try c.read(program, 0, 10).data == Array("#!".utf8))
        #expect(Self.status { _ = try c.write(program, 0, [1]) } == NFSStatus.acces.rawValue)
        #expect(Self.status { _ = try c.write(file, 0, [1]) } == NFSStatus.acces.rawValue)
    }

    /// CREATE and MKDIR with the caller's own uid and gid in their attributes, as some
    /// clients send them: UNCHECKED on someone else's file opens it and applies only the
    /// size; a new object's owner and group come from the caller and the directory (a
    /// setgid directory's group wins), not from a second step that can fail.
    @Test func createAttributesAreAppliedAsLinuxNfsdDoes() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let d = try c.mkdir(root, "shared", mode: 0o777)
        let common = try c.mkdir(root, "common", mode: 0o777)
        var (status, _) = try c.nfs(2) { w in
            w.opaque(common)
            NFSTestClient.sattr(&w, mode: 0o2777, gid: 500)
            w.bool(false)
        }
        #expect(status == 0)
        let theirs = try c.create(d, "theirs", mode: 0o666)
        _ = try c.write(theirs, 0, Array("0123456789".utf8))
        c.uid = 1000
        c.gid = 1000
        func create(_ dir: [UInt8], _ name: String, size: UInt64?) throws -> UInt32 {
            try c.nfs(8) { w in
                w.opaque(dir)
                w.opaque(Array(name.utf8))
                w.uint32(0)
                NFSTestClient.sattr(&w, mode: 0o644, uid: 1000, gid: 1000, size: size)
            }.status
        }
        #expect(try create(d, "theirs", size: nil) == 0, "open(O_CREAT) of an existing file")
        #expect(try create(d, "theirs", size: 4) == 0, "open(O_CREAT|O_TRUNC)")
        let kept = try c.getattr(theirs)
        #expect(kept.uid == 0 && kept.gid == 0 && kept.mode == 0o666 && kept.size == 4)
        #expect(try create(common, "mine", size: nil) == 0)
        let mine = try c.getattr(c.lookup(common, "mine"))
        #expect(mine.uid == 1000 && mine.gid == 500, "the setgid directory's group")
        (status, _) = try c.nfs(9) { w in
            w.opaque(common)
            w.opaque(Array("sub".utf8))
            NFSTestClient.sattr(&w, mode: 0o755, uid: 1000, gid: 1000)
        }
        #expect(status == 0)
        let sub = try c.getattr(c.lookup(common, "sub"))
        #expect(sub.uid == 1000 && sub.gid == 500)
    }

    /// A handle whose inode cannot be read answers NFS3ERR_IO, not STALE: the client
    /// would report "Stale file handle" for damage (or a stopped store).
    @Test func aDamagedInodeIsAnIOErrorNotAStaleHandle() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let file = try c.create(root, "f")
        let ino = try c.getattr(file).fileid
        try f.store.put(FSKeys.versioned(FSKeys.inode(ino), f.fs.view.head), [ValueTag.live.rawValue, 99])
        // Damage behind the filesystem's back: what it cached before goes, as at a restart.
        f.fs.inodeCache.reset()
        let (status, _) = try c.nfs(1) { $0.opaque(file) }
        #expect(status == NFSStatus.io.rawValue)
    }

    /// Listings start with "." and "..", as Linux's nfsd sends them: "." is the directory,
    /// ".." its parent (an export's root is its own), with their handles in READDIRPLUS;
    /// pages of any size resume after either of them and list everything once.
    @Test func listingsStartWithDotAndDotDot() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let d = try c.mkdir(root, "d")
        for i in 0..<7 { _ = try c.create(d, "file-\(i)") }
        let rootID = try c.getattr(root).fileid
        let dID = try c.getattr(d).fileid
        let top = try c.listEntries(root, plus: true)
        #expect(top.prefix(2).map(\.name) == [".", ".."] && top.prefix(2).map(\.cookie) == [1, 2])
        #expect(top[0].fileid == rootID && top[0].handle == root && top[1].fileid == rootID && top[1].handle == root)
        let inner = try c.listEntries(d, plus: true)
        #expect(inner[0].fileid == dID && inner[0].handle == d && inner[1].fileid == rootID && inner[1].handle == root)
        let all = inner.map(\.name)
        #expect(all.count == 9 && Set(all).count == 9)
        for count: UInt32 in stride(from: 140, through: 400, by: 12) {
            #expect(try c.list(d, count: count) == all, "READDIR of \(count) bytes")
            #expect(try c.list(d, plus: true, count: count) == all, "READDIRPLUS of \(count * 4) bytes")
        }
        _ = try f.fs.pool.snapshot("root", "s1")
        let snapshots = try c.lookup(root, ".snapshots")
        let listed = try c.listEntries(snapshots, plus: true)
        #expect(listed.map(\.name) == [".", "..", "s1"])
        #expect(listed[0].handle == snapshots && listed[1].handle == root && listed[1].fileid == rootID)
    }

    @Test func everyProcedure() throws {
        let (f, service, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        _ = try c.call(100_005, 0)
        _ = try c.call(100_003, 0)
        #expect(try c.getattr(root).type == 2)

        let d = try c.mkdir(root, "d")
        let file = try c.create(d, "f")
        let sync = try c.write(file, 0, Array("hello world".utf8))
        #expect(sync.count == 11 && sync.committed == 2 && sync.verifier == service.writeVerifier)
        let unstable = try c.write(file, 11, Array("!".utf8), stable: 0)
        #expect(unstable.committed == 0)
        #expect(try c.commit(file) == service.writeVerifier)
        #expect(try c.read(file, 0, 100) == (Array("hello world!".utf8), true))
        #expect(try c.read(file, 0, 5) == (Array("hello".utf8), false))

        // SETATTR: truncate and chmod, then a guard that does not match.
        var (status, _) = try c.nfs(2) { w in
            w.opaque(file)
            NFSTestClient.sattr(&w, mode: 0o600, size: 5)
            w.bool(false)
        }
        #expect(status == 0)
        #expect(try c.getattr(file).size == 5 && c.getattr(file).mode == 0o600)
        (status, _) = try c.nfs(2) { w in
            w.opaque(file)
            NFSTestClient.sattr(&w, mode: 0o644)
            w.bool(true)
            w.uint32(1)
            w.uint32(0)
        }
        #expect(status == NFSStatus.notSync.rawValue)
        #expect(try c.getattr(file).mode == 0o600)  // nothing changed
        // The guard is checked with the change: the current ctime lets it through.
        let ctime = try c.getattr(file).ctime
        (status, _) = try c.nfs(2) { w in
            w.opaque(file)
            NFSTestClient.sattr(&w, mode: 0o640)
            w.bool(true)
            w.uint32(ctime.0)
            w.uint32(ctime.1)
        }
        #expect(status == 0)
        #expect(try c.getattr(file).mode == 0o640)

        #expect(try c.lookup(d, "f") == file)
        #expect(try c.lookup(d, "..") == root)
        var access: XDRReader
        (status, access) = try c.nfs(4) { w in
            w.opaque(file)
            w.uint32(0x3F)
        }
        try NFSTestClient.skipPostOp(&access)
        #expect(status == 0)
        #expect(try access.uint32() == 0x0D)  // read, modify, extend; not lookup, delete, execute

        // SYMLINK and READLINK.
        var reply: XDRReader
        (status, reply) = try c.nfs(10) { w in
            w.opaque(d)
            w.opaque(Array("s".utf8))
            NFSTestClient.sattr(&w)
            w.opaque(Array("f".utf8))
        }
        #expect(status == 0)
        let link = try NFSTestClient.createdHandle(&reply)
        (status, reply) = try c.nfs(5) { $0.opaque(link) }
        try NFSTestClient.skipPostOp(&reply)
        #expect(status == 0)
        #expect(try reply.opaque(limit: 100) == Array("f".utf8))

        // MKNOD (a FIFO), LINK, RENAME.
        (status, _) = try c.nfs(11) { w in
            w.opaque(d)
            w.opaque(Array("p".utf8))
            w.uint32(7)
            NFSTestClient.sattr(&w, mode: 0o644)
        }
        #expect(status == 0)
        (status, _) = try c.nfs(15) { w in
            w.opaque(file)
            w.opaque(d)
            w.opaque(Array("hard".utf8))
        }
        #expect(status == 0)
        #expect(try c.getattr(file).nlink == 2)
        (status, _) = try c.nfs(14) { w in
            w.opaque(d)
            w.opaque(Array("hard".utf8))
            w.opaque(root)
            w.opaque(Array("moved".utf8))
        }
        #expect(status == 0)
        #expect(Set(try c.list(d)) == [".", "..", "f", "p", "s"])
        #expect(Set(try c.list(root, plus: true)) == [".", "..", "d", "moved"])

        // REMOVE, RMDIR.
        for name in ["f", "p", "s"] {
            (status, _) = try c.nfs(12) { w in
                w.opaque(d)
                w.opaque(Array(name.utf8))
            }
            #expect(status == 0)
        }
        (status, _) = try c.nfs(13) { w in
            w.opaque(root)
            w.opaque(Array("d".utf8))
        }
        #expect(status == 0)

        // FSSTAT, FSINFO, PATHCONF.
        for procedure: UInt32 in [18, 19, 20] {
            (status, _) = try c.nfs(procedure) { $0.opaque(root) }
            #expect(status == 0, "procedure \(procedure)")
        }
        (status, reply) = try c.nfs(19) { $0.opaque(root) }
        try NFSTestClient.skipPostOp(&reply)
        #expect(try reply.uint32() == 1 << 20)

        // MOUNT: DUMP names our mount, EXPORT lists "/", UMNT and UMNTALL.
        var dump = try c.call(100_005, 2)
        #expect(try dump.bool())
        var exports = try c.call(100_005, 5)
        #expect(try exports.bool() && String(decoding: try exports.opaque(limit: 1024), as: UTF8.self) == "/")
        _ = try c.call(100_005, 3) { $0.opaque(Array("/".utf8)) }
        _ = try c.call(100_005, 4)
        dump = try c.call(100_005, 2)
        #expect(try dump.bool() == false)
        try f.expectClean()
    }

    @Test func errorsAClientCanCause() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let file = try c.create(root, "f")
        #expect(Self.status { _ = try c.getattr([1, 2, 3]) } == NFSStatus.badhandle.rawValue)
        var forged = NFSFileHandle(try c.lookup(root, "f"))!
        forged.incarnation &+= 1
        #expect(Self.status { _ = try c.getattr(forged.bytes) } == NFSStatus.stale.rawValue)
        #expect(Self.status { _ = try c.lookup(root, "missing") } == NFSStatus.noent.rawValue)
        #expect(Self.status { _ = try c.read(root, 0, 10) } == NFSStatus.isdir.rawValue)
        #expect(Self.status { _ = try c.create(root, "f", guarded: true) } == NFSStatus.exist.rawValue)
        #expect(Self.status { _ = try c.create(root, String(repeating: "n", count: 300)) } == NFSStatus.nametoolong.rawValue)
        #expect(Self.status { _ = try c.create(root, String(repeating: "n", count: 5000)) } == NFSStatus.nametoolong.rawValue)
        #expect(Self.status { _ = try c.list(root, count: 10) } == NFSStatus.toosmall.rawValue)
        // READDIRPLUS with no dircount to speak of still lists (maxcount decides).
        var (plusStatus, plus) = try c.nfs(17) { w in
            w.opaque(root)
            w.uint64(0)
            w.uint64(0)
            w.uint32(0)
            w.uint32(8192)
        }
        #expect(plusStatus == 0)
        try NFSTestClient.skipPostOp(&plus)
        _ = try plus.uint64()
        #expect(try plus.bool())
        var (status, _) = try c.nfs(12) { w in
            w.opaque(root)
            w.opaque(Array("f".utf8))
        }
        #expect(status == 0)
        #expect(Self.status { _ = try c.getattr(file) } == NFSStatus.stale.rawValue)
        #expect(Self.status { _ = try c.mount("/no/such/dataset") } == 2)
        (status, _) = try c.nfs(7) { w in
            w.opaque(root)
            w.uint64(0)
            w.uint32(1)
            w.uint32(2)
            w.opaque([1])
        }
        #expect(status == NFSStatus.isdir.rawValue || status == NFSStatus.inval.rawValue)
        try f.expectClean()
    }

    @Test func aReadThatFailsMidwayAnswersWithNoData() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let file = try c.create(root, "f")
        let chunk = f.fs.chunkSize
        _ = try c.write(file, 0, [UInt8](repeating: 7, count: 3 * chunk))
        // The second chunk is damaged: a READ of all three reads the first, then fails.
        let ino = try #require(NFSFileHandle(file)).ino
        try f.store.put(FSKeys.versioned(FSKeys.chunk(ino, 1), f.fs.view.head), [ValueTag.live.rawValue, 0xEE, 1, 2])
        var (status, body) = try c.nfs(6) { w in
            w.opaque(file)
            w.uint64(0)
            w.uint32(UInt32(3 * chunk))
        }
        #expect(status == NFSStatus.io.rawValue)
        // READ3resfail: post-op attributes only, and nothing after them.
        try NFSTestClient.skipPostOp(&body)
        #expect(body.remaining == 0)
        // The chunk before the damage still reads.
        #expect(try c.read(file, 0, UInt32(chunk)) == ([UInt8](repeating: 7, count: chunk), false))
    }

    @Test func rpcRefusals() throws {
        let (f, service, _) = try Self.make()
        defer { try? f.fs.close() }
        func reply(_ record: [UInt8]) throws -> Reply { try Reply(try #require(service.handle(record, client: "c"))) }
        #expect(try reply(Call.record(xid: 1, program: 100_003, version: 3, procedure: 22)).acceptStat == 3)  // PROC_UNAVAIL
        #expect(try reply(Call.record(xid: 2, program: 100_003, version: 2, procedure: 0)).acceptStat == 2)  // PROG_MISMATCH
        #expect(try reply(Call.record(xid: 3, program: 100_005, version: 1, procedure: 0)).acceptStat == 2)
        #expect(try reply(Call.record(xid: 4, program: 100_099, version: 1, procedure: 0)).acceptStat == 1)  // PROG_UNAVAIL
        #expect(try reply(Call.record(xid: 5, program: 100_003, version: 3, procedure: 1, args: [0, 0])).acceptStat == 4)  // GARBAGE_ARGS
        var wrongRPC = Call.record(xid: 6, program: 100_003, version: 3, procedure: 0)
        wrongRPC[11] = 3
        #expect(try reply(wrongRPC).replyStat == 1)  // MSG_DENIED, RPC_MISMATCH
        var badFlavor = Call.record(xid: 7, program: 100_003, version: 3, procedure: 0)
        badFlavor[27] = 9
        #expect(try reply(badFlavor).replyStat == 1)  // AUTH_ERROR
        #expect(service.handle([1, 2], client: "c") == nil)
        var replyMessage = Call.record(xid: 8, program: 100_003, version: 3, procedure: 0)
        replyMessage[7] = 1
        #expect(service.handle(replyMessage, client: "c") == nil)
    }

    @Test func snapshotsThroughBothPathsAreReadOnly() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let pool = f.fs.pool
        _ = try pool.createDataset("ds")
        let ds = try c.mount("/ds")
        let file = try c.create(ds, "f")
        _ = try c.write(file, 0, Array("old".utf8))
        _ = try pool.snapshot("ds", "s1")
        _ = try c.write(file, 0, Array("new".utf8))

        let snapRoot = try c.mount("/ds@s1")
        let old = try c.lookup(snapRoot, "f")
        #expect(try c.read(old, 0, 10).data == Array("old".utf8))
        #expect(try c.getattr(snapRoot).fsid != c.getattr(ds).fsid)

        let snapshots = try c.lookup(ds, ".snapshots")
        #expect(try c.list(snapshots) == [".", "..", "s1"])
        #expect(try c.list(snapshots, plus: true) == [".", "..", "s1"])
        let viaDir = try c.lookup(snapshots, "s1")
        #expect(viaDir == snapRoot)
        #expect(try c.lookup(snapshots, "..") == ds)
        #expect(try c.read(try c.lookup(viaDir, "f"), 0, 10).data == Array("old".utf8))
        #expect(!(try c.list(ds)).contains(".snapshots"))
        // Reached through the dataset's root: a caller who may not search the root may
        // not look it up, list it or look up in it.
        let dataset = try pool.filesystem(named: "ds")
        _ = try dataset.setattr(.root, dataset.root, SetAttributes(mode: 0o700))
        c.uid = 1000
        let acces = NFSStatus.acces.rawValue
        #expect(Self.status { _ = try c.lookup(ds, ".snapshots") } == acces)
        #expect(Self.status { _ = try c.list(snapshots) } == acces)
        #expect(Self.status { _ = try c.lookup(snapshots, "s1") } == acces)
        c.uid = 0
        _ = try dataset.setattr(.root, dataset.root, SetAttributes(mode: 0o755))

        let rofs = NFSStatus.rofs.rawValue
        #expect(Self.status { _ = try c.write(old, 0, [1]) } == rofs)
        #expect(Self.status { _ = try c.create(snapRoot, "x") } == rofs)
        #expect(Self.status { _ = try c.mkdir(snapshots, "x") } == rofs)
        #expect(Self.status { _ = try c.create(ds, ".snapshots") } == NFSStatus.exist.rawValue)
        // Across datasets: XDEV, but ROFS first when a snapshot is involved.
        let root = try c.mount("/")
        var (status, _) = try c.nfs(14) { w in
            w.opaque(ds)
            w.opaque(Array("f".utf8))
            w.opaque(root)
            w.opaque(Array("g".utf8))
        }
        #expect(status == NFSStatus.xdev.rawValue)
        (status, _) = try c.nfs(15) { w in
            w.opaque(old)
            w.opaque(ds)
            w.opaque(Array("g".utf8))
        }
        #expect(status == rofs)
        try f.expectClean()
    }

    /// `.snapshots` finds the dataset's snapshots by the dataset's id, in one look at the
    /// forest: renames of the dataset while clients list and look up there change nothing
    /// (it went by the dataset's name, and a rename between two looks answered NOENT or
    /// STALE).
    @Test func snapshotsFollowTheirDatasetThroughRenames() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let pool = f.fs.pool
        _ = try pool.createDataset("ds")
        let ds = try c.mount("/ds")
        _ = try pool.snapshot("ds", "s1")
        let snapshots = try c.lookup(ds, ".snapshots")
        let snapRoot = try c.lookup(snapshots, "s1")
        let renames = 400
        let renamer = Thread {
            for i in 0..<renames { try? pool.renameDataset(i % 2 == 0 ? "ds" : "dt", to: i % 2 == 0 ? "dt" : "ds") }
        }
        renamer.start()
        var failures: [String] = []
        for _ in 0..<400 {
            do {
                if try c.lookup(snapshots, "s1") != snapRoot { failures.append("another handle") }
                if try c.list(snapshots) != [".", "..", "s1"] { failures.append("another listing") }
            } catch {
                failures.append("\(error)")
            }
        }
        while renamer.isExecuting || !renamer.isFinished { usleep(1_000) }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
        #expect(try c.list(snapshots) == [".", "..", "s1"])
        try f.expectClean()
    }

    @Test func retransmissionsAndExclusiveCreate() throws {
        let (f, service, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        _ = try c.create(root, "f")
        let remove = Call.record(xid: 77, program: 100_003, version: 3, procedure: 12, args: Call.args { w in
            w.opaque(root)
            w.opaque(Array("f".utf8))
        })
        var first = try Reply(try #require(service.handle(remove, client: "a")))
        var again = try Reply(try #require(service.handle(remove, client: "a")))
        #expect(try first.body.uint32() == 0 && again.body.uint32() == 0)
        // Another client with the same xid is another call.
        var other = try Reply(try #require(service.handle(remove, client: "b")))
        #expect(try other.body.uint32() == NFSStatus.noent.rawValue)

        func exclusive(_ verifier: UInt64) throws -> UInt32 {
            try c.nfs(8) { w in
                w.opaque(root)
                w.opaque(Array("x".utf8))
                w.uint32(2)
                w.uint64(verifier)
            }.status
        }
        #expect(try exclusive(0xABCD_0000_1234) == 0)
        #expect(try exclusive(0xABCD_0000_1234) == 0)
        #expect(try exclusive(0x9999) == NFSStatus.exist.rawValue)
        try f.expectClean()
    }

    /// wcc_data carries both halves, read under the operation's locks: the directory's
    /// pre-operation size and times, then attributes with the change in them.
    @Test func wccDataBracketsTheChange() throws {
        let (f, _, c) = try Self.make()
        defer { try? f.fs.close() }
        let root = try c.mount("/")
        let dir = try c.mkdir(root, "d")
        let before = try c.getattr(dir)
        var (status, reply) = try c.nfs(9) { w in
            w.opaque(dir)
            w.opaque(Array("sub".utf8))
            NFSTestClient.sattr(&w, mode: 0o755)
        }
        #expect(status == 0)
        _ = try NFSTestClient.createdHandle(&reply)
        try NFSTestClient.skipPostOp(&reply)
        #expect(try reply.bool(), "pre-operation attributes present")
        #expect(try reply.uint64() == before.size)
        _ = try reply.fixed(16)
        #expect(try reply.bool())
        let after = try Attributes(&reply)
        #expect(after.nlink == before.nlink + 1)
        // A file's WRITE: pre-op size 0, post-op size 5.
        let file = try c.create(dir, "f")
        (status, reply) = try c.nfs(7) { w in
            w.opaque(file)
            w.uint64(0)
            w.uint32(5)
            w.uint32(2)
            w.opaque(Array("hello".utf8))
        }
        #expect(status == 0)
        #expect(try reply.bool())
        #expect(try reply.uint64() == 0)
        _ = try reply.fixed(16)
        #expect(try reply.bool())
        #expect(try Attributes(&reply).size == 5)
        // A failed REMOVE changes nothing: no pre-operation attributes.
        (status, reply) = try c.nfs(12) { w in
            w.opaque(dir)
            w.opaque(Array("missing".utf8))
        }
        #expect(status == NFSStatus.noent.rawValue)
        #expect(try reply.bool() == false)
    }

    @Test func handlesSurviveARestart() throws {
        let f = try FSFixture(LSMBackendFactory())
        defer { try? f.fs.close() }
        var service = NFSService(pool: f.fs.pool, writeVerifier: 1)
        var c = NFSTestClient(service)
        let root = try c.mount("/")
        let file = try c.create(root, "f")
        _ = try c.write(file, 0, Array("kept".utf8))
        try f.reopen()
        service = NFSService(pool: f.fs.pool, writeVerifier: 2)
        c = NFSTestClient(service)
        #expect(try c.read(file, 0, 10).data == Array("kept".utf8))
        #expect(try c.write(file, 4, [0x21]).verifier == 2)
        #expect(try c.lookup(root, "f") == file)
    }
}
