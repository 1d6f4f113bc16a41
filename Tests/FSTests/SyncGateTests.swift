// Group commit: concurrent callers that need durability share syncs, and none returns
// before a sync that started after its batch was applied. A sync first waits for the
// changes in progress (begun, not yet applied) so that they share it, but not forever.
// A caller that answers later (`whenDurable`) never waits for another thread's sync: the
// thread running it calls back after the sync that covers the caller's batch.

@testable import FS
import FSTestSupport
import KVTestSupport
import Foundation
import Synchronization
import Testing

@Suite struct SyncGateTests {
    @Test func concurrentCallersShareSyncs() throws {
        let gate = SyncGate()
        let syncs = Counter()
        let late = Counter()
        let durableUpTo = Mutex<UInt64>(0)
        runOnThreads(8) { _ in
            let sequence = gate.noteApplied()
            try? gate.waitDurable(sequence) { () throws(FSError) in
                let covers = gate.lastApplied
                syncs.add()
                usleepMilliseconds(50)
                durableUpTo.withLock { $0 = max($0, covers) }
            }
            if durableUpTo.withLock({ $0 }) < sequence { late.add() }
        }
        #expect(late.value == 0, "a caller returned before its batch was synced")
        #expect(syncs.value <= 4, "8 callers needed \(syncs.value) syncs")
    }

