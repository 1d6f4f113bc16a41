// A pool on a read-only replica of an lsm store (FS/Replica.swift): it follows the writer's
// files, datasets, snapshots, rollbacks and deletions, refuses every change with EROFS, and
// a handle it gave out follows its dataset.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LSMBackend
import ObjectStore
import Foundation
import Testing

@Suite struct ReplicaTests {
    @Test func followsTheWritersFilesystem() throws {
        let objects = MemoryObjectStore()
        let lsm = LSMBackendFactory()
        var tuning = BackendOptions()
        tuning.tuning = ["memtable_bytes": "65536", "gc_grace_seconds": "0"]
        let writerStore = try lsm.open(objects: objects, options: tuning)
        defer { try? writerStore.close() }
        let writer = try Pool.open(writerStore)
        defer { try? writer.close() }
        let root = try writer.defaultFilesystem()
        let file = try root.create(.root, root.root, n("a"), mode: 0o644)
        _ = try root.write(.root, file.ino, offset: 0, n("first"), durable: true)

        let replicaStore = try lsm.openReplica(objects: objects, options: BackendOptions())
        defer { try? replicaStore.close() }
        var options = FSOptions()
        options.replicaPollMilliseconds = 0  // this test moves it with followWriter()
        let replica = try Pool.open(replicaStore, options: options)
        defer { try? replica.close() }
        let seen = try replica.defaultFilesystem()
        // Records change under a replica as it follows: it caches no inode.
        #expect(seen.inodeCache.capacity == 0)
        #expect(try seen.read(.root, file.ino, offset: 0, count: 100).data == n("first"))
        expectErrno(.EROFS) { _ = try seen.create(.root, seen.root, n("b"), mode: 0o644) }
        expectErrno(.EROFS) { _ = try seen.write(.root, file.ino, offset: 0, n("x")) }
        #expect(throws: DatasetError.self) { try replica.createDataset("no") }

        // Files, then a snapshot, more writes, a dataset: nothing shows before the replica
        // follows, everything after.
        _ = try root.write(.root, file.ino, offset: 0, n("second"), durable: true)
        _ = try writer.snapshot("root", "s1")
        _ = try root.write(.root, file.ino, offset: 0, n("third!"), durable: true)
        let docs = try writer.createDataset("docs")
        let docsFS = try writer.filesystem(docs.id)
        let paper = try docsFS.create(.root, docsFS.root, n("paper"), mode: 0o644)
        _ = try docsFS.write(.root, paper.ino, offset: 0, Array(repeating: 7, count: 200_000), durable: true)
        #expect(try seen.read(.root, file.ino, offset: 0, count: 100).data == n("first"))
        #expect(throws: DatasetError.self) { try replica.filesystem(named: "docs") }
        #expect(try replica.followWriter())
        #expect(try !replica.followWriter(), "nothing new")
        #expect(try seen.read(.root, file.ino, offset: 0, count: 100).data == n("third!"))
        let snapshot = try replica.filesystem(named: "root@s1")
        #expect(try snapshot.read(.root, file.ino, offset: 0, count: 100).data == n("second"))
        let replicaDocs = try replica.filesystem(named: "docs")
        #expect(try fingerprint(replicaDocs) == fingerprint(docsFS))
        #expect(try replica.listDatasets().map(\.name) == writer.listDatasets().map(\.name))

        // A rollback moves the head: the replica's handle follows it.
        try writer.rollback("root", to: "s1")
        try writer.store.flush()
        #expect(try replica.followWriter())
        #expect(try seen.read(.root, file.ino, offset: 0, count: 100).data == n("second"))

        // A deleted dataset: its handle answers ESTALE once the replica follows.
        try writer.deleteDataset("docs")
        try writer.store.flush()
        #expect(try replica.followWriter())
        expectErrno(.ESTALE) { _ = try replicaDocs.read(.root, paper.ino, offset: 0, count: 10) }
        #expect(try fingerprint(seen) == fingerprint(root))
    }

    /// The poll thread follows by itself, within its interval.
    @Test func followsOnItsOwn() throws {
        let objects = MemoryObjectStore()
        let lsm = LSMBackendFactory()
        let writerStore = try lsm.open(objects: objects, options: BackendOptions())
        defer { try? writerStore.close() }
        let writer = try Pool.open(writerStore)
        defer { try? writer.close() }
        let replicaStore = try lsm.openReplica(objects: objects, options: BackendOptions())
        defer { try? replicaStore.close() }
        var options = FSOptions()
        options.replicaPollMilliseconds = 20
        let replica = try Pool.open(replicaStore, options: options)
        defer { try? replica.close() }
        let root = try writer.defaultFilesystem()
        let file = try root.create(.root, root.root, n("late"), mode: 0o644)
        _ = try root.write(.root, file.ino, offset: 0, n("arrives"), durable: true)
        let seen = try replica.defaultFilesystem()
        var found: [UInt8] = []
        for _ in 0..<500 where found != n("arrives") {
            found = (try? seen.read(.root, file.ino, offset: 0, count: 100).data) ?? []
            if found != n("arrives") { usleep(10_000) }
        }
        #expect(found == n("arrives"))
    }
}
