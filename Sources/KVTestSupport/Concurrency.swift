// Running test bodies on real threads (the storage stack is synchronous and blocking).

import Dispatch
import Foundation
import Synchronization

/// Runs `body(0..<count)` on `count` threads at once and returns when all finished.
public func runConcurrently(_ count: Int, _ body: @Sendable @escaping (Int) -> Void) {
    DispatchQueue.concurrentPerform(iterations: count) { body($0) }
}

/// A thread-safe counter for failures seen on worker threads.
public final class Counter: Sendable {
    private let count = Mutex(0)
    public init() {}
    public func add(_ n: Int = 1) { count.withLock { $0 += n } }
    public var value: Int { count.withLock { $0 } }
}

#if canImport(Glibc)
import Glibc
#endif

public func usleepMilliseconds(_ ms: Int) { usleep(UInt32(ms * 1000)) }

/// A blocking call on a thread of its own, for tests that check it is still waiting
/// (an outage it must wait out) and then that it ended.
public final class BackgroundCall: Sendable {
    private let done = Atomic<Bool>(false)
    private let threw = Atomic<Bool>(false)

    /// Starts `body` at once.
    public init(_ body: @Sendable @escaping () throws -> Void) {
        Thread.detachNewThread { [self] in
            do { try body() } catch { threw.store(true, ordering: .releasing) }
            done.store(true, ordering: .releasing)
        }
    }

    /// Whether the call returned or threw.
    public var finished: Bool { done.load(ordering: .acquiring) }
    /// Whether the call threw (meaningful once `finished`).
    public var failed: Bool { threw.load(ordering: .acquiring) }

    /// Waits, polling every 10 ms, until the call finished or `deadline` passed.
    public func wait(until deadline: ContinuousClock.Instant) {
        while !finished, ContinuousClock.now < deadline { usleep(10_000) }
    }
}
