// fsck finds and names each kind of damage (injected straight into the store).

@testable import FS
import Engine
import FSTestSupport
import MemoryBackend
import Testing

@Suite struct FsckTests {
    typealias Damage = @Sendable (FSFixture, _ file: Inode, _ dir: Inode) throws -> Void

    static let damages: [(String, String, Damage)] = [
        ("a missing scan record", "no scan record for cookie", { f, file, dir in
            let entry = try #require(try f.fs.entry(dir.ino, n("file")))
            try f.store.delete(FSKeys.versioned(FSKeys.dirScan(dir.ino, entry.cookie), 1))
        }),
        ("a chunk without an inode", "no inode and no delete record", { f, _, _ in
            try f.store.put(FSKeys.versioned(FSKeys.chunk(9999, 0), 1), ChunkRecord(epoch: 0, data: [1]).encode(compress: false))
        }),
        ("wrong statistics", "statistics count", { f, _, _ in
            try f.store.put(FSKeys.stats(0), FSCounters(inodes: 1, bytes: 0).encode())
        }),
        ("a wrong link count", "has nlink 5 but 1 directory entries", { f, file, _ in
            var broken = file
            broken.nlink = 5
            try f.store.put(FSKeys.versioned(FSKeys.inode(file.ino), 1), broken.encode())
        }),
        ("an unreachable inode", "is not reachable from the root", { f, _, _ in
            var orphan = Inode(ino: 5000, type: .regular, mode: 0o644, uid: 0, gid: 0, now: Timestamp(seconds: 1, nanoseconds: 0))
            orphan.nlink = 0
            try f.store.put(FSKeys.versioned(FSKeys.inode(5000), 1), orphan.encode())
        }),
        ("a missing change index record", "without a change index record", { f, file, _ in
            try f.store.delete(FSKeys.changeIndex(1, file.ino))
        }),
        ("data past the size", "visible data ends past the file size", { f, file, _ in
            var shrunk = file
            shrunk.size = 1
            try f.store.put(FSKeys.versioned(FSKeys.inode(file.ino), 1), shrunk.encode())
        }),
        ("a rewound cookie counter", "is not below the directory's cookie counter", { f, _, dir in
            try f.store.put(FSKeys.cookieCounter(dir.ino), SystemRecords.encodeUInt64(1))
        }),
        ("an entry whose name holds a slash", "a name must be 1 to 255 bytes", { f, file, dir in
            let entry = try #require(try f.fs.entry(dir.ino, n("file")))
            try f.store.put(FSKeys.versioned(FSKeys.dirEntry(dir.ino, n("a/b")), 1), entry.encodeEntry())
        }),
        ("a lost delete record", "no inode and no delete record", { f, file, dir in
            // Too large to lose its chunks with its inode: they wait behind a delete record.
            try f.fs.write(.root, file.ino, offset: 0, [UInt8](repeating: 1, count: (FileSystem.inlineReclaimChunks + 1) * f.fs.chunkSize))
            try f.fs.unlink(.root, dir.ino, n("file"))
            try f.store.delete(FSKeys.reclaim(file.ino, 1))
        }),
    ]

    @Test(arguments: FsckTests.damages.map(\.0))
    func findsDamage(_ label: String) throws {
        let (_, expected, damage) = FsckTests.damages.first { $0.0 == label }!
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let dir = try f.fs.mkdir(.root, FileSystem.rootInode, n("dir"), mode: 0o755)
        let file = try f.fs.create(.root, dir.ino, n("file"), mode: 0o644)
        try f.fs.write(.root, file.ino, offset: 0, n("data"))
        try f.expectClean("before the damage")
        try damage(f, try f.fs.getattr(file.ino), try f.fs.getattr(dir.ino))
        let problems = try f.fsck().problems
        #expect(problems.contains { $0.contains(expected) }, "\(problems)")
    }
}