    @Test func aFailedSyncFailsItsCallerAndTheNextOneRetries() throws {
        let gate = SyncGate()
        let sequence = gate.noteApplied()
        #expect(throws: FSError.self) {
            try gate.waitDurable(sequence) { () throws(FSError) in throw FSError(.EIO, "disk gone") }
        }
        var ran = false
        try gate.waitDurable(sequence) { () throws(FSError) in ran = true }
        #expect(ran)
    }

    @Test func aChangeInProgressWhenASyncStartsSharesIt() throws {
        let gate = SyncGate(gatherLimit: .seconds(30))
        let syncs = Counter()
        // A change is under way (its batch not yet applied) when another caller syncs.
        gate.beginChange()
        runOnThreads(2) { index in
            if index == 1 {
                usleepMilliseconds(50)
                let sequence = gate.noteApplied()
                gate.endChange()
                // The sync waited for the change, so it covers the change's batch too.
                try? gate.waitDurable(sequence) { () throws(FSError) in syncs.add() }
            } else {
                let sequence = gate.noteApplied()
                try? gate.waitDurable(sequence) { () throws(FSError) in syncs.add() }
            }
        }
        #expect(syncs.value == 1, "the change needed a sync of its own")
    }

    @Test func aSyncWaitsForAChangeInProgressOnlyUpToItsLimit() throws {
        let gate = SyncGate(gatherLimit: .milliseconds(5))
        gate.beginChange()  // never ends
        let sequence = gate.noteApplied()
        var ran = false
        try gate.waitDurable(sequence) { () throws(FSError) in ran = true }
        #expect(ran)
    }

    @Test func aCallbackComesAfterTheSyncThatCoversIt() throws {
        let gate = SyncGate()
        let syncs = Counter()
        let answers = Mutex<[FSError?]>([])
        let sequence = gate.noteApplied()
        // No sync runs: this thread runs one, then calls back.
        gate.whenDurable(sequence, { () throws(FSError) in syncs.add() }) { error in answers.withLock { $0.append(error) } }
        #expect(syncs.value == 1)
        #expect(answers.withLock { $0.count } == 1)
        // Already durable: called back at once, without a sync.
        gate.whenDurable(sequence, { () throws(FSError) in syncs.add() }) { error in answers.withLock { $0.append(error) } }
        #expect(syncs.value == 1)
        #expect(answers.withLock { $0.count == 2 && $0.allSatisfy { $0 == nil } })
    }

    /// Calls `whenDurable` on a thread of its own; the semaphore is signalled when the
    /// call returns (a call that waited for another thread's sync would not return).
    static func register(_ gate: SyncGate, _ sequence: UInt64, _ sync: @escaping @Sendable () throws(FSError) -> Void,
                         _ then: @escaping @Sendable (FSError?) -> Void) -> DispatchSemaphore {
        let returned = DispatchSemaphore(value: 0)
        Thread {
            gate.whenDurable(sequence, sync, then: then)
            returned.signal()
        }.start()
        return returned
    }

    /// While thread A's sync is held, a callback registered on another thread returns at
    /// once; A runs one more sync for it (covering it) and calls it back; a thread
    /// blocked in `waitDurable` meanwhile returns after that sync too.
    @Test func aCallerDoesNotWaitForAnotherThreadsSync() throws {
        let gate = SyncGate()
        let hold = HoldGate()
        hold.hold(true)
        let syncedUpTo = Mutex<[UInt64]>([])
        let sync: @Sendable () throws(FSError) -> Void = { () throws(FSError) in
            let covers = gate.lastApplied
            hold.pass()
            syncedUpTo.withLock { $0.append(covers) }
        }
        let first = gate.noteApplied()
        let firstAnswered = DispatchSemaphore(value: 0)
        _ = Self.register(gate, first, sync) { _ in firstAnswered.signal() }
        #expect(hold.waitForWaiter(timeout: 10), "the first sync never started")

        let second = gate.noteApplied()
        let answered = Mutex<(done: Bool, error: FSError?, syncs: [UInt64])?>(nil)
        let returned = Self.register(gate, second, sync) { error in
            answered.withLock { $0 = (true, error, syncedUpTo.withLock { $0 }) }
        }
        #expect(returned.wait(timeout: .now() + 10) == .success, "a caller waited for another thread's sync")
        #expect(answered.withLock { $0 } == nil, "answered before any sync covered the batch")

        let third = gate.noteApplied()
        let waiterDone = DispatchSemaphore(value: 0)
        Thread {
            try? gate.waitDurable(third, sync)
            waiterDone.signal()
        }.start()

        hold.hold(false)
        #expect(firstAnswered.wait(timeout: .now() + 10) == .success)
        #expect(waiterDone.wait(timeout: .now() + 10) == .success)
        let deadline = Date(timeIntervalSinceNow: 10)
        while answered.withLock({ $0 }) == nil && Date() < deadline { usleepMilliseconds(1) }
        let answer = try #require(answered.withLock { $0 })
        #expect(answer.error == nil)
        // The sync that answered it began after its batch was applied.
        #expect(answer.syncs.contains { $0 >= second })
        #expect(syncedUpTo.withLock { $0.count } == 2, "the second and third batches should share one sync")
    }

    /// A failed sync answers its error to the callbacks it was meant to cover; one whose
    /// batch came after that sync began waits for the next sync, which succeeds.
    @Test func aFailedSyncAnswersTheCallbacksItWasMeantToCover() throws {
        let gate = SyncGate()
        let hold = HoldGate()
        hold.hold(true)
        let attempts = Counter()
        let failingOnce: @Sendable () throws(FSError) -> Void = { () throws(FSError) in
            hold.pass()
            attempts.add()
            if attempts.value == 1 { throw FSError(.EIO, "disk gone") }
        }
        let answers = Mutex<[String: FSError?]>([:])
        let first = gate.noteApplied()
        let firstDone = DispatchSemaphore(value: 0)
        Thread {
            gate.whenDurable(first, failingOnce) { error in answers.withLock { $0["first"] = .some(error) } }
            firstDone.signal()
        }.start()
        #expect(hold.waitForWaiter(timeout: 10))
        let second = gate.noteApplied()
        let returned = Self.register(gate, second, failingOnce) { error in answers.withLock { $0["second"] = .some(error) } }
        #expect(returned.wait(timeout: .now() + 10) == .success)
        hold.hold(false)
        #expect(firstDone.wait(timeout: .now() + 10) == .success)
        let got = answers.withLock { $0 }
        #expect(got["first"]??.code == .EIO)
        #expect(got["second"] != nil && got["second"]! == nil, "the later batch was answered with the first sync's error")
        // The next caller tries again.
        var ran = false
        try gate.waitDurable(gate.noteApplied()) { () throws(FSError) in ran = true }
        #expect(ran)
    }

    /// A callback registered by a callback (as the serving thread runs it, after a failed
    /// sync) is still served: the serving thread decides to stop under the lock that
    /// callbacks are added under.
    @Test func aCallbackRegisteredWhileCallbacksRunIsServed() throws {
        let gate = SyncGate()
        let attempts = Counter()
        let sync: @Sendable () throws(FSError) -> Void = { () throws(FSError) in
            attempts.add()
            if attempts.value == 1 { throw FSError(.EIO, "disk gone") }
        }
        let nested = DispatchSemaphore(value: 0)
        let first = gate.noteApplied()
        let returned = Self.register(gate, first, sync) { _ in
            gate.whenDurable(gate.noteApplied(), sync) { error in if error == nil { nested.signal() } }
        }
        #expect(returned.wait(timeout: .now() + 10) == .success)
        #expect(nested.wait(timeout: .now() + 10) == .success, "the nested callback was never answered")
    }

    /// While a `waitDurable` caller syncs, `whenDurable` waits for it and never hands it
    /// a callback: the blocked thread (an admin call, say) never sends NFS replies.
    @Test func aBlockedWaiterServesNoCallback() throws {
        let gate = SyncGate()
        let hold = HoldGate()
        hold.hold(true)
        let sync: @Sendable () throws(FSError) -> Void = { () throws(FSError) in hold.pass() }
        let waiterDone = DispatchSemaphore(value: 0)
        let first = gate.noteApplied()
        let waiter = Thread {
            try? gate.waitDurable(first, sync)
            waiterDone.signal()
        }
        waiter.name = "waiter"
        waiter.start()
        #expect(hold.waitForWaiter(timeout: 10))
        let second = gate.noteApplied()
        let ranOn = Mutex<String?>(nil)
        let registered = Self.register(gate, second, sync) { _ in ranOn.withLock { $0 = Thread.current.name ?? "" } }
        hold.hold(false)
        #expect(waiterDone.wait(timeout: .now() + 10) == .success)
        #expect(registered.wait(timeout: .now() + 10) == .success)
        let thread = ranOn.withLock { $0 }
        #expect(thread != nil && thread != "waiter")
    }
}
