// The dataset and snapshot suite, written once and run on every backend (like
// POSIXSuite). Every case ends with the collector run to completion and fsck clean.

import Engine
import FS
import Foundation
import Synchronization
import Testing

public enum DatasetSuite {
    public static func cases(for factory: any KVBackendFactory) -> [FSCase] {
        all.map { FSCase(name: $0.0, factory: factory, body: $0.1) }
    }

    typealias Body = @Sendable (FSFixture) throws -> Void
    static let all: [(String, Body)] = [
        ("snapshot isolation", snapshotIsolation),
        ("writes into a snapshot fail with EROFS", snapshotsAreReadOnly),
        ("clone isolation both ways", cloneIsolation),
        ("rollback keeps later snapshots", rollbackKeepsLaterSnapshots),
        ("dataset operations and their errors", datasetOperations),
        ("names follow renames; everything survives a reopen", renamesAndReopen),
        ("the read-only property", readonlyProperty),
        ("recursive snapshots are atomic under concurrent writers", recursiveSnapshotAtomicity),
        ("snapshots are point-in-time under concurrent clients", pointInTime),
        ("deletion reclaims everything no live version needs", deletionReclaims),
        ("a crash in the middle of collecting resumes", collectorCrash),
        ("space accounting: REFER, WRITTEN, USED", accounting),
    ]

    // MARK: helpers

    static func write(_ fs: FileSystem, _ dir: UInt64, _ name: String, _ data: [UInt8]) throws -> Inode {
        let file = try fs.create(.root, dir, n(name), mode: 0o644)
        try fs.setattr(.root, file.ino, SetAttributes(size: 0))
        try fs.write(.root, file.ino, offset: 0, data)
        return try fs.getattr(file.ino)
    }

    static func content(_ fs: FileSystem, _ dir: UInt64, _ name: String) throws -> [UInt8] {
        let file = try fs.lookup(.root, dir, n(name))
        return try fs.read(.root, file.ino, offset: 0, count: Int(file.size)).data
    }

    static func expectDatasetError(
        _ kind: DatasetError.Kind, _ what: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
    ) {
        expectFailure(kind, what, sourceLocation: sourceLocation, body) { (error: DatasetError) in error.kind }
    }

    /// A small tree with data across chunk boundaries, a symlink and hard links.
    static func populate(_ fs: FileSystem) throws {
        let cs = fs.chunkSize
        let d = try fs.mkdir(.root, fs.root, n("d"), mode: 0o755)
        let e = try fs.mkdir(.root, d.ino, n("e"), mode: 0o700)
        _ = try write(fs, fs.root, "big", randomBytes(cs * 3 + 100, seed: 1))
        let small = try write(fs, d.ino, "small", n("hello"))
        _ = try fs.link(.root, small.ino, e.ino, n("hard"))
        _ = try write(fs, e.ino, "gone", randomBytes(cs + 1, seed: 2))
        _ = try fs.symlink(.root, fs.root, n("link"), target: n("d/small"))
        _ = try fs.mkdir(.root, fs.root, n("empty"), mode: 0o755)
    }

    // MARK: cases

