// What a handle caches (HandleCache: inodes, directory entries) stays what the store
// holds: a read that raced a change never fills its slot, and after every batch of the
// collector (which moves records between versions and raises their content versions
// without the handle's dataset) the caches still equal the store. The randomized run over
// writes, renames, snapshots, collection and rollbacks is in InodeVersionTests.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LSMBackend
import MemoryBackend
import Testing

@Suite struct HandleCacheTests {
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
        cache.fill(5, old, ticket)
        #expect(cache.lookup(5).value == old)

        // A commit between a read's ticket and its fill: the commit's record stays.
        ticket = cache.lookup(5).ticket
        cache.apply([(5, new)])
        cache.fill(5, old, ticket)
        #expect(cache.lookup(5).value == new)

        // A removal empties the slot; a read that began before it cannot bring the inode back.
        ticket = cache.lookup(5).ticket
        cache.apply([(5, nil)])
        cache.fill(5, new, ticket)
        #expect(cache.lookup(5).value == nil)

        // The collector rewrote the record: forgotten, and a raced fill is refused.
        cache.fill(5, old, cache.lookup(5).ticket)
        ticket = cache.lookup(5).ticket
        cache.forget([5])
        #expect(cache.lookup(5).value == nil)
        cache.fill(5, old, ticket)
        #expect(cache.lookup(5).value == nil)

        // A view change refuses every read that began before it.
        let other = Self.inode(6, mode: 0o600)
        ticket = cache.lookup(6).ticket
        cache.reset()
        cache.fill(6, other, ticket)
        #expect(cache.lookup(6).value == nil)

        // A change to one slot leaves a read of another slot free to fill (once the cache
        // has slots again: a change to a cache without any refuses every fill, below).
        cache.fill(5, old, cache.lookup(5).ticket)
        ticket = cache.lookup(6).ticket
        cache.apply([(5, new)])
        cache.fill(6, other, ticket)
        #expect(cache.lookup(6).value == other)

        // A change while the cache has no slots (none filled yet, or emptied by a reset):
        // nothing to store, and a read that began before it does not fill either.
        let fresh = InodeCache(entries: 8)
        ticket = fresh.lookup(5).ticket
        fresh.apply([(5, new)])
        fresh.fill(5, old, ticket)
        #expect(fresh.lookup(5).value == nil)
        fresh.reset()
        ticket = fresh.lookup(5).ticket
        fresh.forget([5])
        fresh.fill(5, old, ticket)
        #expect(fresh.lookup(5).value == nil)

        // Inodes sharing a slot (8 apart) evict each other and are never confused.
        cache.fill(13, Self.inode(13, mode: 0o600), cache.lookup(13).ticket)
        #expect(cache.lookup(5).value == nil)
        #expect(cache.lookup(13).value?.ino == 13)
        #expect(InodeCache(entries: 0).capacity == 0)
        #expect(InodeCache(entries: 1000).capacity == 512)
    }

    /// Entries cache absent names too: a create stores its entry over the absence, a
    /// removal stores the absence, and a forgotten name is read again.
    /// A create holds only its directory's lock: from its commit on, another caller can
    /// find the new inode and change it under the inode's lock before the create stores
    /// anything in the cache. So the create stores nothing for the new inode (its slot is
    /// forgotten), and the first read fills it from the store; the parent is stored.
    @Test func aCreateLeavesTheNewInodeToItsFirstRead() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let fs = f.fs
        _ = try fs.getattr(fs.root)
        let before = try fs.create(.root, fs.root, n("first"), mode: 0o644)
        _ = try fs.getattr(before.ino)
        let made = try fs.create(.root, fs.root, n("new"), mode: 0o644)
        #expect(fs.inodeCache.lookup(made.ino).value == nil, "the create stored the new inode")
        #expect(fs.inodeCache.lookup(fs.root).value?.entryCount == 2, "the parent, whose lock it held, is stored")
        #expect(try fs.getattr(made.ino) == made)
        #expect(fs.inodeCache.lookup(made.ino).value == made)
        let dir = try fs.mkdir(.root, fs.root, n("dir"), mode: 0o755)
        #expect(fs.inodeCache.lookup(dir.ino).value == nil)
        try f.expectClean()
    }

    @Test func entriesCacheAbsenceAndPresence() {
        let cache = EntryCache(entries: 64)
        let key = EntryKey(dir: 1, name: n("a"))
        let entry = DirEntry(name: n("a"), ino: 7, type: .regular, cookie: 3)
        let ticket = cache.lookup(key).ticket
        #expect(cache.lookup(key).value == nil)
        cache.fill(key, nil, ticket)
        #expect(cache.lookup(key).value == .some(nil), "the absence is cached")
        cache.apply([(key, .some(entry))])
        #expect(cache.lookup(key).value == .some(entry))
        // Same name in another directory, and another name: separate keys.
        #expect(cache.lookup(EntryKey(dir: 2, name: n("a"))).value == nil)
        #expect(cache.lookup(EntryKey(dir: 1, name: n("b"))).value == nil)
        cache.apply([(key, .some(nil))])
        #expect(cache.lookup(key).value == .some(nil))
        cache.forget([key])
        #expect(cache.lookup(key).value == nil, "forgotten: a read goes to the store")
    }

    /// With snapshots, an entry read is steered by its directory's content version. One
    /// the caller read before a create at the head would miss the new entry, and the cache
    /// would keep the absence: the version is read again after the ticket.
    @Test func anEntryReadWithAStaleHintFindsTheEntry() throws {
        let f = try FSFixture(LSMBackendFactory())
        defer { f.close() }
        let fs = f.fs
        let dir = try fs.mkdir(.root, fs.root, n("d"), mode: 0o755)
        _ = try fs.create(.root, dir.ino, n("a"), mode: 0o644)
        _ = try fs.pool.snapshot("root", "s")
        let before = try fs.getattr(dir.ino)
        let made = try fs.create(.root, dir.ino, n("b"), mode: 0o644)
        #expect(before.contentVersion != fs.view.head, "the hint names the snapshot's version")
        fs.entryCache.reset()
        #expect(try fs.entry(dir.ino, n("b"), hint: before.contentVersion)?.ino == made.ino)
        #expect(fs.entryCache.lookup(EntryKey(dir: dir.ino, name: n("b"))).value??.ino == made.ino)
        #expect(try fs.lookup(.root, dir.ino, n("b")).ino == made.ino)
        // A snapshot's handle keeps a sixteenth of the slots.
        let snapshot = try fs.pool.filesystem(named: "root@s")
        #expect(snapshot.inodeCache.capacity == fs.inodeCache.capacity / 16)
        #expect(snapshot.entryCache.capacity == fs.entryCache.capacity / 16)
        try f.expectClean()
    }

    /// Stops the collector after each of its batches in turn (a crash point) and compares
    /// the caches with the store there, before the collection's end refreshes the handle.
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
            #expect(fs.inodeCache.cached.count >= 6)
            try fs.pool.deleteSnapshot("root@s")
            fs.crashPoints.arm("collect.after-commit", skip: skip)
            do {
                try fs.pool.collectGarbage()
            } catch {
                stopped += 1
                #expect(try fs.cacheMismatches() == [], "stopped after collector batch \(skip + 1)")
                continue
            }
            // The collection ran to its end: the tree is the one read before it.
            #expect(try fs.cacheMismatches() == [])
            #expect(try fingerprint(fs) == tree)
            break
        }
        #expect(stopped > 0, "the collector never committed a batch")
    }
}
