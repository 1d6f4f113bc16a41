// Deferred access times (AccessTimes.swift): a read that moves atime shows it at once and
// writes it later (by the worker, a change to the inode, a snapshot, or the close), never
// over an atime set since, never into an inode unlinked meanwhile, and never into the
// state a rollback brings back.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import LSMBackend
import MemoryBackend
import Synchronization
import Testing

@Suite struct AccessTimeTests {
    private static let old = Timestamp(seconds: 1000, nanoseconds: 0)

    /// A file whose atime a read will move (older than its mtime).
    private static func staleFile(_ fs: FileSystem, _ name: String) throws -> UInt64 {
        let file = try fs.create(.root, fs.root, n(name), mode: 0o644)
        try fs.write(.root, file.ino, offset: 0, n("data"))
        _ = try fs.setattr(.root, file.ino, SetAttributes(atime: .set(old)))
        return file.ino
    }

    @Test(arguments: [MemoryBackendFactory() as any KVBackendFactory, LSMBackendFactory()])
    func aReadShowsItsAtimeAtOnceAndWritesItLater(_ factory: any KVBackendFactory) throws {
        let f = try FSFixture(factory)
        defer { f.close() }
        let ino = try Self.staleFile(f.fs, "f")
        _ = try f.fs.read(.root, ino, offset: 0, count: 4)
        let moved = try f.fs.getattr(ino).atime
        #expect(moved > Self.old)
        #expect(try f.fs.storedInode(ino).atime == Self.old, "not written by the read")
        // Read again past the cache: the deferred atime is laid over the record.
        f.fs.inodeCache.reset()
        #expect(try f.fs.getattr(ino).atime == moved)
        #expect(try f.fs.flushAccessTimes() == 1)
        #expect(try f.fs.storedInode(ino).atime == moved)
        #expect(try f.fs.flushAccessTimes() == 0, "nothing left to write")
        try f.expectClean()

        // The close writes them too.
        let second = try Self.staleFile(f.fs, "g")
        _ = try f.fs.read(.root, second, offset: 0, count: 4)
        let seen = try f.fs.getattr(second).atime
        try f.reopen()
        #expect(try f.fs.getattr(second).atime == seen)
    }

    /// A dataset made read-only keeps the atimes its reads showed: they are written first
    /// (a read-only dataset's deferred notes are dropped).
    @Test func makingADatasetReadOnlyKeepsTheAtimesReadsShowed() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let ino = try Self.staleFile(f.fs, "f")
        _ = try f.fs.read(.root, ino, offset: 0, count: 4)
        let moved = try f.fs.getattr(ino).atime
        try f.fs.pool.setReadonly("root", true)
        #expect(try f.fs.storedInode(ino).atime == moved)
        _ = try f.fs.flushAccessTimes()
        f.fs.inodeCache.reset()
        #expect(try f.fs.getattr(ino).atime == moved, "the atime went back")
        try f.fs.pool.setReadonly("root", false)
        try f.expectClean()
    }

    @Test func aChangeWritesTheDeferredAtimeAndASetAtimeWins() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let ino = try Self.staleFile(f.fs, "f")
        _ = try f.fs.read(.root, ino, offset: 0, count: 4)
        let moved = try f.fs.getattr(ino).atime
        // A chmod writes the inode as it reads it: the atime goes with it.
        _ = try f.fs.setattr(.root, ino, SetAttributes(mode: 0o600))
        #expect(try f.fs.storedInode(ino).atime == moved)
        #expect(try f.fs.flushAccessTimes() == 0)

        // An atime set after a read's deferred one stays, in memory and on disk.
        _ = try f.fs.setattr(.root, ino, SetAttributes(atime: .set(Self.old)))
        _ = try f.fs.read(.root, ino, offset: 0, count: 4)
        _ = try f.fs.setattr(.root, ino, SetAttributes(atime: .set(Self.old)))
        #expect(try f.fs.getattr(ino).atime == Self.old)
        f.fs.inodeCache.reset()
        #expect(try f.fs.getattr(ino).atime == Self.old)
        #expect(try f.fs.flushAccessTimes() == 0)
        #expect(try f.fs.storedInode(ino).atime == Self.old)
        try f.expectClean()
    }

    @Test func aSetAtimeThatFailsToCommitKeepsTheDeferredAtime() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let store = FailingWriteBackend(try harness.open(harness.freshPath()))
        let fs = try FileSystem.open(store, options: FSFixture.testOptions)
        defer { try? fs.close() }
        let ino = try Self.staleFile(fs, "f")
        _ = try fs.read(.root, ino, offset: 0, count: 4)
        let moved = try fs.getattr(ino).atime
        store.failNext.withLock { $0 = true }
        #expect(throws: FSError.self) { try fs.setattr(.root, ino, SetAttributes(atime: .set(Self.old))) }
        // The failed change took nothing: the read's atime still shows, and is written.
        #expect(try fs.getattr(ino).atime == moved)
        fs.inodeCache.reset()
        #expect(try fs.getattr(ino).atime == moved)
        #expect(try fs.flushAccessTimes() == 1)
        #expect(try fs.storedInode(ino).atime == moved)
    }

    @Test func anUnlinkedFileIsNotWrittenBack() throws {
        let f = try FSFixture(MemoryBackendFactory())
        defer { f.close() }
        let ino = try Self.staleFile(f.fs, "f")
        _ = try f.fs.read(.root, ino, offset: 0, count: 4)
        try f.fs.unlink(.root, f.fs.root, n("f"))
        #expect(try f.fs.flushAccessTimes() == 0)
        expectErrno(.ESTALE) { _ = try f.fs.getattr(ino) }
        try f.fs.pool.reclaimNow()
        try f.expectClean()
    }

    @Test func aSnapshotHoldsTheDeferredAtimesAndARollbackDropsThem() throws {
        let f = try FSFixture(LSMBackendFactory())
        defer { f.close() }
        let fs = f.fs
        let ino = try Self.staleFile(fs, "f")
        _ = try fs.pool.snapshot("root", "before")
        _ = try fs.read(.root, ino, offset: 0, count: 4)
        let moved = try fs.getattr(ino).atime
        _ = try fs.pool.snapshot("root", "after")
        let after = try fs.pool.filesystem(named: "root@after")
        #expect(try after.getattr(ino).atime == moved, "written before the snapshot")

        // A read at the head, then a rollback: the deferred atime went with the head.
        _ = try fs.setattr(.root, ino, SetAttributes(atime: .set(Self.old)))
        _ = try fs.read(.root, ino, offset: 0, count: 4)
        try fs.pool.rollback("root", to: "before")
        #expect(try fs.getattr(ino).atime == Self.old)
        #expect(try fs.flushAccessTimes() == 0)
        try f.expectClean()
    }
}

/// Fails the next write when `failNext` is set, as a disk error would.
final class FailingWriteBackend: ForwardingBackend, @unchecked Sendable {
    let failNext = Mutex(false)

    override func write(_ batch: WriteBatch, durable: Bool) throws {
        let fail = failNext.withLock { armed in
            defer { armed = false }
            return armed
        }
        if fail { throw KVError(.io, "injected write failure") }
        try inner.write(batch, durable: durable)
    }
}