    static func snapshotIsolation(_ f: FSFixture) throws {
        let fs = f.fs
        let pool = fs.pool
        let cs = UInt64(fs.chunkSize)
        try populate(fs)
        let before = try fingerprint(fs)
        try pool.snapshot("root", "s1")
        let snap = try pool.filesystem(named: "root@s1")
        let d = try fs.lookup(.root, fs.root, n("d"))
        let e = try fs.lookup(.root, d.ino, n("e"))
        let big = try fs.lookup(.root, fs.root, n("big"))
        try fs.write(.root, big.ino, offset: cs - 2, [9, 9, 9, 9])
        try fs.write(.root, big.ino, offset: big.size, [7])
        try fs.unlink(.root, e.ino, n("gone"))
        try fs.rename(.root, d.ino, n("small"), fs.root, n("moved"))
        try fs.setattr(.root, big.ino, SetAttributes(size: cs + 1))
        try fs.setattr(.root, big.ino, SetAttributes(size: 5 * cs))
        let moved = try fs.lookup(.root, fs.root, n("moved"))
        _ = try fs.link(.root, moved.ino, fs.root, n("another"))
        try fs.write(.root, moved.ino, offset: 0, n("HELLO"))
        try fs.rmdir(.root, fs.root, n("empty"))
        _ = try fs.mkdir(.root, fs.root, n("new"), mode: 0o755)
        try fs.setattr(.root, d.ino, SetAttributes(mode: 0o711))
        _ = try fs.symlink(.root, fs.root, n("link2"), target: n("x"))
        try pool.reclaimNow()
        #expect(try fingerprint(snap) == before, "the snapshot is byte-identical")
        #expect(try fingerprint(fs) != before)
        #expect(try content(snap, try snap.lookup(.root, snap.root, n("d")).ino, "small") == n("hello"))
        #expect(try content(fs, fs.root, "moved") == n("HELLO"))
        // A second snapshot freezes the changed tree; the first stays as it was.
        let after = try fingerprint(fs)
        try pool.snapshot("root", "s2")
        try fs.unlink(.root, fs.root, n("big"))
        try pool.collectGarbage()
        #expect(try fingerprint(try pool.filesystem(named: "root@s2")) == after)
        #expect(try fingerprint(snap) == before)
        try f.reopen()
        #expect(try fingerprint(try f.fs.pool.filesystem(named: "root@s1")) == before)
        #expect(try fingerprint(try f.fs.pool.filesystem(named: "root@s2")) == after)
    }

    static func snapshotsAreReadOnly(_ f: FSFixture) throws {
        try populate(f.fs)
        try f.fs.pool.snapshot("root", "s")
        let snap = try f.fs.pool.filesystem(named: "root@s")
        let before = try fingerprint(snap)
        let big = try snap.lookup(.root, snap.root, n("big"))
        let d = try snap.lookup(.root, snap.root, n("d"))
        let small = try snap.lookup(.root, d.ino, n("small"))
        let changes: [(String, () throws -> Void)] = [
            ("create", { _ = try snap.create(.root, snap.root, n("x"), mode: 0o644) }),
            ("mkdir", { _ = try snap.mkdir(.root, snap.root, n("x"), mode: 0o755) }),
            ("symlink", { _ = try snap.symlink(.root, snap.root, n("x"), target: n("y")) }),
            ("mknod", { _ = try snap.mknod(.root, snap.root, n("x"), type: .fifo, mode: 0o644) }),
            ("link", { _ = try snap.link(.root, small.ino, snap.root, n("x")) }),
            ("write", { try snap.write(.root, big.ino, offset: 0, [1]) }),
            ("truncate", { try snap.setattr(.root, big.ino, SetAttributes(size: 0)) }),
            ("chmod", { try snap.setattr(.root, big.ino, SetAttributes(mode: 0o600)) }),
            ("unlink", { try snap.unlink(.root, d.ino, n("small")) }),
            ("rmdir", { try snap.rmdir(.root, snap.root, n("empty")) }),
            ("rename", { try snap.rename(.root, snap.root, n("big"), snap.root, n("big2")) }),
            // Even as a user without write permission, a snapshot answers EROFS.
            ("create as a user", { _ = try snap.create(Users.alice, snap.root, n("y"), mode: 0o644) }),
        ]
        for (what, change) in changes { expectErrno(.EROFS, what, change) }
        #expect(try fingerprint(snap) == before)
        #expect(try snap.read(.root, big.ino, offset: 0, count: 10).data.count == 10, "reads work")
    }

