// Damaged on-disk values and read-only stores: nothing a file on disk can hold crashes the
// process (EIO instead, and fsck names the damage); reclaim and fsck go past a bad record;
// reads on a checkpoint (read-only) never write.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import MemoryBackend
import Testing

@Suite struct DamageTests {
    /// Damages the record behind the filesystem's back, as a disk would: the inodes the
    /// handle cached before are dropped, as at a restart.
    private func putInode(_ f: FSFixture, _ inode: Inode) throws {
        try f.store.put(FSKeys.versioned(FSKeys.inode(inode.ino), 1), inode.encode())
        f.fs.inodeCache.reset()
    }

    @Test func zeroEntryCountGivesEIOOnUnlink() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let dir = try f.fs.mkdir(.root, FileSystem.rootInode, n("d"), mode: 0o755)
        _ = try f.fs.create(.root, dir.ino, n("f"), mode: 0o644)
        var broken = try f.fs.getattr(dir.ino)
        broken.entryCount = 0
        try putInode(f, broken)
        expectErrno(.EIO) { try f.fs.unlink(.root, dir.ino, n("f")) }
        expectErrno(.EIO) { try f.fs.rename(.root, dir.ino, n("f"), dir.ino, n("g")) }
        #expect(try f.fsck().problems.contains { $0.contains("counts 0 entries, holds 1") })
    }

    @Test func zeroLinkCountsGiveEIO() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let a = try f.fs.mkdir(.root, FileSystem.rootInode, n("a"), mode: 0o755)
        let b = try f.fs.mkdir(.root, FileSystem.rootInode, n("b"), mode: 0o755)
        _ = try f.fs.mkdir(.root, a.ino, n("sub"), mode: 0o755)
        _ = try f.fs.mkdir(.root, b.ino, n("victim"), mode: 0o755)
        for ino in [a.ino, b.ino] {
            var broken = try f.fs.getattr(ino)
            broken.nlink = 0
            try putInode(f, broken)
        }
        expectErrno(.EIO, "rmdir in a parent with nlink 0") { try f.fs.rmdir(.root, a.ino, n("sub")) }
        expectErrno(.EIO, "moving a directory out of a parent with nlink 0") {
            try f.fs.rename(.root, a.ino, n("sub"), FileSystem.rootInode, n("moved"))
        }
        _ = try f.fs.mkdir(.root, FileSystem.rootInode, n("src"), mode: 0o755)
        expectErrno(.EIO, "replacing a directory in a parent with nlink 0") {
            try f.fs.rename(.root, FileSystem.rootInode, n("src"), b.ino, n("victim"))
        }
        let problems = try f.fsck().problems
        #expect(problems.contains { $0.contains("directory \(a.ino) has nlink 0") }, "\(problems)")
    }

    @Test func damagedStatisticsGiveEIONotATrap() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        _ = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try f.store.put(FSKeys.stats(0), FSCounters(inodes: 0, bytes: 0).encode())
        try f.reopen()
        expectErrno(.EIO, "unlink would make the inode count negative") { try f.fs.unlink(.root, FileSystem.rootInode, n("f")) }
        #expect(try f.fsck().problems.contains { $0.contains("statistics count 0 inodes") })
    }

    @Test func damagedSizeReadsWithoutATrap() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        var file = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        file.size = UInt64.max
        try putInode(f, file)
        #expect(try f.fs.read(.root, file.ino, offset: UInt64.max - 10, count: 100).data == [])
        #expect(try f.fs.read(.root, file.ino, offset: FSOptions.maxFileSize - 4, count: 100).data == [0, 0, 0, 0])
    }

    @Test func fsckReportsAChunkIndexBeyondTheMaximum() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try f.store.put(FSKeys.versioned(FSKeys.chunk(file.ino, UInt64.max), 1), ChunkRecord(epoch: 0, data: [1]).encode(compress: false))
        let problems = try f.fsck().problems
        #expect(problems.contains { $0.contains("the index lies beyond the maximum file size") }, "\(problems)")
    }

    /// A snapshot record that names itself (or a snapshot) as its dataset is reported,
    /// not followed for ever.
    @Test func fsckReportsASnapshotOfASnapshot() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        try f.fs.pool.snapshot("root", "s")
        var record = try #require(f.fs.pool.state.withLock { s in s.forest.datasets.values.first { $0.isSnapshot } })
        record.parent = record.id
        try f.store.put(FSKeys.dataset(record.id), record.encode())
        let problems = try f.fsck().problems
        #expect(problems.contains { $0.contains("snapshot \(record.id) belongs to \(record.id), which is not a dataset") }, "\(problems)")
    }

    /// A damaged chunk key at the last index, hidden by a truncate, is reclaimed without a
    /// trap (the pass went on from the index after it).
    @Test func reclaimGoesPastAChunkAtTheLastIndex() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        // Two chunks that do not compress: the bytes counted for them cover the damaged
        // chunk's too, so its deletion is counted without an error.
        var generator = SystemRandomNumberGenerator()
        let chunk = f.options.chunkSize
        let data = (0..<2 * chunk).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try f.fs.write(.root, file.ino, offset: 0, data)
        try f.store.put(FSKeys.versioned(FSKeys.chunk(file.ino, UInt64.max), 1), ChunkRecord(epoch: 0, data: [1]).encode(compress: false))
        _ = try f.fs.setattr(.root, file.ino, SetAttributes(size: UInt64(chunk)))
        try f.fs.pool.reclaimNow()
        #expect(try f.store.get(FSKeys.versioned(FSKeys.chunk(file.ino, UInt64.max), 1)) == nil)
        #expect(try f.fs.read(.root, file.ino, offset: 0, count: 3 * chunk).data == Array(data[..<chunk]))
    }

    /// A checkpoint opens read-only: reads (whose atime relatime would move) succeed
    /// without writing, reclaim does nothing, and the background reclaimer does not fail.
    @Test func readsOnACheckpointNeverWrite() throws {
        var options = FSFixture.testOptions
        options.backgroundReclaim = true
        let f = try FSFixture(MemoryBackendFactory(), options: options)
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try f.fs.write(.root, file.ino, offset: 0, n("hello"))
        #expect(try f.fs.getattr(file.ino).atime <= f.fs.getattr(file.ino).mtime, "relatime would move atime")
        _ = try f.store.createCheckpoint(named: "cp")
        let checkpoint = try MemoryBackendFactory().openCheckpoint(at: f.path, named: "cp", options: BackendOptions())
        defer { try? checkpoint.close() }
        #expect(checkpoint.isReadOnly)
        let snapshot = try FileSystem.open(checkpoint, options: options)
        #expect(try snapshot.read(.root, file.ino, offset: 0, count: 5).data == n("hello"))
        #expect(try snapshot.pool.reclaimNow() == 0)
        expectErrno(.EROFS) { _ = try snapshot.create(.root, FileSystem.rootInode, n("g"), mode: 0o644) }
        try snapshot.close()
    }

    /// One reclaim record of an unknown kind, found when the pool opens, is skipped and
    /// counted; the others are done.
    @Test func reclaimSkipsABadRecord() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let file = try f.fs.create(.root, FileSystem.rootInode, n("f"), mode: 0o644)
        try f.fs.write(.root, file.ino, offset: 0, randomBytes(3 * f.fs.chunkSize, seed: 7))
        // Sorts before the real record (inode 1 < file.ino).
        try f.store.put(FSKeys.reclaim(1, 1), [0x7F])
        try f.reopen()
        try f.fs.unlink(.root, FileSystem.rootInode, n("f"))
        try f.fs.pool.reclaimNow()
        #expect(f.fs.pool.damagedReclaimRecords == 1)
        #expect(UInt64(try chunkCount(f.fs.store)) == 0, "the good record was reclaimed")
        let problems = try f.fsck().problems
        #expect(problems == ["reclaim record of inode 1 version 1 has a bad value [127]"], "\(problems)")
    }

    /// A record whose inode cannot be read fails, and the pass goes on to the records
    /// after it (it stopped at the first failure, so one damaged file kept every later
    /// file's space).
    @Test func reclaimGoesOnPastARecordThatFails() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let chunk = f.fs.chunkSize
        let damaged = try f.fs.create(.root, FileSystem.rootInode, n("a"), mode: 0o644)
        try f.fs.write(.root, damaged.ino, offset: 0, randomBytes(3 * chunk, seed: 8))
        let large = try f.fs.create(.root, FileSystem.rootInode, n("b"), mode: 0o644)
        try f.fs.write(.root, large.ino, offset: 0, randomBytes((FileSystem.inlineReclaimChunks + 1) * chunk, seed: 9))
        // A shrink record for the first file (sorts first: lower inode), then its inode damaged.
        try f.fs.setattr(.root, damaged.ino, SetAttributes(size: UInt64(chunk)))
        try f.store.put(FSKeys.versioned(FSKeys.inode(damaged.ino), 1), [ValueTag.live.rawValue, 99])
        try f.fs.unlink(.root, FileSystem.rootInode, n("b"))
        expectErrno(.EIO) { try f.fs.pool.reclaimNow() }
        #expect(UInt64(try chunkCount(f.fs.store)) <= 3, "the second file's chunks were reclaimed")
        #expect(f.fs.pool.reclaimQueue.withLock { $0.count } == 1, "the failing record stays queued")
    }

    /// fsck names every undecodable record and still runs its other checks.
    @Test func fsckReportsEveryBadRecordAndGoesOn() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let dir = try f.fs.mkdir(.root, FileSystem.rootInode, n("d"), mode: 0o755)
        let a = try f.fs.create(.root, dir.ino, n("a"), mode: 0o644)
        let b = try f.fs.create(.root, dir.ino, n("b"), mode: 0o644)
        try f.store.put(FSKeys.versioned(FSKeys.inode(a.ino), 1), [ValueTag.live.rawValue, 99])
        try f.store.put(FSKeys.versioned(FSKeys.dirEntry(dir.ino, n("b")), 1), [ValueTag.live.rawValue, 1, 2])
        let entry = try #require(try f.fs.entry(dir.ino, n("a")))
        try f.store.put(FSKeys.versioned(FSKeys.dirScan(dir.ino, entry.cookie), 1), [ValueTag.live.rawValue])
        try f.store.put(FSKeys.stats(0), [1, 2, 3])
        let problems = try f.fsck().problems
        for expected in ["inode \(a.ino): corrupt record", "entry \"b\" of directory \(dir.ino): corrupt record",
                         "scan record cookie \(entry.cookie) of directory \(dir.ino): corrupt record",
                         "statistics of dataset 0: corrupt record",
                         "inode \(b.ino) has nlink 1 but 0 directory entries"] {
            #expect(problems.contains { $0.contains(expected) }, "missing \(expected) in \(problems)")
        }
    }
}
