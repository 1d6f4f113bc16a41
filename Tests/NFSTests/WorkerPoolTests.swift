// The worker pool wakes a sleeping worker only while fewer than `maxBusy` run calls, and a
// worker waiting for the disk (`Blocking.during`) does not count: a call queued behind it
// still runs.

@testable import NFS
import Engine
import Foundation
import Synchronization
import Testing

@Suite struct WorkerPoolTests {
    @Test func aWorkerWaitingForTheDiskLeavesItsTurnToAnother() throws {
        let pool = WorkerPool(threads: 2, maxBusy: 1)
        defer { pool.shutdown() }
        let inside = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let firstEnded = DispatchSemaphore(value: 0)
        let waitedFor = Atomic<Bool>(false)
        pool.submit {
            inside.signal()
            // Only the second call can end this wait.
            let outcome = Blocking.during { released.wait(timeout: .now() + 10) }
            waitedFor.store(outcome == .success, ordering: .sequentiallyConsistent)
            firstEnded.signal()
        }
        #expect(inside.wait(timeout: .now() + 10) == .success)
        // Long enough for a polling worker to give up and sleep.
        Thread.sleep(forTimeInterval: 0.02)
        pool.submit { released.signal() }
        #expect(firstEnded.wait(timeout: .now() + 30) == .success)
        let wasReleased = waitedFor.load(ordering: .sequentiallyConsistent)
        #expect(wasReleased, "the queued call ran only after the waiting one gave up")
    }

    @Test func everyCallRunsWithManyMoreCallsThanBusyWorkers() throws {
        let pool = WorkerPool(threads: 8, maxBusy: 2)
        defer { pool.shutdown() }
        let done = DispatchSemaphore(value: 0)
        let count = 2000
        let ran = Atomic<Int>(0)
        for _ in 0..<count {
            pool.submit {
                if ran.add(1, ordering: .relaxed).newValue == count { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 30) == .success)
        let total = ran.load(ordering: .relaxed)
        #expect(total == count)
    }

    /// A call queued while the only allowed worker runs is started as soon as that worker
    /// begins to wait (`Blocking.during` wakes a sleeping worker for it).
    @Test func aCallQueuedBehindABusyWorkerStartsWhenItWaits() throws {
        let pool = WorkerPool(threads: 2, maxBusy: 1)
        defer { pool.shutdown() }
        let inside = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let firstEnded = DispatchSemaphore(value: 0)
        let secondRan = Atomic<Bool>(false)
        let waitedFor = Atomic<Bool>(false)
        pool.submit {
            inside.signal()
            _ = go.wait(timeout: .now() + 10)
            let outcome = Blocking.during { released.wait(timeout: .now() + 10) }
            waitedFor.store(outcome == .success, ordering: .sequentiallyConsistent)
            firstEnded.signal()
        }
        #expect(inside.wait(timeout: .now() + 10) == .success)
        Thread.sleep(forTimeInterval: 0.02)
        pool.submit {
            secondRan.store(true, ordering: .sequentiallyConsistent)
            released.signal()
        }
        Thread.sleep(forTimeInterval: 0.02)
        let early = secondRan.load(ordering: .sequentiallyConsistent)
        #expect(!early, "a second worker was woken while the first ran")
        go.signal()
        #expect(firstEnded.wait(timeout: .now() + 30) == .success)
        let wasReleased = waitedFor.load(ordering: .sequentiallyConsistent)
        #expect(wasReleased, "the queued call did not start while the first waited")
    }
}