    static func cloneIsolation(_ f: FSFixture) throws {
        let pool = f.fs.pool
        try populate(f.fs)
        let original = try fingerprint(f.fs)
        try pool.snapshot("root", "s")
        let clone = try pool.filesystem(try pool.clone("root@s", to: "c").id)
        #expect(try fingerprint(clone) == original)
        // Changes in the clone stay there.
        _ = try write(clone, clone.root, "big", n("clone data"))
        try clone.unlink(.root, try clone.lookup(.root, clone.root, n("d")).ino, n("small"))
        _ = try write(clone, clone.root, "only-in-clone", n("c"))
        #expect(try fingerprint(f.fs) == original)
        #expect(try fingerprint(try pool.filesystem(named: "root@s")) == original)
        // Changes in the origin stay there.
        _ = try write(f.fs, f.fs.root, "big", n("origin data"))
        _ = try write(f.fs, f.fs.root, "only-in-origin", n("o"))
        let cloneState = try fingerprint(clone)
        #expect(try content(clone, clone.root, "big") == n("clone data"))
        #expect(throws: FSError.self) { _ = try clone.lookup(.root, clone.root, n("only-in-origin")) }
        #expect(throws: FSError.self) { _ = try f.fs.lookup(.root, f.fs.root, n("only-in-clone")) }
        // Deleting the origin snapshot works at once; the clone keeps every byte.
        try pool.deleteSnapshot("root@s")
        try pool.collectGarbage()
        #expect(try fingerprint(clone) == cloneState)
        #expect(try pool.info("c").parentName == nil)
        // Two clones of one snapshot are independent of each other too.
        try pool.snapshot("c", "t")
        let one = try pool.filesystem(try pool.clone("c@t", to: "one").id)
        let two = try pool.filesystem(try pool.clone("c@t", to: "two").id)
        _ = try write(one, one.root, "big", n("one"))
        #expect(try content(two, two.root, "big") == n("clone data"))
        try pool.deleteSnapshot("c@t")
        try pool.collectGarbage()
        #expect(try content(one, one.root, "big") == n("one"))
        #expect(try content(two, two.root, "big") == n("clone data"))
        #expect(try fingerprint(clone) == cloneState)
    }

    static func rollbackKeepsLaterSnapshots(_ f: FSFixture) throws {
        let pool = f.fs.pool
        let fs = f.fs
        _ = try write(fs, fs.root, "v", n("one"))
        try pool.snapshot("root", "s1")
        _ = try write(fs, fs.root, "v", n("two"))
        let later = try write(fs, fs.root, "later", n("made after s1"))
        try pool.snapshot("root", "s2")
        _ = try write(fs, fs.root, "v", n("three"))
        try pool.rollback("root", to: "s1")
        #expect(try content(fs, fs.root, "v") == n("one"))
        expectErrno(.ESTALE, "a file made after the snapshot") { _ = try fs.getattr(later.ino) }
        expectErrno(.ENOENT, "its name") { _ = try fs.lookup(.root, fs.root, n("later")) }
        let s2 = try pool.filesystem(named: "root@s2")
        #expect(try content(s2, s2.root, "v") == n("two"), "the later snapshot survives the rollback")
        #expect(try content(s2, s2.root, "later") == n("made after s1"))
        _ = try write(fs, fs.root, "v", n("four"))
        try pool.snapshot("root", "s3")
        try pool.rollback("root", to: "s2")
        #expect(try content(fs, fs.root, "v") == n("two"))
        #expect(try content(fs, fs.root, "later") == n("made after s1"))
        try pool.collectGarbage()
        for (name, expected) in [("root@s1", "one"), ("root@s2", "two"), ("root@s3", "four")] {
            let snap = try pool.filesystem(named: name)
            #expect(try content(snap, snap.root, "v") == n(expected), "\(name)")
        }
        #expect(try pool.listSnapshots(of: "root").map(\.name) == ["root@s1", "root@s2", "root@s3"])
        try f.reopen()
        #expect(try content(f.fs, f.fs.root, "v") == n("two"))
        try f.expectClean("after reopening")
    }

