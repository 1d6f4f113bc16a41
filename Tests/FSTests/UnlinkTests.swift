// Unlinking a file's last link: a small file loses its chunks in the same batch as its
// inode, a larger one through the reclaim queue; a snapshot keeps what it shows either way.

import Engine
@testable import FS
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Testing

@Suite struct UnlinkTests {
    func reclaimRecords(_ store: any KVReader) throws -> Int {
        var count = 0
        try store.scan(.prefix([KeyKind.reclaim.rawValue])) { _, _ in
            count += 1
            return true
        }
        return count
    }

    @Test func aSmallFileGoesInOneBatchALargerOneThroughTheQueue() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let fs = f.fs
        let limit = FileSystem.inlineReclaimChunks
        let small = try fs.create(.root, FileSystem.rootInode, n("small"), mode: 0o644)
        try fs.write(.root, small.ino, offset: 0, randomBytes(limit * fs.chunkSize, seed: 1))
        let large = try fs.create(.root, FileSystem.rootInode, n("large"), mode: 0o644)
        try fs.write(.root, large.ino, offset: 0, randomBytes((limit + 1) * fs.chunkSize, seed: 2))
        let stored = fs.pool.storedBytes

        try fs.unlink(.root, FileSystem.rootInode, n("small"))
        #expect(try chunkCount(fs.store) == limit + 1, "the small file's chunks went with its inode")
        #expect(try reclaimRecords(fs.store) == 0)
        #expect(fs.pool.storedBytes < stored)
        try f.expectClean("after the small file")

        try fs.unlink(.root, FileSystem.rootInode, n("large"))
        #expect(try chunkCount(fs.store) == limit + 1, "the larger file's chunks wait for the reclaimer")
        #expect(try reclaimRecords(fs.store) == 1)
        try f.expectClean("with the larger file queued")
        try fs.pool.reclaimNow()
        #expect(try chunkCount(fs.store) == 0 && reclaimRecords(fs.store) == 0 && fs.pool.storedBytes == 0)
        try f.expectClean()
    }

    /// Below a snapshot the reclaimer keeps a file's shrink marks; a file shrunk to ever
    /// larger sizes gets at most `Inode.maxShrinkMarks`, then a clear ENOSPC, and stays
    /// readable and removable.
    @Test func shrinkMarksBelowASnapshotAreBounded() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let fs = f.fs
        let file = try fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, randomBytes(fs.chunkSize, seed: 4))
        try fs.pool.snapshot("root", "kept")
        let far = UInt64(1) << 30
        for k in 1...Inode.maxShrinkMarks {
            try fs.setattr(.root, file.ino, SetAttributes(size: far))
            try fs.setattr(.root, file.ino, SetAttributes(size: UInt64(k * fs.chunkSize)))
        }
        try fs.pool.reclaimNow()
        #expect(try fs.getattr(file.ino).shrinkMarks.count == Inode.maxShrinkMarks)
        try fs.setattr(.root, file.ino, SetAttributes(size: far))
        // Shrunk past a whole chunk, above every mark: one mark more than allowed.
        var refused: FSError.Code?
        do {
            try fs.setattr(.root, file.ino, SetAttributes(size: far / 2))
        } catch {
            refused = error.code
        }
        #expect(refused == .ENOSPC)
        #expect(try fs.getattr(file.ino).size == far)
        // Nothing was lost: the file reads, and a truncate to zero replaces every mark.
        #expect(try fs.read(.root, file.ino, offset: 0, count: 16).data.count == 16)
        try fs.setattr(.root, file.ino, SetAttributes(size: 0))
        #expect(try fs.getattr(file.ino).shrinkMarks.count == 1)
        try fs.unlink(.root, FileSystem.rootInode, n("f"))
        try fs.pool.reclaimNow()
        try f.expectClean()
    }

    @Test func aSnapshotKeepsWhatItShows() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let fs = f.fs
        let content = randomBytes(2 * fs.chunkSize + 5, seed: 3)
        let file = try fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, content)
        try fs.pool.snapshot("root", "before")
        // Rewritten after the snapshot: the head holds one chunk of its own.
        try fs.write(.root, file.ino, offset: 0, n("new"))
        try fs.unlink(.root, FileSystem.rootInode, n("f"))
        #expect(try reclaimRecords(fs.store) == 0)
        #expect(try chunkCount(fs.store) == 3, "only the head's own chunk went")
        let snapshot = try fs.pool.filesystem(named: "root@before")
        #expect(try snapshot.read(.root, file.ino, offset: 0, count: content.count + 10).data == content)
        try f.expectClean()
    }
}
