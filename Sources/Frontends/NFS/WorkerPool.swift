// The threads that run NFS calls. A plain queue, except that:
// - a worker that runs out of work keeps polling for a moment before it sleeps: a client
//   waiting on its reply sends its next call within tens of microseconds, and waking a
//   sleeping thread costs about as much again on a virtual machine (measured: see
//   Docs/nfs.md). At most one worker polls at a time, so an idle server burns at most one
//   core for `spin` after its last call, then nothing. It stops early at a yield that
//   comes back late (`PollWindow`): another thread had work for the core (clients, when
//   they outnumber the cores), or the host took it, and polling on would take cycles
//   from them;
// - a call wakes a sleeping worker only while fewer workers run calls than there are
//   cores (`maxBusy`); otherwise a running worker takes it when it finishes its own. A
//   worker waiting for a sync does not count (`Blocking`), so the cores stay in use;
// - a worker sleeps on a semaphore of its own, and a call wakes one by posting it. With a
//   condition variable a wake cost a third `futex` call: the woken worker got the
//   condition's mutex back marked as contended, so its unlock always entered the kernel,
//   and the event loop often blocked on that mutex meanwhile.

import Engine
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

final class WorkerPool: BlockingObserver {
    private struct State {
        var queue: [(@Sendable () -> Void)?] = []
        var head = 0
        var stopping = false
        /// Workers asleep on their semaphores (indexes), the latest last.
        var sleepers: [Int] = []
    }

