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

    /// While thread A's sync is held, a callback registered on this thread returns at
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
        Thread { gate.whenDurable(first, sync) { _ in firstAnswered.signal() } }.start()
        #expect(hold.waitForWaiter(timeout: 10), "the first sync never started")

        let second = gate.noteApplied()
        let answered = Mutex<(done: Bool, error: FSError?, syncs: [UInt64])?>(nil)
        gate.whenDurable(second, sync) { error in answered.withLock { $0 = (true, error, syncedUpTo.withLock { $0 }) } }
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

    @Test func aFailedSyncAnswersEveryCallbackWithItsError() throws {
        let gate = SyncGate()
        let hold = HoldGate()
        hold.hold(true)
        let failing: @Sendable () throws(FSError) -> Void = { () throws(FSError) in
            hold.pass()
            throw FSError(.EIO, "disk gone")
        }
        let errors = Mutex<[FSError?]>([])
        let first = gate.noteApplied()
        let firstDone = DispatchSemaphore(value: 0)
        Thread {
            gate.whenDurable(first, failing) { error in errors.withLock { $0.append(error) } }
            firstDone.signal()
        }.start()
        #expect(hold.waitForWaiter(timeout: 10))
        let second = gate.noteApplied()
        gate.whenDurable(second, failing) { error in errors.withLock { $0.append(error) } }
        hold.hold(false)
        #expect(firstDone.wait(timeout: .now() + 10) == .success)
        #expect(errors.withLock { $0.count == 2 && $0.allSatisfy { $0?.code == .EIO } })
        // The next caller tries again.
        var ran = false
        try gate.waitDurable(second) { () throws(FSError) in ran = true }
        #expect(ran)
    }
}
