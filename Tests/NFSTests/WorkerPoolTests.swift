// The worker pool wakes a sleeping worker only while fewer than `maxBusy` run calls, and a
// worker waiting for the disk (`Blocking.during`) does not count: a call queued behind it
// still runs.

@testable import NFS
import Engine
import Foundation
import Synchronization
import Testing

@Suite struct WorkerPoolTests {
    /// With one worker allowed to run, the first call waits inside `Blocking.during` for
    /// the second to release it. `queuedFirst`: the second call is queued while the first
    /// still runs (so `willBlock` must wake a worker for it), else after the first began
    /// to wait (so `submit` must).
    @Test(arguments: [false, true])
    func aWorkerWaitingForTheDiskLeavesItsTurnToAnother(queuedFirst: Bool) throws {
        let pool = try WorkerPool(threads: 2, maxBusy: 1)
        defer { pool.shutdown() }
        let inside = DispatchSemaphore(value: 0)
        let go = DispatchSemaphore(value: 0)
        let waiting = DispatchSemaphore(value: 0)
        let released = DispatchSemaphore(value: 0)
        let firstEnded = DispatchSemaphore(value: 0)
        let secondRan = Atomic<Bool>(false)
        let waitedFor = Atomic<Bool>(false)
        pool.submit {
            inside.signal()
            _ = go.wait(timeout: .now() + 10)
            // Only the second call can end this wait.
            let outcome = Blocking.during { () -> DispatchTimeoutResult in
                waiting.signal()
                return released.wait(timeout: .now() + 10)
            }
            waitedFor.store(outcome == .success, ordering: .sequentiallyConsistent)
            firstEnded.signal()
        }
        #expect(inside.wait(timeout: .now() + 10) == .success)
        let second = {
            // Long enough for a polling worker to give up and sleep.
            Thread.sleep(forTimeInterval: 0.02)
            pool.submit {
                secondRan.store(true, ordering: .sequentiallyConsistent)
                released.signal()
            }
        }
        if queuedFirst {
            second()
            Thread.sleep(forTimeInterval: 0.02)
            let early = secondRan.load(ordering: .sequentiallyConsistent)
            #expect(!early, "a second worker was woken while the first ran")
            go.signal()
        } else {
            go.signal()
            #expect(waiting.wait(timeout: .now() + 10) == .success)
            second()
        }
        #expect(firstEnded.wait(timeout: .now() + 30) == .success)
        let wasReleased = waitedFor.load(ordering: .sequentiallyConsistent)
        #expect(wasReleased, "the queued call ran only after the waiting one gave up")
    }

    /// Shutting down while calls keep coming: the queued ones finish, later ones are
    /// dropped, and the shutdown ends while the calls still come (it waited until they
    /// stopped).
    @Test func aShutdownEndsWhileCallsKeepComing() throws {
        let pool = try WorkerPool(threads: 2, maxBusy: 2)
        let submitting = Atomic<Bool>(true)
        let stop = Atomic<Bool>(false)
        let started = DispatchSemaphore(value: 0)
        let submitter = Thread {
            let deadline = Date().addingTimeInterval(20)
            var first = true
            while !stop.load(ordering: .relaxed), Date() < deadline {
                for _ in 0..<4 { pool.submit { usleep(500) } }
                if first {
                    started.signal()
                    first = false
                }
                usleep(100)
            }
            submitting.store(false, ordering: .sequentiallyConsistent)
        }
        submitter.start()
        #expect(started.wait(timeout: .now() + 10) == .success)
        pool.shutdown()
        let stillSubmitting = submitting.load(ordering: .sequentiallyConsistent)
        stop.store(true, ordering: .relaxed)
        #expect(stillSubmitting, "the shutdown waited until the calls stopped coming")
        while submitting.load(ordering: .sequentiallyConsistent) { usleep(1000) }
    }

    @Test func everyCallRunsWithManyMoreCallsThanBusyWorkers() throws {
        let pool = try WorkerPool(threads: 8, maxBusy: 2)
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

    /// A thread the system will not make (past its limit) is an error naming how many
    /// started, not a worker counted for ever: the ones that started are stopped, so the
    /// pool's `shutdown` (here, inside init) returns.
    @Test func aThreadThatCannotStartIsAnError() throws {
        let started = Atomic<Int>(0)
        let stopped = Atomic<Int>(0)
        let limited: WorkerPool.ThreadStarter = { name, body in
            guard started.add(1, ordering: .relaxed).newValue <= 3 else { return EAGAIN }
            return startThreadIfPossible(named: name) {
                body()
                stopped.add(1, ordering: .relaxed)
            }
        }
        let error = #expect(throws: KVError.self) { try WorkerPool(threads: 8, start: limited) }
        #expect(error?.message.contains("could start only 3 of 8") == true, "\(String(describing: error))")
        #expect(stopped.load(ordering: .relaxed) == 3, "the started workers did not stop")
    }

    /// A worker polls until its spin has passed, and stops sooner at a yield that came back
    /// late (the core had other work).
    @Test func pollingEndsAtItsDeadlineOrAtALateYield() {
        let start = ContinuousClock.now
        let us = { (n: Int) in start.advanced(by: .microseconds(n)) }
        var steady = PollWindow(start: start, spin: .microseconds(200), lateYield: .microseconds(20))
        var at = 0
        var yields = 0
        while true {
            at += 5
            yields += 1
            if !steady.goesOn(at: us(at)) { break }
        }
        #expect(at == 200, "polling with prompt yields ended at \(at) µs, not at its spin's end")
        #expect(yields == 40)

        var interrupted = PollWindow(start: start, spin: .microseconds(200), lateYield: .microseconds(20))
        let prompt = interrupted.goesOn(at: us(5))
        let notLate = interrupted.goesOn(at: us(24))
        let late = interrupted.goesOn(at: us(44))
        #expect(prompt)
        #expect(notLate, "a yield 19 µs after the last is not late")
        #expect(!late, "a yield 20 µs after the last is late")

        var firstLate = PollWindow(start: start, spin: .microseconds(200), lateYield: .microseconds(20))
        let first = firstLate.goesOn(at: us(30))
        #expect(!first, "the first yield is measured from the poll's start")
    }
}
