// The disk cache in front of a remote object store: write-through, hits without the
// store, damaged pages found and fetched again, eviction by size, and a restart.

import Engine
@testable import ObjectStore
import Synchronization
import Testing
import Workloads

#if canImport(Glibc)
import Glibc
#endif

/// A memory store that counts the objects opened through it.
final class CountingObjectStore: ObjectStore {
    let base = MemoryObjectStore()
    let opens = Atomic<Int>(0)
    var location: String { "counting memory" }

    func get(_ name: String) throws -> [UInt8]? { try base.get(name) }

    func open(_ name: String) throws -> (any ReadableObject)? {
        opens.add(1, ordering: .relaxed)
        return try base.open(name)
    }

    func put(_ name: String, _ bytes: [UInt8]) throws { try base.put(name, bytes) }
    func putIfAbsent(_ name: String, _ bytes: [UInt8]) throws -> Bool { try base.putIfAbsent(name, bytes) }
    func list(prefix: String) throws -> [String] { try base.list(prefix: prefix) }
    func delete(_ name: String) throws { try base.delete(name) }
    func makeWriter(_ name: String) throws -> any ObjectWriter { BufferedObjectWriter(store: self, name: name) }
}

@Suite struct DiskCacheTests {
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// XORs one byte of a file in place.
    static func flip(_ path: String, at offset: Int, _ mask: UInt8) throws {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { throw KVError.posix("open", path: path, errno: errno) }
        defer { close(fd) }
        var byte: UInt8 = 0
        guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw KVError.posix("pread", path: path, errno: errno) }
        byte ^= mask
        guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw KVError.posix("pwrite", path: path, errno: errno) }
    }

    func withFolder(_ body: (String) throws -> Void) throws {
        let folder = try KVBench.makeTemporaryDirectory()
        defer { try? FileOps.removeTree(folder) }
        try body(folder)
    }

    @Test func writtenTablesAreReadFromTheCacheAlone() throws {
        try withFolder { folder in
            let remote = CountingObjectStore()
            let cache = try DiskCachedObjectStore(base: remote, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10)
            let table = Self.bytes(200_000, seed: 1)
            let writer = try cache.makeWriter("sst/1.sst")
            table.withUnsafeBytes { all in
                var at = 0
                while at < all.count {
                    let end = min(all.count, at + 7_777)
                    try! writer.append(UnsafeRawBufferPointer(rebasing: all[at..<end]))
                    at = end
                }
            }
            try writer.commit()
            try cache.put("manifest/1.manifest", [1, 2, 3])
            #expect(try remote.base.get("sst/1.sst") == table)

            let object = try #require(try cache.open("sst/1.sst"))
            #expect(object.size == table.count)
            for (offset, length) in [(0, 10), (65_530, 20), (131_000, 69_000), (199_999, 1), (0, 200_000)] {
                #expect(try object.read(offset: offset, length: length) == Array(table[offset..<(offset + length)]))
            }
            #expect(remote.opens.load(ordering: .relaxed) == 0, "a written table is served from the cache")
            #expect(cache.counters.misses == 0)
            // Manifests are not cached: they go to the store.
            #expect(try cache.get("manifest/1.manifest") == [1, 2, 3])
            #expect(throws: KVError.self) { try object.read(offset: 199_990, length: 20) }
        }
    }

    /// A cache folder remembers which store its pages came from: opened in front of
    /// another store (the configuration now names another bucket), it starts empty, since
    /// that store's `sst/1.sst` is another table whose pages pass their own checksums.
    @Test func aCacheFolderServesOnlyTheStoreItCameFrom() throws {
        try withFolder { folder in
            let first = CountingObjectStore()
            let table = Self.bytes(100_000, seed: 2)
            try first.base.put("sst/1.sst", table)
            var cache: DiskCachedObjectStore? = try DiskCachedObjectStore(base: first, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10, origin: "s3://a")
            #expect(try cache!.open("sst/1.sst")!.read(offset: 0, length: 100) == Array(table.prefix(100)))
            // The same store again: its pages are kept.
            cache = try DiskCachedObjectStore(base: first, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10, origin: "s3://a")
            #expect(cache!.counters.pages > 0)
            // Only the cache's own page folders go: other files in the folder stay.
            try FileOps.writeFileAtomically(folder + "/cache/keep.txt", [1])
            try FileOps.makeDirectories(folder + "/cache/notes")
            try FileOps.writeFileAtomically(folder + "/cache/notes/n.txt", [2])
            let second = CountingObjectStore()
            let other = Self.bytes(100_000, seed: 3)
            try second.base.put("sst/1.sst", other)
            // Opened for another store only once no process uses the folder
            // (aCacheFolderInUseForAnotherStoreIsRefused): the open above is let go first.
            cache = nil
            cache = try DiskCachedObjectStore(base: second, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10, origin: "s3://b")
            #expect(cache!.counters.pages == 0)
            #expect(try cache!.open("sst/1.sst")!.read(offset: 0, length: 100) == Array(other.prefix(100)))
            #expect(FileOps.kind(of: folder + "/cache/keep.txt") == .file && FileOps.kind(of: folder + "/cache/notes/n.txt") == .file)
        }
    }

    /// A store made anew at the same origin (deleted and created again, or restored in
    /// place) has another identity: its `sst/1.sst` is another table, of the same size
    /// here, which the pages of the old one would serve wrongly.
    @Test func aCacheFolderServesOnlyTheStoreWhoseIdentityItRecorded() throws {
        try withFolder { folder in
            let remote = CountingObjectStore()
            try remote.base.put("store-id", [1, 2, 3])
            let old = Self.bytes(100_000, seed: 4)
            try remote.base.put("sst/1.sst", old)
            func cache() throws -> DiskCachedObjectStore {
                try DiskCachedObjectStore(
                    base: remote, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10, origin: "s3://a", identity: "store-id")
            }
            var cached: DiskCachedObjectStore? = try cache()
            #expect(try cached!.open("sst/1.sst")!.read(offset: 0, length: 100) == Array(old.prefix(100)))
            cached = try cache()
            #expect(cached!.counters.pages > 0, "the same store: pages kept")

            // Made anew behind the cache's back (a restore by another process), and opened
            // again once the open above is let go (it serves the old store).
            let new = Self.bytes(100_000, seed: 5)
            try remote.base.put("store-id", [9, 9, 9])
            try remote.base.put("sst/1.sst", new)
            let refused = #expect(throws: KVError.self) { _ = try cache() }
            #expect(refused?.message.contains("an earlier store made at s3://a") == true, "\(String(describing: refused))")
            cached = nil
            cached = try cache()
            #expect(cached!.counters.pages == 0)
            #expect(try cached!.open("sst/1.sst")!.read(offset: 0, length: 100) == Array(new.prefix(100)))

            // Made anew through the cache (a writer creating a store there): the identity's
            // write empties it at once, and the next open keeps what came after.
            #expect(cached!.counters.pages > 0)
            try cached!.put("store-id", [7])
            #expect(cached!.counters.pages == 0)
            let newest = Self.bytes(100_000, seed: 6)
            try cached!.put("sst/1.sst", newest)
            cached = try cache()
            #expect(cached!.counters.pages > 0)
            #expect(try cached!.open("sst/1.sst")!.read(offset: 0, length: 100) == Array(newest.prefix(100)))
            #expect(try FileOps.readFile(folder + "/cache/ORIGIN") == Array("s3://a\nstore 07".utf8))
        }
    }

    /// A store made anew through the cache empties the folder under the shared lock; a
    /// process still serving the old store may write pages of it afterwards (an object it
    /// had open). Those are another store's pages to the new store's processes: misses,
    /// never its data, even for an object of the same name and size.
    @Test func pagesWrittenForTheOldStoreAfterItWasMadeAnewAreNotServed() throws {
        try withFolder { folder in
            let remote = CountingObjectStore()
            try remote.base.put("store-id", [1, 2, 3])
            let pageSize = 64 << 10
            let old = Self.bytes(100_000, seed: 11)
            try remote.base.put("sst/1.sst", old)
            func cache() throws -> DiskCachedObjectStore {
                try DiskCachedObjectStore(
                    base: remote, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: pageSize, origin: "s3://a", identity: "store-id")
            }
            let writer = try cache()
            let stale = try cache()
            try writer.put("store-id", [7])
            let new = Self.bytes(100_000, seed: 12)
            try remote.base.put("sst/1.sst", new)
            // The process still serving the old store stores the first page of its table.
            old.withUnsafeBytes { stale.storePage("sst/1.sst", 0, objectSize: old.count, UnsafeRawBufferPointer(rebasing: $0[0..<pageSize])) }
            // ... and a page from before tags (0 where the tag goes) sits at the second.
            let untagged = DiskCachedObjectStore.encode(objectSize: old.count, tag: 0, old.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[pageSize...]) })
            try FileOps.writeFileAtomically(folder + "/cache/" + DiskCachedObjectStore.pageKey("sst/1.sst", 1), untagged)

            let reader = try cache()
            #expect(reader.counters.pages == 2, "the index holds both pages until they are read")
            let opens = remote.opens.load(ordering: .relaxed)
            #expect(try reader.get("sst/1.sst") == new)
            #expect(remote.opens.load(ordering: .relaxed) > opens, "read from the store, not the pages")
            #expect(reader.counters.corruptPages == 0, "another store's page is not damage")
            #expect(try reader.get("sst/1.sst") == new, "its own pages now")
            _ = stale
        }
    }

    /// Processes that share a cache folder share it for one store: an open in front of
    /// another store while the folder is in use fails, and takes nothing from the pages
    /// the users have. flock() locks belong to the open file, so two opens in one process
    /// meet as two processes would.
    @Test func aCacheFolderInUseForAnotherStoreIsRefused() throws {
        try withFolder { folder in
            let first = CountingObjectStore()
            let table = Self.bytes(100_000, seed: 8)
            try first.base.put("sst/1.sst", table)
            func open(_ base: CountingObjectStore, _ origin: String) throws -> DiskCachedObjectStore {
                try DiskCachedObjectStore(base: base, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10, origin: origin)
            }
            var writer: DiskCachedObjectStore? = try open(first, "s3://a")
            #expect(try writer!.get("sst/1.sst") == table)
            // A second user of the same store shares the folder and its pages.
            var replica: DiskCachedObjectStore? = try open(first, "s3://a")
            #expect(replica!.counters.pages > 0)

            let second = CountingObjectStore()
            try second.base.put("sst/1.sst", Self.bytes(100_000, seed: 9))
            do {
                _ = try open(second, "s3://b")
                Issue.record("a folder in use for s3://a was opened for s3://b")
            } catch let error as KVError {
                #expect(error.code == .locked)
                #expect("\(error)".contains("s3://a") && "\(error)".contains("storage.path"), "\(error)")
            }
            let opens = first.opens.load(ordering: .relaxed)
            #expect(try replica!.open("sst/1.sst")!.read(offset: 0, length: 100_000) == table)
            #expect(first.opens.load(ordering: .relaxed) == opens, "the pages are still there")
            #expect(try FileOps.readFile(folder + "/cache/ORIGIN") == Array("s3://a".utf8))

            // While one user is left, still refused; with none, the folder changes hands.
            writer = nil
            #expect(throws: KVError.self) { _ = try open(second, "s3://b") }
            replica = nil
            let taken = try open(second, "s3://b")
            #expect(taken.counters.pages == 0)
            #expect(try FileOps.readFile(folder + "/cache/ORIGIN") == Array("s3://b".utf8))
            // ... and the first store is refused now, until the store in front of which
            // the folder was taken is closed: its reads go to the store from then on.
            #expect(throws: KVError.self) { _ = try open(first, "s3://a") }
            taken.storeClosed()
            let again = try open(first, "s3://a")
            #expect(again.counters.pages == 0)
            let secondOpens = second.opens.load(ordering: .relaxed)
            #expect(try taken.get("sst/1.sst") == Self.bytes(100_000, seed: 9))
            #expect(second.opens.load(ordering: .relaxed) == secondOpens + 1)
        }
    }

    @Test func aDamagedPageIsDetectedAndFetchedAgain() throws {
        try withFolder { folder in
            let remote = CountingObjectStore()
            let table = Self.bytes(150_000, seed: 2)
            try remote.put("sst/7.sst", table)
            let cache = try DiskCachedObjectStore(base: remote, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10)
            let object = try #require(try cache.open("sst/7.sst"))
            #expect(try object.read(offset: 70_000, length: 5_000) == Array(table[70_000..<75_000]))
            #expect(cache.counters.misses == 1)
            #expect(try object.read(offset: 80_000, length: 100) == Array(table[80_000..<80_100]))
            #expect(cache.counters.misses == 1, "the page is cached now")

            // Flip one payload byte of page 1 on disk, in place (as bit rot would: the
            // cache keeps the page file open).
            let page = folder + "/cache/" + DiskCachedObjectStore.pageKey("sst/7.sst", 1)
            let size = try FileOps.readFile(page).count
            try Self.flip(page, at: size - 100, 0x40)
            #expect(try object.read(offset: 64 << 10, length: 64 << 10) == Array(table[(64 << 10)..<(128 << 10)]))
            #expect(cache.counters.corruptPages == 1)
            #expect(cache.counters.misses == 2, "the damaged page came from the store again")
            #expect(try object.read(offset: 64 << 10, length: 64 << 10) == Array(table[(64 << 10)..<(128 << 10)]))
            #expect(cache.counters.misses == 2)

            // A damaged header is found the same way, by a new cache that must read it.
            let fresh = try DiskCachedObjectStore(base: remote, directory: folder + "/cache", capacityBytes: 8 << 20, pageSize: 64 << 10)
            try Self.flip(page, at: 30, 0x01)
            #expect(try fresh.get("sst/7.sst") == table)
            #expect(fresh.counters.corruptPages == 1)
        }
    }

    @Test func pagesSurviveARestartAndTheCacheKeepsToItsSize() throws {
        try withFolder { folder in
            let remote = CountingObjectStore()
            for id in 0..<10 { try remote.put("sst/\(id).sst", Self.bytes(100_000, seed: UInt64(id))) }
            var cache = try DiskCachedObjectStore(base: remote, directory: folder + "/cache", capacityBytes: 400_000, pageSize: 64 << 10)
            for id in 0..<10 { _ = try cache.get("sst/\(id).sst") }
            #expect(cache.counters.bytes <= 400_000)
            #expect(cache.counters.evictedPages > 0)
            // The most recently read tables are still there after a restart, and read
            // without the store.
            cache = try DiskCachedObjectStore(base: remote, directory: folder + "/cache", capacityBytes: 400_000, pageSize: 64 << 10)
            #expect(cache.counters.pages > 0)
            let opensBefore = remote.opens.load(ordering: .relaxed)
            #expect(try cache.get("sst/9.sst") == Self.bytes(100_000, seed: 9))
            #expect(remote.opens.load(ordering: .relaxed) == opensBefore)
            #expect(cache.counters.misses == 0)
            // The oldest is gone from the cache but still read, from the store.
            #expect(try cache.get("sst/0.sst") == Self.bytes(100_000, seed: 0))
            #expect(cache.counters.misses > 0)
            // A deleted object leaves the cache too.
            try cache.delete("sst/9.sst")
            #expect(try cache.open("sst/9.sst") == nil)
            #expect(FileOps.kind(of: folder + "/cache/" + DiskCachedObjectStore.folder("sst/9.sst")) == .missing)
        }
    }
}