    static func datasetOperations(_ f: FSFixture) throws {
        let pool = f.fs.pool
        let a = try pool.createDataset("a")
        #expect(a.name == "a" && !a.isSnapshot && !a.readonly && a.counters.inodes == 1)
        _ = try pool.createDataset("a/b")
        let fsA = try pool.filesystem(named: "a")
        _ = try write(fsA, fsA.root, "f", n("in a"))
        #expect(try content(fsA, fsA.root, "f") == n("in a"))
        expectErrno(.ENOENT, "datasets are separate trees") { _ = try f.fs.lookup(.root, f.fs.root, n("f")) }
        expectDatasetError(.exists, "a duplicate") { try pool.createDataset("a") }
        expectDatasetError(.exists, "a duplicate nested") { try pool.createDataset("a/b") }
        expectDatasetError(.notFound, "a missing parent") { try pool.createDataset("x/y") }
        let long = String(repeating: "x", count: 256)
        for bad in ["", long, "a@b", "a\u{0}b", "a//b", "/a", "a/", ".", "a/..", ".snapshots", "a/.snapshots", "a\nb", "a\tb", "a\u{1b}[31m", "a\u{7f}"] {
            expectDatasetError(.invalidName, "name \(bad.debugDescription)") { try pool.createDataset(bad) }
        }
        // A name in an error is cut short.
        do throws(DatasetError) {
            try pool.createDataset(String(repeating: "z", count: 5000))
            Issue.record("a name of 5,000 bytes was taken")
        } catch {
            #expect(error.kind == .invalidName && "\(error)".count < 300, "\(error)")
        }
        _ = try pool.createDataset(String(repeating: "y", count: 255))
        #expect(try pool.listDatasets().map(\.name) == ["a", "a/b", "root", String(repeating: "y", count: 255)])
        expectDatasetError(.notFound, "info of nothing") { _ = try pool.info("nope") }
        expectDatasetError(.isRoot, "delete the root dataset") { try pool.deleteDataset("root") }
        try pool.setDefault("a/b")
        #expect(try pool.getDefault().name == "a/b")
        expectDatasetError(.isDefault, "delete the default") { try pool.deleteDataset("a/b") }
        expectDatasetError(.isDefault, "delete the default's container") { try pool.deleteDataset("a", recursive: true) }
        try pool.setDefault("root")
        try pool.snapshot("a", "s")
        expectDatasetError(.exists, "a duplicate snapshot") { try pool.snapshot("a", "s") }
        expectDatasetError(.isSnapshot, "snapshot a snapshot") { try pool.snapshot("a@s", "t") }
        expectDatasetError(.notSnapshot, "clone a dataset") { try pool.clone("a", to: "c") }
        expectDatasetError(.notFound, "clone a missing snapshot") { try pool.clone("a@nope", to: "c") }
        expectDatasetError(.invalidName, "snapshot name with '/'") { try pool.snapshot("a", "x/y") }
        expectDatasetError(.invalidName, "snapshot name with '@'") { try pool.snapshot("a", "x@y") }
        expectDatasetError(.invalidName, "snapshot name .snapshots") { try pool.snapshot("a", ".snapshots") }
        expectDatasetError(.invalidName, "snapshot name with a control character") { try pool.snapshot("a", "x\u{7}") }
        expectDatasetError(.notFound, "rollback to nothing") { try pool.rollback("a", to: "nope") }
        try pool.snapshot("root", "only-root")
        expectDatasetError(.wrongDataset, "rollback to another dataset's snapshot") { try pool.rollback("a", to: "only-root") }
        expectDatasetError(.notSnapshot, "delete a dataset as a snapshot") { try pool.deleteSnapshot("a") }
        _ = try pool.clone("a@s", to: "c")
        expectDatasetError(.hasDependents, "delete with snapshots, clones and nested datasets") { try pool.deleteDataset("a") }
        try pool.renameSnapshot("a@s", to: "t")
        #expect(try pool.info("c").parentName == "a@t")
        expectDatasetError(.notFound, "the old snapshot name") { _ = try pool.info("a@s") }
        // Recursively: the nested dataset and the snapshot go, the clone stays.
        try pool.deleteDataset("a", recursive: true)
        #expect(try pool.listDatasets().map(\.name) == ["c", "root", String(repeating: "y", count: 255)])
        #expect(try pool.listSnapshots().map(\.name) == ["root@only-root"])
        expectErrno(.ESTALE, "a handle of a deleted dataset") { _ = try fsA.create(.root, fsA.root, n("g"), mode: 0o644) }
        let c = try pool.filesystem(named: "c")
        try pool.collectGarbage()
        #expect(try content(c, c.root, "f") == n("in a"), "the clone outlives its origin")
        try pool.deleteDataset("c")
        try pool.deleteDataset(String(repeating: "y", count: 255))
    }

