// Durability waits happen outside every lock: an operation applies its batch under its
// inode locks, releases them, and only then waits for the sync (group commit). Checked
// with a store whose syncs can be held back: while one operation waits for its sync,
// others on the same inodes still run. And many threads creating in one directory end
// with every file present and a clean fsck.

@testable import FS
import Engine
import FSTestSupport
import KVTestSupport
import Foundation
import MemoryBackend
import Synchronization
import Testing

@Suite struct DurabilityTests {
    /// One thread's durable write waits for a held sync; meanwhile a read of the same file
    /// (its inode lock) and a create in the same directory must complete. Before the fix the
    /// waiting write held the file's lock through the sync and the read never finished.
    @Test func noLockIsHeldWhileWaitingForDurability() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let store = HeldSyncStore(try harness.open(harness.freshPath("fs")))
        defer { try? store.close() }
        let fs = try FileSystem.open(store, options: FSFixture.testOptions)
        let dir = try fs.mkdir(.root, FileSystem.rootInode, n("d"), mode: 0o755)
        let file = try fs.create(.root, dir.ino, n("f"), mode: 0o644)

        store.hold(true)
        let writer = Mutex<Result<Inode, FSError>?>(nil)
        let writerDone = DispatchSemaphore(value: 0)
        Thread {
            let result = Result { () throws(FSError) in try fs.write(.root, file.ino, offset: 0, n("durable"), durable: true) }
            writer.withLock { $0 = result }
            writerDone.signal()
        }.start()
        #expect(store.waitForBlockedSync(timeout: 10), "the durable write never reached its sync")

        // Same inode as the waiting write: needs its lock, which must be free by now.
        let readerDone = DispatchSemaphore(value: 0)
        let read = Mutex<Result<ReadResult, FSError>?>(nil)
        Thread {
            let result = Result { () throws(FSError) in try fs.read(.root, file.ino, offset: 0, count: 7) }
            read.withLock { $0 = result }
            readerDone.signal()
        }.start()
        let readFinished = readerDone.wait(timeout: .now() + 10) == .success
        #expect(readFinished, "a read of the file waited for another operation's sync")
        if readFinished {
            // Applied (visible) before durable: the read sees the data the writer is syncing.
            #expect(try read.withLock { $0 }?.get().data == n("durable"))
        }
        #expect(writer.withLock { $0 } == nil, "the durable write replied before its sync finished")

        store.hold(false)
        #expect(writerDone.wait(timeout: .now() + 30) == .success)
        #expect(try writer.withLock { $0 }?.get().size == 7)
        try fs.close()
        #expect(try Fsck.check(store).problems == [])
    }

    /// A create that finds the name made by another caller's create, whose sync is still
    /// held, must not answer before that sync finishes (it would report a file that a crash
    /// could still take away).
    @Test func findingAnotherCallersPendingCreateWaitsForItsSync() throws {
        let harness = StoreHarness(MemoryBackendFactory())
        defer { harness.cleanUp() }
        let store = HeldSyncStore(try harness.open(harness.freshPath("fs")))
        defer { try? store.close() }
        let fs = try FileSystem.open(store, options: FSFixture.testOptions)
        let dir = try fs.mkdir(.root, FileSystem.rootInode, n("d"), mode: 0o755)

        store.hold(true)
        let first = Mutex<Result<Inode, FSError>?>(nil)
        let firstDone = DispatchSemaphore(value: 0)
        Thread {
            let result = Result { () throws(FSError) in try fs.create(.root, dir.ino, n("same"), mode: 0o644) }
            first.withLock { $0 = result }
            firstDone.signal()
        }.start()
        #expect(store.waitForBlockedSync(timeout: 10), "the first create never reached its sync")

        let second = Mutex<Result<Inode, FSError>?>(nil)
        let secondDone = DispatchSemaphore(value: 0)
        Thread {
            let result = Result { () throws(FSError) in try fs.create(.root, dir.ino, n("same"), mode: 0o644) }
            second.withLock { $0 = result }
            secondDone.signal()
        }.start()
        #expect(secondDone.wait(timeout: .now() + 1) == .timedOut, "the second create answered before the first was durable")

        store.hold(false)
        #expect(firstDone.wait(timeout: .now() + 30) == .success)
        #expect(secondDone.wait(timeout: .now() + 30) == .success)
        let a = try #require(try first.withLock { $0 }?.get())
        let b = try #require(try second.withLock { $0 }?.get())
        #expect(a.ino == b.ino)
        try fs.close()
        #expect(try Fsck.check(store).problems == [])
    }

    /// Eight threads create files in one directory with durable metadata: every create
    /// succeeds, every name is there once with its own inode, counts and fsck agree.
    @Test func concurrentCreatesInOneDirectory() throws {
        let fixture = try FSFixture(MemoryBackendFactory())
        defer { fixture.close() }
        let fs = fixture.fs
        let dir = try fs.mkdir(.root, FileSystem.rootInode, n("shared"), mode: 0o777)
        let threads = 8
        let perThread = 60
        let failures = Mutex<[String]>([])
        let created = Mutex<[UInt64: [UInt8]]>([:])
        runOnThreads(threads) { thread in
            for i in 0..<perThread {
                let name = n("t\(thread)-\(i)")
                do {
                    let node = try fs.create(.root, dir.ino, name, mode: 0o644, exclusive: true)
                    created.withLock { $0[node.ino] = name }
                } catch {
                    failures.withLock { $0.append("\(thread)/\(i): \(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(created.withLock { $0.count } == threads * perThread, "inode numbers are unique")
        #expect(try fs.getattr(dir.ino).entryCount == UInt64(threads * perThread))
        var names: [[UInt8]] = []
        var cookie: UInt64 = 0
        while true {
            let page = try fs.readdir(.root, dir.ino, after: cookie, limit: 50)
            names += page.entries.map(\.name)
            guard let last = page.entries.last, !page.eof else { break }
            cookie = last.cookie
        }
        #expect(names.count == threads * perThread && Set(names).count == names.count)
        #expect(Set(names) == Set(created.withLock { $0 }.values))
        try fixture.reopen()
        try fixture.expectClean("after concurrent creates")
        #expect(try fixture.fsck().inodes == Int(fixture.fs.statfs().usedInodes))
    }
}
