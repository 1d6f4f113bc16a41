// The decoded inodes a handle caches (InodeCache) stay what the store holds: a read that
// raced a change never fills its slot, and after every batch of the collector (which
// moves records between versions and raises their content versions without the
// handle's dataset) the cache still equals the store. The randomized run over writes,
// snapshots, collection and rollbacks is in InodeVersionTests.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LSMBackend
import MemoryBackend
import Testing

@Suite struct InodeCacheTests {
    private static func inode(_ ino: UInt64, mode: UInt32) -> Inode {
        Inode(ino: ino, type: .regular, mode: mode, uid: 0, gid: 0, now: Timestamp(seconds: 1, nanoseconds: 0))
    }

    @Test func aReadThatRacedAChangeDoesNotFill() {
        let cache = InodeCache(entries: 8)
        let old = Self.inode(5, mode: 0o600)
        let new = Self.inode(5, mode: 0o644)

        // A miss, then a fill with what the store gave: the next lookup hits.
        var (found, ticket) = cache.lookup(5)
        #expect(found == nil)
        cache.fill(old, ticket)
        #expect(cache.lookup(5).inode == old)

        // A commit between a read's ticket and its fill: the commit's record stays.
        ticket = cache.lookup(5).ticket
        cache.committed([(ino: 5, inode: new)])
        cache.fill(old, ticket)
        #expect(cache.lookup(5).inode == new)

        // A removal empties the slot; a read that began before it cannot bring the inode back.
        ticket = cache.lookup(5).ticket
        cache.committed([(ino: 5, inode: nil)])
        cache.fill(new, ticket)
        #expect(cache.lookup(5).inode == nil)

        // The collector rewrote the record: forgotten, and a raced fill is refused.
        cache.fill(old, cache.lookup(5).ticket)
        ticket = cache.lookup(5).ticket
        cache.forget([5])
        #expect(cache.lookup(5).inode == nil)
        cache.fill(old, ticket)
        #expect(cache.lookup(5).inode == nil)

        // A view change refuses every read that began before it.
        let other = Self.inode(6, mode: 0o600)
        ticket = cache.lookup(6).ticket
        cache.reset()
        cache.fill(other, ticket)
        #expect(cache.lookup(6).inode == nil)

        // A change to one slot leaves a read of another slot free to fill.
        ticket = cache.lookup(6).ticket
        cache.committed([(ino: 5, inode: new)])
        cache.fill(other, ticket)
        #expect(cache.lookup(6).inode == other)

        // Inodes sharing a slot (8 apart) evict each other and are never confused.
        cache.fill(Self.inode(13, mode: 0o600), cache.lookup(13).ticket)
        #expect(cache.lookup(5).inode == nil)
        #expect(cache.lookup(13).inode?.ino == 13)
        #expect(InodeCache(entries: 0).capacity == 0)
        #expect(InodeCache(entries: 1000).capacity == 512)
    }

    /// Stops the collector after each of its batches in turn (a crash point) and compares
    /// the cache with the store there, before the collection's end refreshes the handle.
    @Test(arguments: [MemoryBackendFactory() as any KVBackendFactory, LSMBackendFactory()])
    func everyCollectorBatchLeavesTheCacheTrue(_ factory: any KVBackendFactory) throws {
        var stopped = 0
        for skip in 0..<200 {
            let f = try FSFixture(factory)
            defer { f.close() }
            let fs = f.fs
            let dir = try fs.mkdir(.root, fs.root, n("d"), mode: 0o755)
            var files: [UInt64] = []
            for i in 0..<4 {
                let file = try fs.create(.root, dir.ino, n("f\(i)"), mode: 0o644)
                _ = try fs.write(.root, file.ino, offset: 0, n("before \(i)"))
                files.append(file.ino)
            }
            _ = try fs.pool.snapshot("root", "s")
            _ = try fs.write(.root, files[0], offset: 0, n("after"))
            _ = try fs.create(.root, dir.ino, n("f4"), mode: 0o644)
            // Everything read through the handle: the records below the head are cached.
            let tree = try fingerprint(fs)
            #expect(fs.inodeCache.cachedInodes.count >= 6)
            try fs.pool.deleteSnapshot("root@s")
            fs.crashPoints.arm("collect.after-commit", skip: skip)
            do {
                try fs.pool.collectGarbage()
            } catch {
                stopped += 1
                #expect(try fs.inodeCacheMismatches() == [], "stopped after collector batch \(skip + 1)")
                continue
            }
            // The collection ran to its end: the tree is the one read before it.
            #expect(try fs.inodeCacheMismatches() == [])
            #expect(try fingerprint(fs) == tree)
            break
        }
        #expect(stopped > 0, "the collector never committed a batch")
    }
}