    static func renamesAndReopen(_ f: FSFixture) throws {
        let pool = f.fs.pool
        _ = try pool.createDataset("a")
        _ = try pool.createDataset("a/b")
        _ = try pool.createDataset("other")
        let b = try pool.filesystem(named: "a/b")
        _ = try write(b, b.root, "f", n("nested"))
        try pool.snapshot("a", "s", recursive: true)
        try pool.renameDataset("a", to: "z")
        #expect(try pool.listSnapshots().map(\.name) == ["z@s", "z/b@s"])
        try pool.renameDataset("z/b", to: "other/b2")
        #expect(try pool.listDatasets().map(\.name) == ["other", "other/b2", "root", "z"])
        #expect(try pool.info("other/b2@s").parentName == "other/b2")
        expectDatasetError(.invalidMove, "into itself") { try pool.renameDataset("other", to: "other/b2/x") }
        expectDatasetError(.exists, "onto a name in use") { try pool.renameDataset("z", to: "other") }
        expectDatasetError(.invalidName, "a full name over 255 bytes") {
            try pool.renameDataset("other", to: String(repeating: "o", count: 253))
        }
        try pool.setDefault("other/b2")
        let ids = try pool.listDatasets().map(\.id) + pool.listSnapshots().map(\.id)
        try f.reopen()
        let reopened = f.fs.pool
        #expect(try reopened.listDatasets().map(\.name) == ["other", "other/b2", "root", "z"])
        #expect(try reopened.listSnapshots().map(\.name) == ["other/b2@s", "z@s"])
        #expect(try reopened.listDatasets().map(\.id) + reopened.listSnapshots().map(\.id) == ids)
        #expect(try reopened.getDefault().name == "other/b2")
        let moved = try reopened.defaultFilesystem()
        #expect(try content(moved, moved.root, "f") == n("nested"))
    }

    static func readonlyProperty(_ f: FSFixture) throws {
        let pool = f.fs.pool
        _ = try pool.createDataset("ro")
        let fs = try pool.filesystem(named: "ro")
        let file = try write(fs, fs.root, "f", n("data"))
        try pool.setReadonly("ro", true)
        #expect(try pool.info("ro").readonly)
        expectErrno(.EROFS, "write") { try fs.write(.root, file.ino, offset: 0, [1]) }
        expectErrno(.EROFS, "create") { _ = try fs.create(.root, fs.root, n("g"), mode: 0o644) }
        #expect(try content(fs, fs.root, "f") == n("data"))
        try pool.snapshot("ro", "s")
        try f.reopen()
        let again = try f.fs.pool.filesystem(named: "ro")
        expectErrno(.EROFS, "after a reopen") { _ = try again.create(.root, again.root, n("g"), mode: 0o644) }
        try f.fs.pool.setReadonly("ro", false)
        _ = try write(again, again.root, "g", n("writable again"))
        expectDatasetError(.isSnapshot, "a snapshot's property") { try f.fs.pool.setReadonly("ro@s", false) }
    }

