// The dataset and snapshot suite on every backend, and the upgrade of a store made
// before datasets existed.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LMDBBackend
import LSMBackend
import MemoryBackend
import RocksDBBackend
import Testing

@Suite struct MemoryDatasets {
    @Test(arguments: DatasetSuite.cases(for: MemoryBackendFactory()))
    func datasets(_ check: FSCase) throws { try check.run() }
}

@Suite struct RocksDBDatasets {
    @Test(arguments: DatasetSuite.cases(for: RocksDBBackendFactory()))
    func datasets(_ check: FSCase) throws { try check.run() }
}

@Suite struct LMDBDatasets {
    @Test(arguments: DatasetSuite.cases(for: LMDBBackendFactory()))
    func datasets(_ check: FSCase) throws { try check.run() }
}

@Suite struct LSMDatasets {
    @Test(arguments: DatasetSuite.cases(for: LSMBackendFactory()))
    func datasets(_ check: FSCase) throws { try check.run() }
}

@Suite struct UpgradeTests {
    /// The exact records a store formatted before datasets held: one version (1), the
    /// statistics as (inodes, chunk count), no dataset, registry or version records.
    @Test func aStoreFromBeforeDatasetsOpensUnchanged() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        let store = try harness.open(harness.freshPath("upgrade"))
        defer {
            try? store.close()
            harness.cleanUp()
        }
        var root = Inode(ino: 1, type: .directory, mode: 0o755, uid: 0, gid: 0, now: Timestamp(seconds: 1, nanoseconds: 0))
        root.parent = 1
        root.entryCount = 1
        var file = Inode(ino: 2, type: .regular, mode: 0o644, uid: 0, gid: 0, now: Timestamp(seconds: 1, nanoseconds: 0))
        file.size = 3
        let entry = DirEntry(name: n("old"), ino: 2, type: .regular, cookie: 1)
        var batch = WriteBatch()
        batch.put(FSKeys.system("format"), Array("ZFSFS".utf8) + [1, 0, 0, 0x80, 0])
        batch.put(FSKeys.system("incarnation"), [0, 0, 0, 0, 0, 0, 0, 7])
        batch.put(FSKeys.system("next-inode"), [0, 0, 0, 0, 0, 0, 0, 3])
        batch.put(FSKeys.stats(0), [0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1])
        batch.put(FSKeys.versioned(FSKeys.inode(1), 1), root.encode())
        batch.put(FSKeys.versioned(FSKeys.inode(2), 1), file.encode())
        batch.put(FSKeys.versioned(FSKeys.dirEntry(1, n("old")), 1), entry.encodeEntry())
        batch.put(FSKeys.versioned(FSKeys.dirScan(1, 1), 1), entry.encodeScan())
        batch.put(FSKeys.versioned(FSKeys.chunk(2, 0), 1), ChunkRecord(epoch: 0, data: n("abc")).encode(compress: false))
        batch.put(FSKeys.cookieCounter(1), [0, 0, 0, 0, 0, 0, 0, 2])
        batch.put(FSKeys.changeIndex(1, 1), [])
        batch.put(FSKeys.changeIndex(1, 2), [])
        try store.write(batch, durable: true)
        #expect(try Fsck.check(store).problems == [], "fsck reads the old layout")

        var options = FSOptions()
        options.backgroundReclaim = false
        let fs = try FileSystem.open(store, options: options)
        #expect(fs.incarnation == 7)
        #expect(try fs.read(.root, 2, offset: 0, count: 10).data == n("abc"))
        let info = try fs.pool.info("root")
        #expect(info.counters == FSCounters(inodes: 2, bytes: 3) && info.writtenBytes == 17 && info.isDefault)
        _ = try fs.create(.root, 1, n("new"), mode: 0o644)
        try fs.pool.snapshot("root", "first")
        try fs.close()
        #expect(try Fsck.check(store).problems == [])
        let again = try FileSystem.open(store, options: options)
        #expect(try again.pool.listSnapshots().map(\.name) == ["root@first"])
        try again.close()
    }

    /// A file truncated at a read-only dataset's head, whose older chunks a deleted
    /// snapshot held: the collector moves its shrink marks down and queues them, and the
    /// reclaimer drops the marks with the record (clearing them changes nothing a reader
    /// sees), so fsck finds no marks without a record.
    @Test func shrinkMarksOfAReadOnlyDatasetGoWithTheirRecord() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        _ = try f.fs.pool.createDataset("d")
        let d = try f.fs.pool.filesystem(named: "d")
        let file = try d.create(.root, d.root, n("f"), mode: 0o644)
        _ = try d.write(.root, file.ino, offset: 0, [UInt8](repeating: 7, count: 3 * Int(FSFixture.testOptions.chunkSize)))
        try f.fs.pool.snapshot("d", "s")
        _ = try d.setattr(.root, file.ino, SetAttributes(size: 10))
        try f.fs.pool.setReadonly("d", true)
        try f.fs.pool.deleteSnapshot("d@s")
        try f.fs.pool.collectGarbage()
        #expect(try d.read(.root, file.ino, offset: 0, count: 100).data == [UInt8](repeating: 7, count: 10))
        #expect(try f.fsck().problems == [])
    }
}
