// A change is answered once a sync has made it durable, and the worker that ran it does
// not wait for another worker's sync meanwhile: the worker running the sync sends the
// reply (NFSService.handle(_:client:respond:), SyncGate.whenDurable). Checked with a
// store whose syncs the test holds back or makes fail.

@testable import NFS
import Engine
import FS
import FSTestSupport
import Foundation
import KVTestSupport
import MemoryBackend
import Synchronization
import Testing

@Suite struct DeferredReplyTests {
    final class Setup {
        let harness = StoreHarness(MemoryBackendFactory())
        let store: HeldSyncStore
        let fs: FileSystem
        let service: NFSService
        let client: NFSTestClient
        let root: [UInt8]
        var xid: UInt32 = 1000

        init() throws {
            store = HeldSyncStore(try harness.open(harness.freshPath("fs")))
            fs = try FileSystem.open(store, options: FSFixture.testOptions)
            service = NFSService(pool: fs.pool)
            client = NFSTestClient(service)
            root = try client.mount("/")
        }

        func close() {
            store.hold(false)
            try? fs.close()
            try? store.close()
            harness.cleanUp()
        }

        func record(_ procedure: UInt32, _ args: (inout XDRWriter) -> Void) -> [UInt8] {
            xid += 1
            return Call.record(xid: xid, program: 100_003, version: 3, procedure: procedure, args: Call.args(args))
        }

        func remove(_ name: String) -> [UInt8] {
            record(12) { w in
                w.opaque(root)
                w.opaque(Array(name.utf8))
            }
        }

        /// Runs the call on a thread of its own; `handled` is signalled when `handle`
        /// returns, `reply` holds the answer once it comes.
        func send(_ record: [UInt8]) -> (handled: DispatchSemaphore, reply: Locked<[UInt8]?>, answered: DispatchSemaphore) {
            let handled = DispatchSemaphore(value: 0)
            let answered = DispatchSemaphore(value: 0)
            let reply = Locked<[UInt8]?>(nil)
            let service = service
            Thread {
                service.handle(record, client: "c") { bytes in
                    reply.withLock { $0 = bytes }
                    answered.signal()
                }
                handled.signal()
            }.start()
            return (handled, reply, answered)
        }
    }

