// The versions a handle remembers for inode records (InodeVersions) never change an
// answer: a seeded run of writes, attribute changes, creates, unlinks, snapshots, deleted
// snapshots with collection, and rollbacks, where after every step the tree read through
// the remembered versions equals the tree read after forgetting them. The map is kept
// tiny so entries are also evicted all the time.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LSMBackend
import MemoryBackend
import Testing

@Suite struct InodeVersionTests {
    @Test(arguments: [MemoryBackendFactory() as any KVBackendFactory, LSMBackendFactory()])
    func rememberedVersionsNeverChangeAnAnswer(_ factory: any KVBackendFactory) throws {
        let seed = TestSeed.resolve("rememberedVersionsNeverChangeAnAnswer")
        var random = SeededGenerator(seed: seed)
        var options = FSFixture.testOptions
        options.inodeVersionEntries = 5
        let f = try FSFixture(factory, options: options)
        defer { try? f.fs.close() }
        let fs = f.fs
        let pool = fs.pool
        let name = { (i: Int) in Array("f\(i)".utf8) }
        for i in 0..<8 { try fs.write(.root, try fs.create(.root, fs.root, name(i), mode: 0o644).ino, offset: 0, [UInt8(i)]) }
        // A rollback to a snapshot on another branch: the version remembered on the first
        // branch is still visible there but no longer the newest record.
        let f0 = try fs.lookup(.root, fs.root, name(0)).ino
        _ = try pool.snapshot("root", "a")
        try fs.setattr(.root, f0, SetAttributes(mode: 0o600))
        _ = try pool.snapshot("root", "b")
        try pool.rollback("root", to: "a")
        #expect(try fs.getattr(f0).mode & 0o777 == 0o644)
        try pool.rollback("root", to: "b")
        #expect(try fs.getattr(f0).mode & 0o777 == 0o600)
        var snapshots = ["a", "b"]
        var made = 0
        for step in 0..<80 {
            let i = Int.random(in: 0..<12, using: &random)
            let existing = try? fs.lookup(.root, fs.root, name(i))
            let action: String
            switch Int.random(in: 0..<10, using: &random) {
            case 0...2:
                let file = try existing ?? fs.create(.root, fs.root, name(i), mode: 0o644)
                try fs.write(.root, file.ino, offset: UInt64.random(in: 0..<4, using: &random), [UInt8(step)])
                action = "write f\(i)"
            case 3:
                guard let existing else { continue }
                try fs.setattr(.root, existing.ino, SetAttributes(mode: UInt32.random(in: 0o600...0o777, using: &random)))
                action = "chmod f\(i)"
            case 4:
                guard existing != nil else { continue }
                try fs.unlink(.root, fs.root, name(i))
                action = "unlink f\(i)"
            case 5, 6:
                made += 1
                _ = try pool.snapshot("root", "s\(made)")
                snapshots.append("s\(made)")
                action = "snapshot s\(made)"
            case 7, 8:
                guard !snapshots.isEmpty else { continue }
                let gone = snapshots.remove(at: Int.random(in: 0..<snapshots.count, using: &random))
                try pool.deleteSnapshot("root@\(gone)")
                try pool.collectGarbage()
                action = "delete \(gone) and collect"
            default:
                guard let target = snapshots.randomElement(using: &random) else { continue }
                try pool.rollback("root", to: target)
                action = "rollback to \(target)"
            }
            let remembered = try fingerprint(fs)
            fs.inodeVersions.reset()
            let searched = try fingerprint(fs)
            #expect(remembered == searched, "step \(step): \(action); replay with ZEROFS_SEED=\(seed)")
            #expect(fs.inodeVersions.count <= 5)
        }
        try f.expectClean()
        try f.expectCleanAfterCollecting()
    }
}
