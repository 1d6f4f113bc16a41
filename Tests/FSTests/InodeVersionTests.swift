// What a handle remembers of inode records never changes an answer: a seeded run of
// writes, attribute changes, creates, renames, unlinks, snapshots, deleted snapshots with
// collection, and rollbacks, where after every step
//   - the tree read through the versions remembered (InodeVersions) equals the tree read
//     after forgetting them;
//   - every inode and entry the caches hold (HandleCache) equals the store's record, and
//     the tree read through the caches equals the tree read after emptying them.
// The map and the caches are kept tiny so entries are also evicted all the time.

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
        var (f, random, seed) = try RandomSteps.start(factory, "rememberedVersionsNeverChangeAnAnswer") { options in
            options.inodeVersionEntries = 5
            options.inodeCacheEntries = 0
            options.entryCacheEntries = 0
        }
        defer { try? f.fs.close() }
        let fs = f.fs
        let pool = fs.pool
        let name = RandomSteps.name
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
        var steps = RandomSteps(snapshots: ["a", "b"])
        for step in 0..<80 {
            guard let action = try steps.next(fs, &random) else { continue }
            let remembered = try fingerprint(fs)
            fs.inodeVersions.reset()
            let searched = try fingerprint(fs)
            #expect(remembered == searched, "step \(step): \(action); replay with ZEROFS_SEED=\(seed)")
            #expect(fs.inodeVersions.count <= 5)
        }
        try f.expectClean()
        try f.expectCleanAfterCollecting()
    }

    @Test(arguments: [MemoryBackendFactory() as any KVBackendFactory, LSMBackendFactory()])
    func cachesAlwaysMatchTheStore(_ factory: any KVBackendFactory) throws {
        var (f, random, seed) = try RandomSteps.start(factory, "cachesAlwaysMatchTheStore") { options in
            options.inodeCacheEntries = 4
            options.entryCacheEntries = 4
        }
        defer { try? f.fs.close() }
        let fs = f.fs
        var steps = RandomSteps()
        for step in 0..<120 {
            guard let action = try steps.next(fs, &random) else { continue }
            #expect(try fs.cacheMismatches() == [], "step \(step): \(action); replay with ZEROFS_SEED=\(seed)")
            // The tree, and every name looked up (absent ones too), through the caches and
            // after emptying them.
            let names = { () throws -> [String] in
                try (0..<12).map { i in (try? fs.lookup(.root, fs.root, RandomSteps.name(i))).map { "f\(i) \($0.ino)" } ?? "-" }
            }
            let cached = try fingerprint(fs) + names()
            #expect(!fs.inodeCache.cached.isEmpty)
            #expect(!fs.entryCache.cached.isEmpty)
            fs.inodeCache.reset()
            fs.entryCache.reset()
            let stored = try fingerprint(fs) + names()
            #expect(cached == stored, "step \(step): \(action); replay with ZEROFS_SEED=\(seed)")
        }
        try f.expectClean()
        try f.expectCleanAfterCollecting()
    }
}

/// One random change to the root dataset's top directory per step: files f0-f11 written,
/// changed, renamed over each other and unlinked, snapshots taken, deleted (then
/// collected) and rolled back to.
struct RandomSteps {
    var snapshots: [String] = []
    var made = 0

    static func name(_ i: Int) -> [UInt8] { Array("f\(i)".utf8) }

    /// A filesystem for the seeded run named `test`, its options adjusted, with f0-f7
    /// written; the generator, and the seed to print.
    static func start(
        _ factory: any KVBackendFactory, _ test: String, _ adjust: (inout FSOptions) -> Void
    ) throws -> (FSFixture, SeededGenerator, UInt64) {
        let seed = TestSeed.resolve(test)
        var options = FSFixture.testOptions
        adjust(&options)
        let f = try FSFixture(factory, options: options)
        for i in 0..<8 { try f.fs.write(.root, try f.fs.create(.root, f.fs.root, name(i), mode: 0o644).ino, offset: 0, [UInt8(i)]) }
        return (f, SeededGenerator(seed: seed), seed)
    }

    /// Makes one change and names it, or returns nil when the one drawn did not apply.
    mutating func next(_ fs: FileSystem, _ random: inout SeededGenerator) throws -> String? {
        let pool = fs.pool
        let i = Int.random(in: 0..<12, using: &random)
        let existing = try? fs.lookup(.root, fs.root, Self.name(i))
        switch Int.random(in: 0..<11, using: &random) {
        case 0...2:
            let file = try existing ?? fs.create(.root, fs.root, Self.name(i), mode: 0o644)
            try fs.write(.root, file.ino, offset: UInt64.random(in: 0..<4, using: &random), [UInt8(truncatingIfNeeded: made &+ i)])
            return "write f\(i)"
        case 3:
            guard let existing else { return nil }
            try fs.setattr(.root, existing.ino, SetAttributes(mode: UInt32.random(in: 0o600...0o777, using: &random)))
            return "chmod f\(i)"
        case 4:
            guard existing != nil else { return nil }
            try fs.unlink(.root, fs.root, Self.name(i))
            return "unlink f\(i)"
        case 5, 6:
            made += 1
            _ = try pool.snapshot("root", "s\(made)")
            snapshots.append("s\(made)")
            return "snapshot s\(made)"
        case 7, 8:
            guard !snapshots.isEmpty else { return nil }
            let gone = snapshots.remove(at: Int.random(in: 0..<snapshots.count, using: &random))
            try pool.deleteSnapshot("root@\(gone)")
            try pool.collectGarbage()
            return "delete \(gone) and collect"
        case 9:
            guard existing != nil else { return nil }
            let j = Int.random(in: 0..<12, using: &random)
            try fs.rename(.root, fs.root, Self.name(i), fs.root, Self.name(j))
            return "rename f\(i) to f\(j)"
        default:
            guard let target = snapshots.randomElement(using: &random) else { return nil }
            try pool.rollback("root", to: target)
            return "rollback to \(target)"
        }
    }
}