    static func status(_ bytes: [UInt8]?) throws -> UInt32 {
        var reply = try Reply(try #require(bytes))
        return try reply.body.uint32()
    }

    @Test func aChangeIsAnsweredAfterItsSyncWithoutHoldingUpOtherWorkers() throws {
        let s = try Setup()
        defer { s.close() }
        _ = try s.client.create(s.root, "a")
        _ = try s.client.create(s.root, "b")

        s.store.hold(true)
        // The first REMOVE's worker runs the sync, held.
        let first = s.send(s.remove("a"))
        #expect(s.store.waitForBlockedSync(timeout: 10), "the first REMOVE never reached its sync")
        #expect(first.answered.wait(timeout: .now() + 0.2) == .timedOut, "answered before its sync")

        // A second REMOVE's worker returns at once; its answer waits for a sync.
        let second = s.send(s.remove("b"))
        #expect(second.handled.wait(timeout: .now() + 10) == .success, "a worker waited for another worker's sync")
        #expect(second.reply.withLock { $0 } == nil, "answered before any sync covered it")
        // A call that changes nothing is answered at once.
        let getattr = s.send(s.record(1) { $0.opaque(s.root) })
        #expect(getattr.answered.wait(timeout: .now() + 10) == .success)
        #expect(try Self.status(getattr.reply.withLock { $0 }) == 0)

        s.store.hold(false)
        #expect(first.answered.wait(timeout: .now() + 10) == .success)
        #expect(second.answered.wait(timeout: .now() + 10) == .success)
        #expect(try Self.status(first.reply.withLock { $0 }) == 0)
        #expect(try Self.status(second.reply.withLock { $0 }) == 0)
        #expect(throws: NFSCallError.self) { _ = try s.client.lookup(s.root, "b") }
    }

    /// An answer that a name is absent (or present) when that comes from another call's
    /// change not yet durable waits for its sync: a crash before it would bring the name
    /// back (or take it away) after the client was told otherwise.
    @Test func anAnswerAboutANameWaitsForTheChangeItSaw() throws {
        let s = try Setup()
        defer { s.close() }
        _ = try s.client.create(s.root, "a")
        s.store.hold(true)
        let first = s.send(s.remove("a"))
        #expect(s.store.waitForBlockedSync(timeout: 10), "the first REMOVE never reached its sync")
        // The name is gone from the tree, not yet from the disk.
        let second = s.send(s.remove("a"))
        #expect(second.handled.wait(timeout: .now() + 10) == .success)
        #expect(second.answered.wait(timeout: .now() + 0.2) == .timedOut, "NOENT answered before the REMOVE it saw was durable")
        // CREATE GUARDED of a name another call's CREATE applied: EXIST waits the same way.
        let create = s.record(8) { w in
            w.opaque(s.root)
            w.opaque(Array("n".utf8))
            w.uint32(1)  // GUARDED
            for _ in 0..<6 { w.bool(false) }  // sattr3: nothing set
        }
        let made = s.send(create)
        #expect(made.handled.wait(timeout: .now() + 10) == .success)
        let again = s.send(s.record(8) { w in
            w.opaque(s.root)
            w.opaque(Array("n".utf8))
            w.uint32(1)
            for _ in 0..<6 { w.bool(false) }
        })
        #expect(again.handled.wait(timeout: .now() + 10) == .success)
        #expect(again.answered.wait(timeout: .now() + 0.2) == .timedOut, "EXIST answered before the CREATE it saw was durable")
        s.store.hold(false)
        for call in [first, second, made, again] { #expect(call.answered.wait(timeout: .now() + 10) == .success) }
        #expect(try Self.status(first.reply.withLock { $0 }) == 0)
        #expect(try Self.status(second.reply.withLock { $0 }) == NFSStatus.noent.rawValue)
        #expect(try Self.status(made.reply.withLock { $0 }) == 0)
        #expect(try Self.status(again.reply.withLock { $0 }) == NFSStatus.exist.rawValue)
    }

    /// A retransmission that arrives while its call still waits for its sync (perhaps on a
    /// new connection, the old one gone with the reply it would have got) gets that call's
    /// reply when it comes, without a worker waiting for it; the call runs once.
    @Test func aRetransmissionOfACallStillRunningGetsItsReply() throws {
        let s = try Setup()
        defer { s.close() }
        _ = try s.client.create(s.root, "a")
        s.store.hold(true)
        let record = s.remove("a")
        let first = s.send(record)
        #expect(s.store.waitForBlockedSync(timeout: 10), "the REMOVE never reached its sync")
        let again = s.send(record)
        #expect(again.handled.wait(timeout: .now() + 10) == .success, "the retransmission's worker waited")
        #expect(again.answered.wait(timeout: .now() + 0.2) == .timedOut, "the retransmission was answered before its call")
        s.store.hold(false)
        #expect(first.answered.wait(timeout: .now() + 10) == .success)
        #expect(again.answered.wait(timeout: .now() + 10) == .success)
        let reply = first.reply.withLock { $0 }
        #expect(try Self.status(reply) == 0, "the REMOVE ran once: a second run would answer NOENT")
        #expect(again.reply.withLock { $0 } == reply)
    }

    /// A sync that fails answers NFS3ERR_IO, with the empty attributes of the result's
    /// failure arm: two FALSE words (wcc_data), three for LINK, four for RENAME.
    @Test func aFailedSyncAnswersIO() throws {
        let s = try Setup()
        defer { s.close() }
        let file = try s.client.create(s.root, "f")
        _ = try s.client.create(s.root, "g")
        s.store.failSyncs(true)
        let calls: [(record: [UInt8], falseWords: Int)] = [
            (s.remove("g"), 2),
            (s.record(14) { w in
                w.opaque(s.root)
                w.opaque(Array("f".utf8))
                w.opaque(s.root)
                w.opaque(Array("h".utf8))
            }, 4),
            (s.record(15) { w in
                w.opaque(file)
                w.opaque(s.root)
                w.opaque(Array("l".utf8))
            }, 3),
        ]
        for (record, falseWords) in calls {
            let call = s.send(record)
            #expect(call.answered.wait(timeout: .now() + 10) == .success)
            let bytes = try #require(call.reply.withLock { $0 })
            var reply = try Reply(bytes)
            #expect(try reply.body.uint32() == NFSStatus.io.rawValue)
            for _ in 0..<falseWords { #expect(try reply.body.bool() == false) }
            #expect(reply.body.remaining == 0)
            // A retransmission gets the reply that was sent, from the duplicate-request cache.
            let again = s.send(record)
            #expect(again.answered.wait(timeout: .now() + 10) == .success)
            #expect(again.reply.withLock { $0 } == bytes)
        }
    }
}