    /// A writer sets N in dataset A, then N in its child B; every recursive snapshot must
    /// show B's value at most A's.
    static func recursiveSnapshotAtomicity(_ f: FSFixture) throws {
        let pool = f.fs.pool
        _ = try pool.createDataset("A")
        _ = try pool.createDataset("A/B")
        let a = try pool.filesystem(named: "A")
        let b = try pool.filesystem(named: "A/B")
        let fileA = try write(a, a.root, "n", n("0"))
        let fileB = try write(b, b.root, "n", n("0"))
        let stop = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)
        let writer = Thread {
            var value = 0
            while !stop.load(ordering: .acquiring) {
                value += 1
                let bytes = Array(String(format: "%08d", value).utf8)
                do {
                    try a.write(.root, fileA.ino, offset: 0, bytes)
                    try b.write(.root, fileB.ino, offset: 0, bytes)
                } catch {
                    failure.withLock { $0 = "writer: \(error)" }
                    return
                }
            }
        }
        writer.start()
        var checked = 0
        for round in 0..<30 {
            try pool.snapshot("A", "r\(round)", recursive: true)
            let sa = try pool.filesystem(named: "A@r\(round)")
            let sb = try pool.filesystem(named: "A/B@r\(round)")
            let va = Int(String(decoding: try sa.read(.root, fileA.ino, offset: 0, count: 8).data, as: UTF8.self)) ?? 0
            let vb = Int(String(decoding: try sb.read(.root, fileB.ino, offset: 0, count: 8).data, as: UTF8.self)) ?? 0
            #expect(vb <= va, "round \(round): B shows \(vb), A shows \(va)")
            checked += 1
            Thread.sleep(forTimeInterval: 0.002)
        }
        stop.store(true, ordering: .releasing)
        while !writer.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        #expect(failure.withLock { $0 } == nil)
        #expect(checked == 30)
    }

    /// Each client creates c<i>-0, c<i>-1, ... in order. A snapshot must hold, for each
    /// client, a prefix of its files: at least those whose create returned before the
    /// snapshot call began, at most those whose create began before it returned.
    static func pointInTime(_ f: FSFixture) throws {
        let pool = f.fs.pool
        let fs = f.fs
        let clients = 4
        // Per client: creates begun, creates returned.
        let progress = Mutex((started: [Int](repeating: 0, count: clients), completed: [Int](repeating: 0, count: clients)))
        let stop = Atomic<Bool>(false)
        let failure = Mutex<String?>(nil)
        let threads = (0..<clients).map { client in
            Thread {
                var index = 0
                while !stop.load(ordering: .acquiring) {
                    progress.withLock { $0.started[client] = index + 1 }
                    do {
                        _ = try fs.create(.root, fs.root, n("c\(client)-\(index)"), mode: 0o644, exclusive: true)
                    } catch {
                        failure.withLock { $0 = "client \(client): \(error)" }
                        return
                    }
                    progress.withLock { $0.completed[client] = index + 1 }
                    index += 1
                }
            }
        }
        for thread in threads { thread.start() }
        for round in 0..<20 {
            let low = progress.withLock { $0.completed }
            try pool.snapshot("root", "p\(round)")
            let high = progress.withLock { $0.started }
            let snap = try pool.filesystem(named: "root@p\(round)")
            var present = [Set<Int>](repeating: [], count: clients)
            var cookie: UInt64 = 0
            while true {
                let page = try snap.readdir(.root, snap.root, after: cookie, limit: 500)
                for entry in page.entries {
                    let parts = String(decoding: entry.name.dropFirst(), as: UTF8.self).split(separator: "-")
                    if let client = Int(parts[0]), let index = Int(parts[1]) { present[client].insert(index) }
                }
                guard let last = page.entries.last, !page.eof else { break }
                cookie = last.cookie
            }
            for client in 0..<clients {
                let count = present[client].count
                #expect(present[client] == Set(0..<count), "round \(round), client \(client): not a prefix")
                #expect(low[client] <= count && count <= high[client],
                        "round \(round), client \(client): \(count) files, expected \(low[client])...\(high[client])")
            }
            Thread.sleep(forTimeInterval: 0.003)
        }
        stop.store(true, ordering: .releasing)
        while threads.contains(where: { !$0.isFinished }) { Thread.sleep(forTimeInterval: 0.001) }
        #expect(failure.withLock { $0 } == nil)
    }

    /// After deleting every snapshot, clone and extra dataset and collecting, the store
    /// holds only what the heads show: one entry per visible key, no whiteout, and no
    /// version node, change record or WRITTEN byte beyond the live versions'.
    static func deletionReclaims(_ f: FSFixture) throws {
        let pool = f.fs.pool
        let fs = f.fs
        try populate(fs)
        let cs = fs.chunkSize
        for round in 0..<4 {
            try pool.snapshot("root", "s\(round)")
            _ = try write(fs, fs.root, "f\(round)", randomBytes(cs * 2, seed: UInt64(round)))
            let big = try fs.lookup(.root, fs.root, n("big"))
            try fs.write(.root, big.ino, offset: UInt64(round * 100), randomBytes(10, seed: UInt64(round + 10)))
            if round == 1 { try fs.unlink(.root, fs.root, n("f0")) }
            if round == 2 { try fs.setattr(.root, big.ino, SetAttributes(size: UInt64(cs + 7))) }
            if round == 3 { try fs.rename(.root, fs.root, n("f2"), fs.root, n("f1")) }
        }
        let clone = try pool.filesystem(try pool.clone("root@s1", to: "c").id)
        _ = try write(clone, clone.root, "in-clone", randomBytes(cs, seed: 99))
        _ = try pool.createDataset("scratch")
        let scratch = try pool.filesystem(named: "scratch")
        _ = try write(scratch, scratch.root, "x", randomBytes(cs * 3, seed: 5))
        let head = try fingerprint(fs)
        try pool.deleteSnapshot("root@s2")
        try pool.deleteSnapshot("root@s0")
        try f.expectCleanAfterCollecting("with some snapshots gone")
        try pool.deleteDataset("c")
        try pool.deleteDataset("scratch")
        for round in [1, 3] { try pool.deleteSnapshot("root@s\(round)") }
        try pool.collectGarbage()
        #expect(try fingerprint(fs) == head)
        try f.expectCleanAfterCollecting("after collecting")
        // What is left: only the head version of root, nothing hidden or shadowed.
        let live = try pool.info("root")
        var versions: Set<UInt64> = []
        var logicalKeys: Set<[UInt8]> = []
        var whiteouts = 0
        var entries = 0
        var chunkBytes: UInt64 = 0
        try f.store.scan(.all) { key, value in
            guard let kind = key.first, [1, 2, 3, 0xFE].contains(kind) else { return true }
            entries += 1
            let cut = key.count - 8
            versions.insert(UInt64.max - key.readBigEndianForTest(at: cut))
            logicalKeys.insert(Array(key[0..<cut]))
            if value.first == 2 { whiteouts += 1 }
            if kind == 0xFE { chunkBytes += UInt64(value.count) }
            return true
        }
        #expect(versions.count == 1, "one version left: \(versions)")
        #expect(whiteouts == 0)
        #expect(logicalKeys.count == entries, "one entry per key")
        #expect(pool.storedBytes == chunkBytes)
        #expect(live.writtenBytes == chunkBytes && live.usedBytes == chunkBytes)
        var versionNodes = 0
        try f.store.scan(.prefix([0x0A])) { _, _ in
            versionNodes += 1
            return true
        }
        #expect(versionNodes == 1)
    }

    /// Stops the collector at its batches in turn (two entries a batch, so an inode takes
    /// several), and once just before a merged version's node goes; each time the reopened
    /// store is consistent and collecting again completes.
    static func collectorCrash(_ f: FSFixture) throws {
        let stride = ProcessInfo.processInfo.environment["ZEROFS_COLLECT_EVERY_BATCH"] == "1" ? 1 : 5
        f.options.reclaimBatchSize = 2
        try f.reopen()
        try populate(f.fs)
        var points = [("collect-finish.before-commit", 0)]
        var skip = 0
        var round = 0
        while let (point, stopAfter) = points.popLast() {
            let pool = f.fs.pool
            let cs = f.fs.chunkSize
            for step in 0..<3 {
                try pool.snapshot("root", "r\(round)-\(step)")
                for i in 0..<4 {
                    _ = try write(f.fs, f.fs.root, "f\(i)", randomBytes(cs + step, seed: UInt64(round * 100 + step * 10 + i)))
                }
                if step == 1 {
                    try f.fs.unlink(.root, f.fs.root, n("f3"))
                    // Made and gone after a snapshot: whiteouts with nothing below them.
                    _ = try write(f.fs, f.fs.root, "tmp", n("x"))
                    try f.fs.unlink(.root, f.fs.root, n("tmp"))
                }
            }
            let head = try fingerprint(f.fs)
            let kept = try fingerprint(try pool.filesystem(named: "root@r\(round)-2"))
            // The older snapshots go: their versions merge down, the oldest into a root.
            for info in try pool.listSnapshots() where !info.name.hasSuffix("-2") { try pool.deleteSnapshot(info.name) }
            pool.crashPoints.arm(point, skip: stopAfter)
            var stopped = false
            do { try pool.collectNow() } catch { stopped = true }
            try f.reopen()
            try f.expectClean("after stopping at \(point) (skip \(stopAfter))")
            #expect(try fingerprint(f.fs) == head)
            try f.fs.pool.collectGarbage()
            #expect(try fingerprint(f.fs) == head)
            #expect(try fingerprint(try f.fs.pool.filesystem(named: "root@r\(round)-2")) == kept)
            #expect(!f.fs.pool.isCollecting)
            try f.expectClean("after collecting past \(point) (skip \(stopAfter))")
            for info in try f.fs.pool.listSnapshots() { try f.fs.pool.deleteSnapshot(info.name) }
            try f.fs.pool.collectGarbage()
            round += 1
            // Next: every `stride`th batch of a collector run in turn (every one with
            // ZEROFS_COLLECT_EVERY_BATCH=1), until a run ends before the point.
            if stopped || point != "collect.before-commit" {
                points.append(("collect.before-commit", skip))
                skip += point == "collect.before-commit" ? stride : 0
            }
        }
        #expect(skip > 2 * stride, "the collector ran several batches")
    }

    static func accounting(_ f: FSFixture) throws {
        let pool = f.fs.pool
        let fs = f.fs
        let cs = fs.chunkSize
        _ = try write(fs, fs.root, "f", randomBytes(cs * 4, seed: 3))
        let start = try pool.info("root")
        #expect(start.counters == FSCounters(inodes: 2, bytes: UInt64(cs * 4)))
        #expect(start.referBytes == UInt64(cs * 4) + 2 * FSCounters.inodeCharge)
        let chunk = UInt64(cs + FileSystem.chunkHeaderSize)
        #expect(start.writtenBytes == 4 * chunk && start.usedBytes == 4 * chunk)
        try pool.snapshot("root", "s")
        let snap = try pool.info("root@s")
        #expect(snap.referBytes == start.referBytes && snap.writtenBytes == 4 * chunk)
        #expect(snap.usedBytes == 0, "nothing is freed while the head shows the same chunks")
        #expect(try pool.info("root").writtenBytes == 0)
        // Overwrite one chunk: the head wrote one chunk; deleting the snapshot would free
        // the old one; deleting the dataset would free all five.
        let file = try fs.lookup(.root, fs.root, n("f"))
        try fs.write(.root, file.ino, offset: UInt64(cs), randomBytes(cs, seed: 4))
        let head = try pool.info("root")
        #expect(head.writtenBytes == chunk && head.usedBytes == 5 * chunk)
        #expect(try pool.info("root@s").usedBytes == chunk)
        // A clone refers to what its snapshot showed and has written nothing yet.
        let clone = try pool.clone("root@s", to: "c")
        #expect(clone.referBytes == snap.referBytes && clone.writtenBytes == 0 && clone.usedBytes == nil)
        #expect(try pool.info("c").usedBytes == 0)
        try pool.deleteDataset("c")
        let before = pool.storedBytes
        try pool.deleteSnapshot("root@s")
        try pool.collectGarbage()
        #expect(pool.storedBytes == before - chunk, "deleting the snapshot freed exactly its USED")
        #expect(try pool.info("root").writtenBytes == 4 * chunk, "WRITTEN of the merged head counts its chunks")
        #expect(try fs.statfs().usedBytes == 4 * chunk)
    }
}

extension UnsafeRawBufferPointer {
    func readBigEndianForTest(at offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<8 { value = value << 8 | UInt64(self[offset + i]) }
        return value
    }
}
