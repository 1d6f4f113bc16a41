// Running test bodies on real threads (the storage stack is synchronous and blocking).

import Dispatch
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