    private let state = Locked(State())
    /// One per worker: it sleeps on its own. Semaphores are made to be shared between
    /// threads (`sem_post` and `sem_wait` are thread-safe); the pointer never changes.
    nonisolated(unsafe) private let semaphores: UnsafeMutablePointer<sem_t>
    private let threads: Int
    /// Calls queued and not yet taken: the polling worker watches this.
    private let pending = Atomic<Int>(0)
    private let polling = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)
    /// Workers running a call and not waiting for the disk.
    private let busy = Atomic<Int>(0)
    let maxBusy: Int
    let spin: Duration
    let lateYield: Duration

    /// Starts a thread named by its first argument: 0, or why it could not.
    typealias ThreadStarter = (String, @escaping @Sendable () -> Void) -> Int32

    /// `maxBusy`: how many workers may run calls at once before a new call waits for one
    /// of them rather than waking another (default: the cores); `spin` and `lateYield`:
    /// how long a worker polls at most, and the yield that ends it early (`PollWindow`).
    /// Throws when a thread cannot be started (the system's limit on threads), after
    /// stopping those that were.
    init(
        threads: Int, maxBusy: Int = ProcessInfo.processInfo.activeProcessorCount, spin: Duration = .microseconds(200),
        lateYield: Duration = .microseconds(20), start: ThreadStarter = { startThreadIfPossible(named: $0, $1) }
    ) throws {
        self.spin = spin
        self.lateYield = lateYield
        self.maxBusy = max(1, maxBusy)
        self.threads = threads
        semaphores = .allocate(capacity: threads)
        // Unshared and starting at zero: cannot fail.
        for index in 0..<threads { sem_init(semaphores + index, 0, 0) }
        for index in 0..<threads {
            // Counted before it runs, so `shutdown` waits for it; uncounted if it never does.
            running.add(1, ordering: .relaxed)
            let code = start("nfs-worker-\(index)") { [self] in
                Blocking.$observer.withValue(self) { work(index) }
            }
            if code != 0 {
                running.subtract(1, ordering: .relaxed)
                shutdown()
                throw KVError(.io, "could start only \(index) of \(threads) NFS worker threads", cause: String(cString: strerror(code)))
            }
        }
    }

    deinit {
        for index in 0..<threads { sem_destroy(semaphores + index) }
        semaphores.deallocate()
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        let sleeper = state.withLock { s -> Int? in
            // Stopping: calls read since are not run (their clients send them again to the
            // next server). Queued, they kept `shutdown` waiting for as long as clients
            // kept sending.
            guard !s.stopping else { return nil }
            s.queue.append(job)
            pending.add(1, ordering: .sequentiallyConsistent)
            return sleeperToWake(&s)
        }
        if let sleeper { sem_post(semaphores + sleeper) }
    }

    /// A sleeping worker to wake for a queued call, unless a worker polls or enough run;
    /// the caller posts its semaphore after releasing the lock. A busy worker that sees
    /// `busy` fall takes the queue (sequentially consistent: the queued call is seen
    /// either here or by that worker's next `take`). A worker goes to sleep under the
    /// same lock, after checking `pending`, so no call is left with every worker asleep.
    private func sleeperToWake(_ s: inout State) -> Int? {
        guard !polling.load(ordering: .sequentiallyConsistent), busy.load(ordering: .sequentiallyConsistent) < maxBusy else { return nil }
        return s.sleepers.popLast()
    }

    func willBlock() {
        busy.subtract(1, ordering: .sequentiallyConsistent)
        guard pending.load(ordering: .sequentiallyConsistent) > 0 else { return }
        if let sleeper = state.withLock({ sleeperToWake(&$0) }) { sem_post(semaphores + sleeper) }
    }

    func didUnblock() {
        busy.add(1, ordering: .sequentiallyConsistent)
    }

    /// Lets queued calls finish, then stops every worker; calls submitted meanwhile are
    /// dropped.
    func shutdown() {
        while running.load(ordering: .acquiring) > 0 {
            let sleepers = state.withLock { s in
                s.stopping = true
                defer { s.sleepers.removeAll() }
                return s.sleepers
            }
            for sleeper in sleepers { sem_post(semaphores + sleeper) }
            Thread.sleep(forTimeInterval: 0.001)
        }
    }

    private func take() -> (job: (@Sendable () -> Void)?, stop: Bool) {
        state.withLock { s in
            guard s.head < s.queue.count else {
                s.queue.removeAll(keepingCapacity: true)
                s.head = 0
                return (nil, s.stopping)
            }
            // Taken slots are cleared at once: a job holds its call's bytes (up to 1 MiB).
            let job = s.queue[s.head]
            s.queue[s.head] = nil
            s.head += 1
            if s.head > 1024, s.head * 2 > s.queue.count {
                s.queue.removeFirst(s.head)
                s.head = 0
            }
            return (job, false)
        }
    }

    private func work(_ index: Int) {
        defer { running.subtract(1, ordering: .releasing) }
        while true {
            let (job, stop) = take()
            if let job {
                pending.subtract(1, ordering: .relaxed)
                busy.add(1, ordering: .sequentiallyConsistent)
                job()
                busy.subtract(1, ordering: .sequentiallyConsistent)
                continue
            }
            if stop { return }
            // Poll for a moment (one worker at a time), then sleep.
            if !polling.exchange(true, ordering: .acquiring) {
                let clock = ContinuousClock()
                var window = PollWindow(start: clock.now, spin: spin, lateYield: lateYield)
                // Yielding while polling leaves the core to clients and the event loop.
                while pending.load(ordering: .acquiring) == 0 {
                    sched_yield()
                    guard window.goesOn(at: clock.now) else { break }
                }
                // Sequentially consistent with `submit`: it sees this store, or this load
                // sees its call.
                polling.store(false, ordering: .sequentiallyConsistent)
                if pending.load(ordering: .sequentiallyConsistent) > 0 { continue }
            }
            let asleep = state.withLock { s in
                guard pending.load(ordering: .sequentiallyConsistent) == 0, !s.stopping else { return false }
                s.sleepers.append(index)
                return true
            }
            // Interrupted by a signal: sleep again (the post is still to come).
            if asleep { while sem_wait(semaphores + index) != 0 {} }
        }
    }
}

/// How long a worker polls for calls: until `spin` has passed since it began, or until a
/// `sched_yield` comes back `lateYield` or more after the one before it. A yield on an
/// otherwise idle core comes back within a microsecond or two; a late one means the core
/// went to another thread, or the host ran something else on it. Either way the core has
/// other work, and polling on would take it from that work. Measured with four clients
/// unlinking on two cores, in turns with ganesha: 5,191-6,127 unlinks/s with this rule
/// against 4,567-5,158 without it, and a single client's stat 6,174-8,312/s against
/// 1,367-8,414 (Docs/benchmarks.md, 2026-12-08).
struct PollWindow {
    let deadline: ContinuousClock.Instant
    let lateYield: Duration
    private var last: ContinuousClock.Instant

    init(start: ContinuousClock.Instant, spin: Duration, lateYield: Duration) {
        deadline = start.advanced(by: spin)
        self.lateYield = lateYield
        last = start
    }

    /// After a yield that came back at `now`: whether to poll on.
    mutating func goesOn(at now: ContinuousClock.Instant) -> Bool {
        defer { last = now }
        return now < deadline && now - last < lateYield
    }
}
